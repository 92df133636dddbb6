package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/testenv"
)

// TestServeDrainsOnSIGTERM: on SIGTERM serve stops accepting, lets a
// session finish its transaction — the COMMIT succeeds and the row is
// there — then ends the session with FATAL 57P01 and returns nil (the
// process exits 0). The signal comes through serve's signal channel, as
// newServeCommand feeds it from signal.Notify.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	sv := startServe(t)
	ctx := ctxFor(t)
	conn, tx := sv.openTransaction(t, ctx)
	sv.stop <- syscall.SIGTERM
	waitRefused(t, sv.addr)
	if _, err := tx.Exec(ctx, "INSERT INTO patients (name) VALUES ('Drained too')"); err != nil {
		t.Fatalf("statement in a transaction during the drain: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT during the drain: %v", err)
	}
	if code := fatalCode(conn.PgConn().ReceiveMessage(ctx)); code != "57P01" {
		t.Fatalf("after the COMMIT: %s; want FATAL 57P01", code)
	}
	sv.wantReturned(t, 20*time.Second)
	if n := sv.drainedRows(t, ctx); n != 2 {
		t.Fatalf("rows committed during the drain: %d; want 2", n)
	}
}

// TestServeClosesAtOnceOnSecondSignal: a second signal during the drain
// ends the sessions left without waiting for server.drain_timeout (30s):
// an open transaction rolls back, and serve returns nil.
func TestServeClosesAtOnceOnSecondSignal(t *testing.T) {
	sv := startServe(t)
	ctx := ctxFor(t)
	sv.openTransaction(t, ctx)
	sv.stop <- syscall.SIGTERM
	waitRefused(t, sv.addr)
	sv.stop <- syscall.SIGINT
	sv.wantReturned(t, 10*time.Second)
	if n := sv.drainedRows(t, ctx); n != 0 {
		t.Fatalf("rows of a transaction cut by the second signal: %d; want 0", n)
	}
}

// servedProxy is serve running in the test process with its signal
// channel in the test's hands.
type servedProxy struct {
	pg     *testenv.PG
	addr   string
	stop   chan os.Signal
	served chan error
}

func startServe(t *testing.T) *servedProxy {
	t.Helper()
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id serial, name text, ssn bytea, diagnosis bytea)")
	path := writeConfig(t, pg.Address())
	if out, err := runCLI(t, nil, "keys", "create", "--all", "--config", path); err != nil {
		t.Fatalf("keys create: %v\n%s", err, out)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Listen = freeAddr(t)
	sv := &servedProxy{pg: pg, addr: cfg.Server.Listen, stop: make(chan os.Signal, 2), served: make(chan error, 1)}
	go func() { sv.served <- serve(context.Background(), &globalFlags{logLevel: "error"}, cfg, sv.stop, false) }()
	t.Cleanup(func() {
		// A test that failed before signalling leaves serve running.
		select {
		case sv.stop <- syscall.SIGTERM:
			sv.stop <- syscall.SIGTERM
		default:
		}
	})
	return sv
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openTransaction connects through the proxy and writes a row (an
// encrypted column too) in a transaction left open.
func (sv *servedProxy) openTransaction(t *testing.T, ctx context.Context) (*pgx.Conn, pgx.Tx) {
	t.Helper()
	conn := connectWhenUp(t, ctx, "postgres://postgres@"+sv.addr+"/"+sv.pg.Database+"?sslmode=disable")
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "Drained", "DRAIN-SSN-1"); err != nil {
		t.Fatal(err)
	}
	return conn, tx
}

func (sv *servedProxy) wantReturned(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-sv.served:
		if err != nil {
			t.Fatalf("serve after the signal: %v, want nil", err)
		}
	case <-time.After(within):
		t.Fatalf("serve did not return within %v of the signal", within)
	}
}

// drainedRows counts the test's rows directly in PostgreSQL.
func (sv *servedProxy) drainedRows(t *testing.T, ctx context.Context) int {
	t.Helper()
	var n int
	if err := sv.pg.Connect(t).QueryRow(ctx, "SELECT count(*) FROM patients WHERE name LIKE 'Drained%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fatalCode is the SQLSTATE of the FATAL error ReceiveMessage returned:
// pgconn turns it into an error and closes, unless an OnPgError hook
// keeps it a message.
func fatalCode(msg pgproto3.BackendMessage, err error) string {
	if er, ok := msg.(*pgproto3.ErrorResponse); ok && er.Severity == "FATAL" {
		return er.Code
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity == "FATAL" {
		return pe.Code
	}
	return fmt.Sprintf("no FATAL error (%T, %v)", msg, err)
}

func connectWhenUp(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never accepted a connection: %v", err)
		}
	}
}

// waitRefused waits until addr refuses connections: the drain began.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("serve still accepts connections after SIGTERM")
		}
	}
}
