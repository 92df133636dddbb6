package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/proxy"
)

// fuzzSeeds are client message sequences for after startup: valid ones
// built with pgproto3, and junk.
func fuzzSeeds() [][]byte {
	enc := func(msgs ...pgproto3.FrontendMessage) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			if out, err = m.Encode(out); err != nil {
				panic(err)
			}
		}
		return out
	}
	raw := func(typ byte, body string) []byte {
		out := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
		return append(out, body...)
	}
	ins := "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)"
	return [][]byte{
		enc(&pgproto3.Query{String: "SELECT 1"}),
		enc(&pgproto3.Query{String: "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('f', 'f-1', 'flu', '2000-01-01'); SELECT ssn, diagnosis, dob FROM patients"}),
		enc(&pgproto3.Query{String: "BEGIN; SELECT * FROM patients WHERE ssn = 'x'; SELECT 1/0; COMMIT"}),
		enc(&pgproto3.Query{String: "SELECT name FROM patients WHERE diagnosis LIKE 'x%'"}),
		enc(&pgproto3.Query{String: ""}),
		enc(
			&pgproto3.Parse{Name: "s", Query: ins},
			&pgproto3.Describe{ObjectType: 'S', Name: "s"},
			&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("n"), []byte("f-2"), []byte("d"), []byte("1999-12-31")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		),
		enc(
			&pgproto3.Parse{Query: "SELECT ssn, diagnosis FROM patients WHERE ssn = $1"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("f-1")}, ResultFormatCodes: []int16{1}},
			&pgproto3.Execute{MaxRows: 1},
			&pgproto3.Flush{},
			&pgproto3.Execute{},
			&pgproto3.Close{ObjectType: 'P'},
			&pgproto3.Sync{},
		),
		enc(
			&pgproto3.Parse{Name: "a", Query: "SELECT 1/(random()*0)::int"},
			&pgproto3.Bind{PreparedStatement: "a"},
			&pgproto3.Execute{},
			&pgproto3.Parse{Name: "b", Query: ins},
			&pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "b", Parameters: [][]byte{[]byte("n"), []byte("f-3"), nil, []byte("bad date")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		),
		enc(
			&pgproto3.Query{String: "COPY patients (name, ssn, diagnosis, dob) FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("c\tf-4\tcopied\t2001-02-03\nd\tf-5\t\\N\t\\N\n")},
			&pgproto3.CopyDone{},
			&pgproto3.Query{String: "COPY patients (ssn, dob) TO STDOUT (FORMAT csv)"},
		),
		enc(
			&pgproto3.Query{String: "COPY patients (name, dob) FROM STDIN (FORMAT binary)"},
			&pgproto3.CopyData{Data: []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01x\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff")},
			&pgproto3.CopyDone{},
		),
		enc(
			&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN (FORMAT csv)"},
			&pgproto3.CopyData{Data: []byte("\"unterminated,f-6\n")},
			&pgproto3.CopyFail{Message: "client gave up"},
		),
		enc(
			&pgproto3.Query{String: "COPY other.patients FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("1\tp\tq\n")},
		),
		enc(&pgproto3.Query{String: "SET ROLE billing; SELECT diagnosis FROM patients; RESET ROLE"}),
		enc(&pgproto3.Query{String: "PREPARE p(text) AS SELECT name FROM patients WHERE ssn = $1; EXECUTE p('f-1'); DEALLOCATE p"}),
		enc(&pgproto3.Sync{}, &pgproto3.Flush{}, &pgproto3.Terminate{}),
		raw('z', ""),
		raw('Q', "no terminator"),
		raw('B', "\x00\x00\xff\xff"),
		{'Q', 0x7f, 0xff, 0xff, 0xff},
		{'Q', 0, 0, 0, 2},
		[]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"),
		{},
	}
}

// FuzzClientMessages sends arbitrary bytes after a valid startup and checks
// that the proxy neither crashes nor hangs and goes on serving.
func FuzzClientMessages(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	// The harness logs to f.Logf, which must not be called while the fuzz
	// target runs: keep warnings only, on stderr.
	h := newHarness(f, testPolicy, testSchema, func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	database := h.pg.Database
	var iterations atomic.Int64
	probe, err := pgx.Connect(context.Background(), h.dsn("doctor"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { probe.Close(context.Background()) })
	// Sessions open besides the fuzz target's own (the probe's, and any
	// another test left behind).
	baseline := fuzzActiveSessions(f)
	fuzzStillServes(f, h)

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial proxy: %v", err)
		}
		defer conn.Close()
		fe := pgproto3.NewFrontend(conn, conn)
		// Bound whatever the input makes PostgreSQL do.
		fe.Send(&pgproto3.StartupMessage{
			ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{
				"user": "doctor", "database": database, "application_name": "pgcloak-fuzz",
				"statement_timeout": "2000", "lock_timeout": "1000",
				"idle_in_transaction_session_timeout": "5000",
			},
		})
		if err := fe.Flush(); err != nil {
			t.Fatalf("send startup: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("startup: %v", err)
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("startup: %s %s", e.Code, e.Message)
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if _, err := conn.Write(data); err != nil {
			return // the proxy already hung up, on an earlier part
		}
		// End of input: the proxy must answer what it can and close.
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("proxy did not close the session within 15s of the client's end of input")
		}
		// The proxy still serves: a session opened before goes on working
		// (every time, so that the coverage of each run does not depend
		// on whether it ran), and a fresh one can be opened (now and then,
		// as it costs a PostgreSQL backend start).
		if err := probe.QueryRow(context.Background(), "SELECT count(*) FROM patients WHERE ssn = $1", "never-stored").Scan(new(int)); err != nil {
			t.Fatalf("existing session through the proxy: %v", err)
		}
		if iterations.Add(1)%25 == 0 {
			fuzzStillServes(t, h)
		}
		// Let the proxy finish tearing the sessions down, so that their
		// last steps are not counted as the coverage of the next input.
		fuzzAwaitSessions(t, baseline)
	})
}

// fuzzActiveSessions reads the proxy's gauge of open sessions.
func fuzzActiveSessions(t testing.TB) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pgcloak_sessions_active" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no pgcloak_sessions_active metric")
	return 0
}

// fuzzAwaitSessions waits until the proxy has at most n sessions open.
func fuzzAwaitSessions(t *testing.T, n float64) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		active := fuzzActiveSessions(t)
		if active <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v proxy sessions still open 10s after their clients left", active)
		}
		time.Sleep(time.Millisecond)
	}
}

// fuzzStillServes checks that a fresh pgx session works through the proxy.
func fuzzStillServes(t testing.TB, h *harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn("doctor"))
	if err != nil {
		t.Fatalf("proxy no longer accepts sessions: %v", err)
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 through the proxy: %d %v", one, err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn = $1", "never-stored").Scan(&n); err != nil || n != 0 {
		t.Fatalf("encrypted lookup through the proxy: %d %v", n, err)
	}
}
