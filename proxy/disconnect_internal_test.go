package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestIsDisconnectByErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{net.ErrClosed, true},
		{errSessionClosed, true},
		// Text alone decides nothing: a server message may say anything.
		{errors.New("ERROR: connection reset by peer (SQLSTATE XX000)"), false},
		{errors.New("broken pipe in my function"), false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
	} {
		if got := isDisconnect(tc.err); got != tc.want {
			t.Errorf("isDisconnect(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
