//go:build linux

package procgroup

import "syscall"

// SysProcAttr runs a server process as u (nil: as ourselves) in its own process group, so a
// terminal's Ctrl-C reaches only us (the test binary, `pgcloak demo`), which then stops the
// server in order. Pdeathsig covers the exits no deferred call sees (a test timeout's panic,
// SIGKILL): the kernel sends SIGQUIT, PostgreSQL's immediate shutdown, so no postmaster
// outlives us.
func SysProcAttr(u *User) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT, Credential: u.credential()}
}
