package proxy_test

import (
	"net"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/policy"
)

// Connections that never send a startup packet are not sessions, but each
// holds a socket and a goroutine for the startup timeout (60s): with
// server.max_connections set, their number must be bounded too, or a
// client exhausts the process's file descriptors with silent connections.
func TestReviewMaxConnectionsBoundsSilentConnections(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, withServer(func(s *policy.Server) { s.MaxConnections = 2 }))
	const flood = 200
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < flood; i++ {
		c, err := net.DialTimeout("tcp", h.addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond)
	open := 0
	var b [1]byte
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(b[:]); isTimeout(err) {
			open++
		}
	}
	t.Logf("%d of %d silent connections held open at max_connections 2", open, flood)
	if open > 2+32 {
		t.Fatalf("%d silent connections held open at max_connections 2: unbounded", open)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Once the flood is gone, sessions are admitted again.
	time.Sleep(200 * time.Millisecond)
	if _, err := connectAs(t, h, "doctor"); err != nil {
		t.Fatalf("a session after the flood: %v", err)
	}
}
