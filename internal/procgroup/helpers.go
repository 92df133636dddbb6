package procgroup

import (
	"bytes"
	"net"
)

// FreeLocalPort is a TCP port on 127.0.0.1 that was free a moment ago, for
// a child server to listen on (its start retries when another process took
// it meanwhile).
func FreeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// OutputTail is the end of a child's log or output, from a line start, for
// an error message.
func OutputTail(b []byte) string {
	const limit = 4096
	if len(b) > limit {
		b = b[len(b)-limit:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
