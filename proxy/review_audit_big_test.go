package proxy_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/policy"
)

// heapMB is the live heap after a collection.
func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// A refused statement's SQL is fingerprinted (lexed whole) and kept in the
// session's fingerprint cache (128 texts): the refusal of an oversized
// statement must not cost the proxy more than the statement's size, nor
// keep it.
func TestReviewAuditOfOversizedRefusals(t *testing.T) {
	trail := &syncBuffer{}
	opts := []harnessOption{withServer(func(s *policy.Server) { s.MaxMessageBytes = 64 << 20 })}
	opts = append(opts, withAuditTo(trail))
	h := newHarness(t, testPolicy, testSchema, opts...)
	c := protoConnect(t, h, "doctor")
	before := heapMB()
	var peak runtime.MemStats
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.HeapAlloc {
					peak = m
				}
			}
		}
	}()
	const n = 6
	start := time.Now()
	for i := 0; i < n; i++ {
		q := "SELECT name FROM patients WHERE ssn = 'x' AND name IN (" + strings.Repeat("'a',", 2<<20) + "'" + strings.Repeat("b", i) + "')"
		got := c.query(q)
		if i == 0 {
			t.Logf("%d MB statement: %q", len(q)>>20, got)
		}
	}
	close(stop)
	<-sampled
	elapsed := time.Since(start)
	after := heapMB()
	t.Logf("%d refusals of 8 MB statements: %v; heap %.0f MB before, %.0f MB peak, %.0f MB retained after", n, elapsed, before, float64(peak.HeapAlloc)/(1<<20), after)
	if after-before > 16 {
		t.Errorf("the session retains %.0f MB after %d refused statements", after-before, n)
	}
}
