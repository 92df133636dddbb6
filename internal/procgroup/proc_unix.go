//go:build unix

package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// SigQuit asks PostgreSQL for an immediate shutdown.
const SigQuit = syscall.SIGQUIT

func (u *User) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	// An empty Groups drops root's supplementary groups rather than inheriting them.
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
}

// RunningAsRoot reports whether we run as root, which initdb and postgres refuse.
func RunningAsRoot() bool { return os.Geteuid() == 0 }

// KillGroup SIGKILLs what is left of the process group a server led (see SysProcAttr).
func KillGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// ProcessExists reports whether pid names a live process (EPERM: alive, someone else's).
func ProcessExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
