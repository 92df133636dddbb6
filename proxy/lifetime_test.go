package proxy_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// drainSchema adds a plain table to the test schema, for rows a drained
// transaction writes.
const drainSchema = testSchema + `
CREATE TABLE public.drained (v text);
GRANT ALL ON public.drained TO PUBLIC;
`

// withServer tweaks the proxy's server settings.
func withServer(tweak func(*policy.Server)) harnessOption {
	return func(c *proxy.Config) { tweak(&c.Server) }
}

// ended is the count of sessions ended with outcome so far.
func ended(outcome string) float64 {
	return testutil.ToFloat64(metrics.SessionsEnded.WithLabelValues(outcome))
}

// wantEndedMore fails unless sessions ended with outcome rose since before.
func wantEndedMore(t *testing.T, outcome string, before float64) {
	t.Helper()
	// The count is taken as the session goroutine ends, just after the
	// client saw its connection close.
	for deadline := time.Now().Add(5 * time.Second); ended(outcome) <= before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions_ended_total{outcome=%q} stayed at %v", outcome, before)
		}
	}
}

// expectFatalThenEOF reads the FATAL error the proxy ends c's session with,
// failing unless it has SQLSTATE code and the connection then closes.
func expectFatalThenEOF(t *testing.T, c *protoClient, code string, within time.Duration) {
	t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(within))
		msg, err := c.fe.Receive()
		if err != nil {
			t.Fatalf("waiting for FATAL %s: %v", code, err)
		}
		if _, ok := msg.(*pgproto3.ParameterStatus); ok {
			continue
		}
		er, ok := msg.(*pgproto3.ErrorResponse)
		if !ok || er.Code != code || er.Severity != "FATAL" {
			t.Fatalf("got %#v, want FATAL %s", msg, code)
		}
		break
	}
	if tok, err := recvWithin(c, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("after the FATAL error: %q, %v; want the connection closed", tok, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shutdownAsync starts h's Shutdown with ctx and waits until it drains.
func shutdownAsync(t *testing.T, h *harness, ctx context.Context) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); !h.srv.Draining(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not start draining")
		}
	}
	return done
}

func wantShutdownResult(t *testing.T, done <-chan error, want error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, want) {
			t.Fatalf("Shutdown: %v, want %v", err, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// wantRefused fails unless a connection to the proxy is refused.
func wantRefused(t *testing.T, h *harness) {
	t.Helper()
	if conn, err := net.DialTimeout("tcp", h.addr, 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("the proxy accepted a connection while draining")
	}
}

// TestShutdownEndsRestingSessionAt57P01: a session idle outside a
// transaction is ended at once with PostgreSQL's FATAL 57P01, and Shutdown
// returns nil once it is gone.
func TestShutdownEndsRestingSessionAt57P01(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "query", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
	before := ended(metrics.SessionDrained)
	done := shutdownAsync(t, h, ctxT(t))
	expectFatalThenEOF(t, c, "57P01", 5*time.Second)
	wantShutdownResult(t, done, nil)
	wantEndedMore(t, metrics.SessionDrained, before)
	wantRefused(t, h)
}

// TestShutdownLetsATransactionCommit: during a drain a session in a
// transaction runs its statements and its COMMIT, whose answer reaches the
// client before the FATAL 57P01; the row is committed; the proxy accepts no
// new connection meanwhile.
func TestShutdownLetsATransactionCommit(t *testing.T) {
	h := newHarness(t, testPolicy, drainSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "insert", c.query("INSERT INTO drained VALUES ('kept')"), "C:INSERT 0 1", "Z:T")
	done := shutdownAsync(t, h, ctxT(t))
	wantRefused(t, h)
	wantTokens(t, "insert while draining", c.query("INSERT INTO drained VALUES ('kept too')"), "C:INSERT 0 1", "Z:T")
	wantTokens(t, "commit while draining", c.query("COMMIT"), "C:COMMIT", "Z:I")
	expectFatalThenEOF(t, c, "57P01", 5*time.Second)
	wantShutdownResult(t, done, nil)
	var n int
	if err := h.direct().QueryRow(ctxT(t), "SELECT count(*) FROM drained").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows committed during the drain: %d, %v; want 2", n, err)
	}
}

// TestShutdownEndsRequestThenSession: a request in flight when the drain
// begins gets its whole answer before the session ends.
func TestShutdownEndsRequestThenSession(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Query{String: "SELECT pg_sleep(0.5), 7"})
	time.Sleep(100 * time.Millisecond)
	done := shutdownAsync(t, h, ctxT(t))
	wantTokens(t, "query in flight", recvReadyWithin(t, c, 5*time.Second), "Row:pg_sleep/2278,?column?/23", "D:,7", "C:SELECT 1", "Z:I")
	expectFatalThenEOF(t, c, "57P01", 5*time.Second)
	wantShutdownResult(t, done, nil)
}

// TestShutdownTimeoutRollsBackAnOpenTransaction: a session that keeps its
// transaction open past the drain timeout is ended with 57P01 anyway, and
// its transaction rolls back.
func TestShutdownTimeoutRollsBackAnOpenTransaction(t *testing.T) {
	h := newHarness(t, testPolicy, drainSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "insert", c.query("INSERT INTO drained VALUES ('lost')"), "C:INSERT 0 1", "Z:T")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := shutdownAsync(t, h, ctx)
	expectFatalThenEOF(t, c, "57P01", 5*time.Second)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("the session in a transaction was ended after %v, before the drain timeout", waited)
	}
	wantShutdownResult(t, done, context.DeadlineExceeded)
	direct := h.direct()
	// PostgreSQL rolls back as it notices the connection closed.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var open int
		err := direct.QueryRow(ctxT(t), "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcloak-proto-test' AND datname = current_database()").Scan(&open)
		if err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drained session's backend is still there")
		}
	}
	var n int
	if err := direct.QueryRow(ctxT(t), "SELECT count(*) FROM drained").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows of the transaction cut by the drain timeout: %d, %v; want 0", n, err)
	}
}

// connectAs opens a pgx session through the proxy, or returns why not.
func connectAs(t *testing.T, h *harness, role string) (*pgx.Conn, error) {
	t.Helper()
	conn, err := connectDSN(t, h.dsn(role), nil)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// TestMaxConnectionsRefusesWith53300: with server.max_connections 2, a third
// session is refused as PostgreSQL refuses one over its limit; once a
// session ends, a new one is admitted.
func TestMaxConnectionsRefusesWith53300(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, withServer(func(s *policy.Server) { s.MaxConnections = 2 }))
	first, err := connectAs(t, h, "doctor")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectAs(t, h, "doctor"); err != nil {
		t.Fatal(err)
	}
	before := ended(metrics.SessionRefused)
	_, err = connectAs(t, h, "doctor")
	if pgCode(err) != "53300" {
		t.Fatalf("third session: %v, want 53300", err)
	}
	wantEndedMore(t, metrics.SessionRefused, before)
	first.Close(context.Background())
	for deadline := time.Now().Add(5 * time.Second); h.srv.Sessions() > 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions after one closed", h.srv.Sessions())
		}
	}
	conn, err := connectAs(t, h, "doctor")
	if err != nil {
		t.Fatalf("a session after one closed: %v", err)
	}
	if err := conn.QueryRow(ctxT(t), "SELECT 1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
}

// TestCancelRequestServedAtMaxConnections: at server.max_connections a
// CancelRequest, which is no session, still cancels a running query.
func TestCancelRequestServedAtMaxConnections(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, withServer(func(s *policy.Server) { s.MaxConnections = 2 }))
	sleeper, err := connectAs(t, h, "doctor")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectAs(t, h, "doctor"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var sleepErr error
	go func() {
		defer wg.Done()
		_, sleepErr = sleeper.Exec(context.Background(), "SELECT pg_sleep(30)")
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := sleeper.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	wg.Wait()
	if pgCode(sleepErr) != "57014" || time.Since(start) > 15*time.Second {
		t.Fatalf("pg_sleep after a cancel at the connection limit: %v after %v, want 57014", sleepErr, time.Since(start))
	}
}

// idleTimeoutHarness is a proxy with server.idle_timeout 300ms.
func idleTimeoutHarness(t *testing.T) *harness {
	return newHarness(t, testPolicy, testSchema, withServer(func(s *policy.Server) { s.IdleTimeout = "300ms" }))
}

// TestIdleTimeoutEndsRestingSessionAt57P05: a session idle outside a
// transaction for server.idle_timeout is ended with PostgreSQL's FATAL
// 57P05.
func TestIdleTimeoutEndsRestingSessionAt57P05(t *testing.T) {
	h := idleTimeoutHarness(t)
	before := ended(metrics.SessionIdleTimeout)
	c := protoConnect(t, h, "doctor")
	start := time.Now()
	expectFatalThenEOF(t, c, "57P05", 5*time.Second)
	if idle := time.Since(start); idle < 250*time.Millisecond {
		t.Fatalf("ended after %v idle, before the timeout", idle)
	}
	wantEndedMore(t, metrics.SessionIdleTimeout, before)
}

// TestIdleTimeoutSparesOpenTransaction: a session idle inside a
// transaction outlives server.idle_timeout (PostgreSQL times that out with
// another setting); once its transaction ends, the timeout applies.
func TestIdleTimeoutSparesOpenTransaction(t *testing.T) {
	h := idleTimeoutHarness(t)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	if tok, err := recvWithin(c, time.Second); !isTimeout(err) {
		t.Fatalf("idle in a transaction: got %q, %v; want nothing", tok, err)
	}
	wantTokens(t, "after a second in the transaction", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	expectFatalThenEOF(t, c, "57P05", 5*time.Second)
}

// TestIdleTimeoutSparesWorkingSession: a session that sends requests more
// often than server.idle_timeout is never ended, for several times the
// timeout.
func TestIdleTimeoutSparesWorkingSession(t *testing.T) {
	h := idleTimeoutHarness(t)
	conn := h.connect("doctor")
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(150 * time.Millisecond) {
		if err := conn.QueryRow(ctxT(t), "SELECT 1").Scan(new(int)); err != nil {
			t.Fatalf("a working session was ended: %v", err)
		}
	}
}
