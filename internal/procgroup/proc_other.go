//go:build !unix

package procgroup

import (
	"os"
	"syscall"
)

// SysProcAttr sets nothing: without process groups a child is on its own.
func SysProcAttr(*User) *syscall.SysProcAttr { return nil }

// RunningAsRoot is false: there is no root to avoid.
func RunningAsRoot() bool { return false }

// KillGroup does nothing: there is no group to kill.
func KillGroup(int) error { return nil }

// ProcessExists errs on the side of "alive" so stale-directory sweeping never removes a
// directory in use.
func ProcessExists(int) bool { return true }

// SigQuit: without SIGQUIT the escalation goes straight to killing.
var SigQuit = os.Kill
