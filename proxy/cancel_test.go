package proxy_test

// Cancel tests: a CancelRequest sent to the proxy cancels the query of the
// right session upstream.

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// cancelByRequest makes pgx cancel a query whose context ends with a
// CancelRequest (its default would break the connection instead).
func cancelByRequest(c *pgx.ConnConfig) {
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 15 * time.Second}
	}
}

// assertCancel runs a long query, cancels it by context and checks the
// session survives.
func assertCancel(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// 57014 proves PostgreSQL cancelled the sleep (it would otherwise end
	// without error after 30s).
	_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
	if code := pgCode(err); code != "57014" {
		t.Fatalf("cancelled pg_sleep: want 57014, got %v", err)
	}
	if conn.IsClosed() {
		t.Fatal("connection closed by cancel")
	}
	var n int
	if err := conn.QueryRow(ctxT(t), "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("session after cancel: %d, %v", n, err)
	}
}

func TestProtoCancelRequest(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	conn, err := connectDSN(t, h.dsn("doctor"), cancelByRequest)
	if err != nil {
		t.Fatal(err)
	}
	assertCancel(t, conn)
	// Inside a transaction the cancel aborts it, and the state is right.
	ctx := ctxT(t)
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = conn.Exec(cctx, "SELECT pg_sleep(30)")
	cancel()
	wantCode(t, err, "57014")
	if st := conn.PgConn().TxStatus(); st != 'E' {
		t.Fatalf("TxStatus after cancel in a transaction = %q, want E", st)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// Encrypted work after a cancel still decrypts.
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('C', $1, $2)", "c-ssn", "c-diag"); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "c-ssn").Scan(&diag); err != nil || diag != "c-diag" {
		t.Fatalf("after cancel: %q %v", diag, err)
	}
	// A CancelRequest with a wrong key cancels nothing.
	other := h.connect("doctor")
	done := make(chan error, 1)
	go func() {
		_, err := other.Exec(context.Background(), "SELECT pg_sleep(1.5)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	raw := protoDial(t, h)
	var pkt [16]byte
	binary.BigEndian.PutUint32(pkt[0:4], 16)
	binary.BigEndian.PutUint32(pkt[4:8], 80877102)
	binary.BigEndian.PutUint32(pkt[8:12], other.PgConn().PID())
	binary.BigEndian.PutUint32(pkt[12:16], binary.BigEndian.Uint32(other.PgConn().SecretKey())^0xdeadbeef)
	raw.Write(pkt[:])
	expectEOF(t, raw)
	if err := <-done; err != nil {
		t.Fatalf("a CancelRequest with the wrong secret cancelled the query: %v", err)
	}
}
