package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// readiness answers /readyz: the proxy listens and is not draining,
// PostgreSQL accepts connections, and the key store answers or every key
// the policy names is in the keyring's memory. Answers are reused for
// readyMaxAge so that probes cannot flood PostgreSQL or Vault.
type readiness struct {
	srv     *proxy.Server
	st      keymap.Store
	keyring *keymap.Keyring
	policy  func() *policy.Policy

	mu     sync.Mutex
	at     time.Time
	report readyReport
}

const readyMaxAge = 2 * time.Second

// readyReport is /readyz's JSON body.
type readyReport struct {
	Ready    bool   `json:"ready"`
	Listener string `json:"listener"`
	Upstream string `json:"upstream"`
	Keystore string `json:"keystore"`
}

const checkOK = "ok"

func (r *readiness) check(ctx context.Context) readyReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.at) < readyMaxAge {
		return r.report
	}
	// Not the request's context: the answer is cached for every probe,
	// so a client that hangs up must not have it cached as "not ready".
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	rep := readyReport{Listener: checkOK, Upstream: checkOK, Keystore: checkOK}
	switch {
	case r.srv.Draining():
		rep.Listener = "draining"
	case !r.srv.Listening():
		rep.Listener = "not listening"
	}
	if err := r.srv.CheckUpstream(ctx); err != nil {
		rep.Upstream = err.Error()
	}
	if err := r.keysUsable(ctx); err != nil {
		rep.Keystore = err.Error()
	}
	rep.Ready = rep.Listener == checkOK && rep.Upstream == checkOK && rep.Keystore == checkOK
	r.at, r.report = time.Now(), rep
	return rep
}

// keysUsable: the key store answers, or the keyring holds every key of the
// policy and can serve them until the store is back.
func (r *readiness) keysUsable(ctx context.Context) error {
	_, err := r.st.List(ctx)
	if err == nil {
		return nil
	}
	var missing []string
	for _, k := range r.policy().Keys {
		if !r.keyring.Holds(k.Name) {
			missing = append(missing, k.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return errors.Join(err, fmt.Errorf("keys not cached: %v", missing))
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rep := r.check(req.Context())
	w.Header().Set("Content-Type", "application/json")
	if !rep.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// opsHandler serves the ops endpoints of server.metrics_listen: /metrics,
// /healthz (the process serves HTTP) and /readyz.
func opsHandler(ready http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /readyz", ready)
	return mux
}
