// Package pglocal owns a throwaway PostgreSQL server run from this machine's binaries
// (initdb and postgres, see FindBinDir) in a directory of its own: its configuration
// (postgresql.conf, pg_hba.conf with the password roles RoleMD5, RolePassword and
// RoleSCRAM, optional TLS), its process and its removal. `pgcloak demo` runs its server
// with Start; testenv's "local" source, and tests that need a server configured their own
// way, go through testenv, which re-exports this package's API.
//
// The package carries no test machinery (no testing, no containers), so the release
// binary can use it.
package pglocal
