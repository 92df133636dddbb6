package proxy

import (
	"fmt"
	"testing"
)

func TestProtocolNames(t *testing.T) {
	for _, c := range []struct {
		got  fmt.Stringer
		want string
	}{
		{feSync, "Sync"},
		{feExecute, "Execute"},
		{fePassword, "PasswordMessage"},
		{frontendType('z'), `frontend message 'z'`},
		{beParameterStatus, "ParameterStatus"},
		{beErrorResponse, "ErrorResponse"},
		{beReadyForQuery, "ReadyForQuery"},
		{backendType('z'), `backend message 'z'`},
		{txIdle, "idle"},
		{txInBlock, "in transaction"},
		{txFailed, "in failed transaction"},
		{txStatus('x'), `transaction status 'x'`},
		{targetStatement, "statement"},
		{targetPortal, "portal"},
		{describeTarget('X'), `object type 'X'`},
		{authSASLFinal, "AuthenticationSASLFinal"},
		{authRequest(5), "authentication request 5"},
		{encAccepted, "accepted"},
		{encRefused, "refused"},
	} {
		if s := c.got.String(); s != c.want {
			t.Errorf("%#v: %q, want %q", c.got, s, c.want)
		}
	}
}

// The same byte names different things by direction; the values are the
// protocol's.
func TestProtocolBytes(t *testing.T) {
	if byte(feSync) != 'S' || byte(beParameterStatus) != 'S' || byte(targetStatement) != 'S' {
		t.Error("'S' constants")
	}
	if byte(feExecute) != 'E' || byte(beErrorResponse) != 'E' || byte(txFailed) != 'E' {
		t.Error("'E' constants")
	}
}
