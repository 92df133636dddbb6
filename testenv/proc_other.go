//go:build !unix

package testenv

import (
	"os"
	"syscall"
)

func sysProcAttr(*runAs) *syscall.SysProcAttr { return nil }

func runningAsRoot() bool { return false }

func killGroup(int) error { return nil }

// processExists errs on the side of "alive" so stale-directory sweeping never removes a
// directory in use.
func processExists(int) bool { return true }

// sigQuit: without SIGQUIT the escalation goes straight to killing.
var sigQuit = os.Kill
