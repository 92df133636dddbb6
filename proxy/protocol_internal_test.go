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
