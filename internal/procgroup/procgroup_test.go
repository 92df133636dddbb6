//go:build unix

package procgroup

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

func TestOutputTailKeepsTheEndFromALineStart(t *testing.T) {
	if got := OutputTail([]byte("short\nlog")); got != "short\nlog" {
		t.Fatalf("short output: %q", got)
	}
	long := bytes.Repeat([]byte("0123456789abcdef\n"), 1000)
	got := OutputTail(append(long, "last line"...))
	if len(got) > 4096 || !strings.HasSuffix(got, "last line") || !strings.HasPrefix(got, "0123456789abcdef\n") {
		t.Fatalf("long output: %d bytes, starting %q", len(got), got[:20])
	}
}

func TestFreeLocalPortCanBeListenedOn(t *testing.T) {
	port, err := FreeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d: %v", port, err)
	}
	l.Close()
}
