package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// A probe that hangs up (its request's context ends) must not make
// /readyz answer "not ready" to the probes after it: the answer is cached.
func TestReviewReadyzAbandonedRequestIsNotCachedAsNotReady(t *testing.T) {
	// An upstream that accepts TCP: CheckUpstream only connects.
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg, err := policy.Load([]byte("policy:\n  keys:\n    - {name: k, kind: randomized}\n  columns:\n    - {table: public.t, column: c, key: k, type: text}\n  roles:\n    - {role: r, read: [k]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := keymap.NewLocalStoreInDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keyring := keymap.NewKeyring(st, time.Minute)
	srv, err := proxy.NewServer(proxy.Config{
		Server:   policy.Server{Listen: "127.0.0.1:0"},
		Upstream: policy.Upstream{Address: up.Addr().String(), TLS: policy.UpstreamTLS{Mode: "disable"}},
		Policy:   policy.NewIndex(cfg.Policy), Keyring: keyring,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	for !srv.Listening() {
		time.Sleep(10 * time.Millisecond)
	}
	ready := &readiness{srv: srv, st: st, keyring: keyring, policy: func() *policy.Policy { return &cfg.Policy }}
	h := opsHandler(ready)

	// A client that sends GET /readyz and hangs up at once.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil).WithContext(gone))
	t.Logf("abandoned probe: %d %s", w.Code, w.Body.String())

	// The orchestrator's probe right after it.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("/readyz after an abandoned probe: %d %s, want 200", w.Code, w.Body.String())
	}
}
