//go:build unix

package testenv

import (
	"errors"
	"os"
	"syscall"
)

const sigQuit = syscall.SIGQUIT

func (u *runAs) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	// An empty Groups drops root's supplementary groups rather than inheriting them.
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
}

func runningAsRoot() bool { return os.Geteuid() == 0 }

// killGroup SIGKILLs what is left of the process group a server led (see sysProcAttr).
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// processExists reports whether pid names a live process (EPERM: alive, someone else's).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
