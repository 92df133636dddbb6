//go:build unix

package procgroup

import (
	"os"
	"os/exec"
	"testing"
)

func TestProcessExistsAndKillGroup(t *testing.T) {
	if !ProcessExists(os.Getpid()) {
		t.Fatal("our own process does not exist")
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = SysProcAttr(nil)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !ProcessExists(pid) {
		t.Fatalf("started child %d does not exist", pid)
	}
	if err := KillGroup(pid); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly, not of SIGKILL")
	}
	if ProcessExists(pid) {
		t.Fatalf("child %d still exists after KillGroup and Wait", pid)
	}
	if err := KillGroup(pid); err != nil {
		t.Fatalf("KillGroup of a group that is gone: %v", err)
	}
}
