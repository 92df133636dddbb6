// Package procgroup owns how pgcloak's throwaway servers and builds are run as child
// processes (PostgreSQL for `pgcloak demo` and the tests, Vault and its build for the
// tests): each in a process group of its own, optionally as another OS user, killed as a
// group at the end, and never outliving its parent on Linux. It also tells whether a
// process still lives, so that directories left by dead owners can be swept.
package procgroup

// User is the OS user a child process runs as; a nil *User means ourselves.
type User struct{ UID, GID int }
