package proxy_test

import (
	"net"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/proxy"
)

// TestSilentUpstreamFailsWithinConnectTimeout: a PostgreSQL address that
// accepts connections and then says nothing (to the SSLRequest, or in the
// TLS handshake) fails the login with 08006 within the connect timeout,
// instead of holding the session until the client gives up.
func TestSilentUpstreamFailsWithinConnectTimeout(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for n := 0; ; n++ {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			answer := n%2 == 1
			go func() {
				defer c.Close()
				buf := make([]byte, 8)
				c.Read(buf)
				// Every other connection answers the SSLRequest with 'S'
				// and then goes quiet in the handshake; the others do not
				// answer.
				if answer {
					c.Write([]byte("S"))
				}
				time.Sleep(10 * time.Second)
			}()
		}
	}()
	h := newHarness(t, testPolicy, testSchema, withUpstreamTLS("require", ""), func(c *proxy.Config) {
		c.Upstream.Address = silent.Addr().String()
		c.ConnectTimeout = 500 * time.Millisecond
	})
	for range 4 {
		start := time.Now()
		_, err := connectDSN(t, h.dsn("doctor"), nil)
		if pgCode(err) != "08006" || time.Since(start) > 5*time.Second {
			t.Fatalf("%v after %s, want 08006 within the connect timeout", err, time.Since(start))
		}
	}
}
