//go:build unix && !linux

package procgroup

import "syscall"

// SysProcAttr: see proc_linux.go; without Pdeathsig a crashed test binary can leave the
// server running, to be shut down by PostgreSQL itself once its data directory is swept.
func SysProcAttr(u *User) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: u.credential()}
}
