package wire

import (
	"fmt"
	"testing"
)

func TestNames(t *testing.T) {
	for _, c := range []struct {
		got  fmt.Stringer
		want string
	}{
		{ClientSync, "Sync"},
		{ClientExecute, "Execute"},
		{ClientPassword, "PasswordMessage"},
		{ClientType('z'), `frontend message 'z'`},
		{ServerParameterStatus, "ParameterStatus"},
		{ServerErrorResponse, "ErrorResponse"},
		{ServerReadyForQuery, "ReadyForQuery"},
		{ServerType('z'), `backend message 'z'`},
		{TxIdle, "idle"},
		{TxInBlock, "in transaction"},
		{TxFailed, "in failed transaction"},
		{TxStatus('x'), `transaction status 'x'`},
		{TargetStatement, "statement"},
		{TargetPortal, "portal"},
		{Target('X'), `object type 'X'`},
	} {
		if s := c.got.String(); s != c.want {
			t.Errorf("%#v: %q, want %q", c.got, s, c.want)
		}
	}
}

// The same byte names different things by direction; the values are the
// protocol's.
func TestBytesAreTheProtocols(t *testing.T) {
	if byte(ClientSync) != 'S' || byte(ServerParameterStatus) != 'S' || byte(TargetStatement) != 'S' {
		t.Error("'S' constants")
	}
	if byte(ClientExecute) != 'E' || byte(ServerErrorResponse) != 'E' || byte(TxFailed) != 'E' {
		t.Error("'E' constants")
	}
}
