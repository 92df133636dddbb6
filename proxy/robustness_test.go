package proxy_test

// Robustness tests: malformed and hostile input, clients that vanish at
// awkward moments, and shutdown. After each, other sessions through the
// same proxy must keep working and nothing may linger upstream.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

var robustAppSeq atomic.Int64

// robustApp is a unique application_name, to find a session's backend in
// pg_stat_activity.
func robustApp(t testing.TB) string {
	return fmt.Sprintf("robust-%d-%d", time.Now().UnixNano()%1e6, robustAppSeq.Add(1))
}

// robustConnect opens a raw session as role with application_name app.
func robustConnect(t testing.TB, h *harness, role, app string) *protoClient {
	t.Helper()
	conn := protoDial(t, h)
	c := &protoClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	sm := protoStartup(role, h.pg.Database)
	sm.Parameters["application_name"] = app
	c.send(sm)
	for {
		switch m := c.recv().(type) {
		case *pgproto3.ReadyForQuery:
			return c
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s %s", m.Code, m.Message)
		}
	}
}

// awaitBackendGone polls pg_stat_activity until no backend of app is left,
// failing after 15s with what it shows.
func awaitBackendGone(t *testing.T, h *harness, direct *pgx.Conn, app string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		var states string
		err := direct.QueryRow(context.Background(),
			`SELECT count(*), coalesce(string_agg(coalesce(state, '') || ': ' || left(query, 60), '; '), '')
			   FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n, &states)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream backend of %s still there after 15s: %s", app, states)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantFatal08P01 reads until the proxy closes the connection and checks
// that what arrived, if anything, is a protocol-violation error.
func wantClosedWith(t *testing.T, conn net.Conn, code string, required bool) {
	t.Helper()
	data := expectEOF(t, conn)
	errs := backendErrors(data)
	if required && len(errs) == 0 {
		t.Fatalf("connection closed without an ErrorResponse (got %q)", data)
	}
	for _, e := range errs {
		if e.Code != code || e.Severity != "FATAL" {
			t.Fatalf("got %s %s %q, want FATAL %s", e.Severity, e.Code, e.Message, code)
		}
	}
}

func TestRobustMalformedStartup(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	be32 := func(vals ...uint32) []byte {
		var b []byte
		for _, v := range vals {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	startup := func(params ...string) []byte {
		body := be32(196608)
		for _, p := range params {
			body = append(append(body, p...), 0)
		}
		body = append(body, 0)
		return append(be32(uint32(len(body)+4)), body...)
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		code     string
		required bool
	}{
		{"negative length", be32(0xffffffff, 196608), "08P01", false},
		{"length too small", be32(3, 0), "08P01", false},
		{"length zero", be32(0), "08P01", false},
		{"length too large", be32(1<<20, 196608), "08P01", false},
		{"unknown protocol", be32(8, 0x12345678), "08P01", true},
		{"protocol 2", be32(8, 2<<16), "08P01", true},
		{"no user", startup("database", h.pg.Database), "28000", true},
		{"unterminated parameters", append(be32(16, 196608), "user\x00doc"...), "08P01", true},
		{"odd parameter count", startup("user", "doctor", "database"), "08P01", true},
		{"cancel too short", be32(12, 80877102, 1), "", false},
		{"truncated", be32(100, 196608)[:6], "", false},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "08P01", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := protoDial(t, h)
			if _, err := conn.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated" {
				conn.(*net.TCPConn).CloseWrite()
			}
			wantClosedWith(t, conn, tc.code, tc.required)
			stillServes(t, h)
		})
	}
}

func TestRobustOversizedMessage(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema) // max_message_bytes: 1 MiB
	direct := h.direct()

	// A message of exactly the limit is accepted.
	c := protoConnect(t, h, "doctor")
	body := 1 << 20
	pad := body - len("SELECT length('')") - 1
	got := c.query("SELECT length('" + strings.Repeat("x", pad) + "')")
	wantTokens(t, "message at the limit", got, "Row:length/23", fmt.Sprintf("D:%d", pad), "C:SELECT 1", "Z:I")

	// One byte more: FATAL 08P01 and the connection closes, without the
	// proxy reading (or waiting for) the body.
	for _, typ := range []byte{'Q', 'P', 'B', 'd', 'p'} {
		t.Run(string(typ), func(t *testing.T) {
			app := robustApp(t)
			c := robustConnect(t, h, "doctor", app)
			if typ == 'd' {
				c.send(&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN"})
				wantTokens(t, "copy", c.recvN(1), "CopyIn")
			}
			hdr := []byte{typ, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(hdr[1:], uint32(body+1+4))
			c.conn.Write(append(hdr, "SELECT 1"...))
			wantClosedWith(t, c.conn, "08P01", true)
			awaitBackendGone(t, h, direct, app)
			stillServes(t, h)
		})
	}
	// Nothing of the COPY was committed.
	var n int
	if err := direct.QueryRow(ctxT(t), "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows (%v)", n, err)
	}
}

func TestRobustBadMessages(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	direct := h.direct()
	msg := func(typ byte, body []byte) []byte {
		out := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
		return append(out, body...)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"unknown type", msg('z', nil)},
		{"backend type", msg('T', []byte{0, 0})},
		{"NUL type", msg(0, nil)},
		{"length below 4", []byte{'Q', 0, 0, 0, 3}},
		{"negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xf0}},
		{"Query without NUL", msg('Q', []byte("SELECT 1"))},
		{"Parse truncated", msg('P', []byte("name\x00SELECT 1\x00\x00"))},
		{"Bind truncated", msg('B', []byte("\x00\x00\x00\x01"))},
		{"Bind negative count", msg('B', []byte("\x00\x00\xff\xff"))},
		{"Execute truncated", msg('E', []byte("\x00\x00"))},
		{"Describe bad kind", msg('D', []byte("X\x00\x00\x00\x00\x00"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := robustApp(t)
			c := robustConnect(t, h, "doctor", app)
			c.conn.Write(tc.data)
			data := expectEOF(t, c.conn)
			errs := backendErrors(data)
			if len(errs) == 0 {
				t.Fatalf("closed without an error (got %q)", data)
			}
			last := errs[len(errs)-1]
			if last.Code != "08P01" {
				t.Fatalf("last error %s %s %q, want 08P01", last.Severity, last.Code, last.Message)
			}
			awaitBackendGone(t, h, direct, app)
			stillServes(t, h)
		})
	}
	// Well-framed messages PostgreSQL itself rejects are its (non-fatal)
	// errors: the session goes on.
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Describe{ObjectType: 'X', Name: "x"}, &pgproto3.Sync{})
	wantTokens(t, "describe of kind X", c.recvReady(), "E:08P01", "Z:I")
	c.send(&pgproto3.Close{ObjectType: 'X', Name: "x"}, &pgproto3.Sync{})
	wantTokens(t, "close of kind X", c.recvReady(), "E:08P01", "Z:I")
	c.send(&pgproto3.Parse{Query: "SELECT $1::int"}, &pgproto3.Bind{ParameterFormatCodes: []int16{7}, Parameters: [][]byte{{1}}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "bad format code", c.recvReady(), "ParseComplete", "E:22023", "Z:I")
	c.send(&pgproto3.Parse{Query: "SELECT ssn FROM patients WHERE ssn = $1"}, &pgproto3.Bind{ParameterFormatCodes: []int16{7}, Parameters: [][]byte{{1}}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got := c.recvReady()
	if len(got) != 3 || got[0] != "ParseComplete" || (got[1] != "E:08P01" && got[1] != "E:22P02" && got[1] != "E:22023") || got[2] != "Z:I" {
		t.Fatalf("bad format code for an encrypted parameter: %q", got)
	}
	wantTokens(t, "session goes on", c.query("SELECT 1 AS one"), "Row:one/23", "D:1", "C:SELECT 1", "Z:I")
}

func TestRobustDisconnectMidCopy(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	direct := h.direct()
	ctx := ctxT(t)
	for _, tc := range []struct{ name, sql, data string }{
		{"encrypted text", "COPY patients (name, ssn, diagnosis) FROM STDIN", "A\tc-1\tflu\nB\tc-2\tco"},
		{"encrypted csv", "COPY patients (name, ssn) FROM STDIN (FORMAT csv)", "A,c-3\n\"B,"},
		{"encrypted binary", "COPY patients (name, ssn) FROM STDIN (FORMAT binary)", "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01A"},
		{"plain", "COPY other.patients FROM STDIN", "1\tx\ty\n2\tz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := robustApp(t)
			c := robustConnect(t, h, "doctor", app)
			c.send(&pgproto3.Query{String: tc.sql})
			wantTokens(t, "copy", c.recvN(1), "CopyIn")
			c.send(&pgproto3.CopyData{Data: []byte(tc.data)})
			time.Sleep(50 * time.Millisecond)
			c.conn.Close()
			awaitBackendGone(t, h, direct, app)
			stillServes(t, h)
		})
	}
	// Inside an explicit transaction, with rows already inserted before.
	app := robustApp(t)
	c := robustConnect(t, h, "doctor", app)
	wantTokens(t, "insert", c.query("BEGIN; INSERT INTO patients (name, ssn) VALUES ('tx', 'c-tx')"), "C:BEGIN", "C:INSERT 0 1", "Z:T")
	c.send(&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "copy", c.recvN(1), "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("C\tc-5\n")}, &pgproto3.CopyDone{})
	c.conn.Close()
	awaitBackendGone(t, h, direct, app)
	var n, m int
	if err := direct.QueryRow(ctx, "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM other.patients)").Scan(&n, &m); err != nil || n != 0 || m != 0 {
		t.Fatalf("rows committed by vanished COPY clients: patients %d, other.patients %d (%v)", n, m, err)
	}
}

func TestRobustDisconnectMidPipeline(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	direct := h.direct()
	ctx := ctxT(t)
	ins := func(name, ssn string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte(name), []byte(ssn), []byte("d")}},
			&pgproto3.Execute{},
		}
	}
	for _, tc := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"no sync", ins("A", "pl-1")},
		{"flushed, no sync", append(ins("B", "pl-2"), &pgproto3.Flush{})},
		{"half a message", nil},
		{"terminate in transaction", append(append([]pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"}}, ins("C", "pl-3")...), &pgproto3.Sync{}, &pgproto3.Terminate{})},
		{"long pipeline", func() []pgproto3.FrontendMessage {
			var out []pgproto3.FrontendMessage
			for i := 0; i < 200; i++ {
				out = append(out, ins("L", fmt.Sprintf("pl-l-%d", i))...)
			}
			return out
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := robustApp(t)
			c := robustConnect(t, h, "doctor", app)
			if tc.msgs == nil {
				p, _ := (&pgproto3.Parse{Query: "SELECT 1"}).Encode(nil)
				c.conn.Write(p[:len(p)-3])
			} else {
				c.send(tc.msgs...)
			}
			if tc.name == "flushed, no sync" {
				wantTokens(t, "flushed", c.recvN(3), "ParseComplete", "BindComplete", "C:INSERT 0 1")
			}
			c.conn.Close()
			awaitBackendGone(t, h, direct, app)
			stillServes(t, h)
		})
	}
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows committed without Sync or COMMIT (%v)", n, err)
	}
}

func TestRobustConcurrentSessions(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	const workers, rounds = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		conn, err := pgx.Connect(ctx, h.dsn("doctor"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		wg.Add(1)
		go func(w int, conn *pgx.Conn) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				ssn := fmt.Sprintf("cc-%d-%d", w, i)
				diag := fmt.Sprintf("diag %d/%d", w, i)
				b := &pgx.Batch{}
				b.Queue("INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "W", ssn, diag)
				b.Queue("SELECT diagnosis FROM patients WHERE ssn = $1", ssn)
				br := conn.SendBatch(ctx, b)
				if _, err := br.Exec(); err != nil {
					errs <- fmt.Errorf("worker %d insert: %w", w, err)
					return
				}
				var got string
				if err := br.QueryRow().Scan(&got); err != nil || got != diag {
					errs <- fmt.Errorf("worker %d: diagnosis %q (%v), want %q", w, got, err, diag)
					return
				}
				if err := br.Close(); err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if _, err := conn.Exec(ctx, "SELECT 1 FROM patients WHERE ssn LIKE 'x%'"); pgCode(err) != "0A000" {
						errs <- fmt.Errorf("worker %d: refusal %v", w, err)
						return
					}
					var n int
					if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn = $1", pgx.QueryExecModeSimpleProtocol, ssn).Scan(&n); err != nil || n != 1 {
						errs <- fmt.Errorf("worker %d: count %d %v", w, n, err)
						return
					}
				}
			}
		}(w, conn)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != workers*rounds {
		t.Fatalf("%d rows, want %d (%v)", n, workers*rounds, err)
	}
}

// proxyGoroutines lists the stacks of goroutines running proxy sessions
// or its accept loop.
func proxyGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pgcloak/proxy.(*session)") || strings.Contains(g, "pgcloak/proxy.(*Server).Serve") ||
			strings.Contains(g, "pgcloak/proxy.(*Server).handle") {
			out = append(out, g)
		}
	}
	return out
}

func TestRobustCloseWithBusySessions(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	direct := h.direct()

	idle := h.connect("doctor")
	inTx := h.connect("doctor")
	if _, err := inTx.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := inTx.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('tx', 'close-1')"); err != nil {
		t.Fatal(err)
	}
	copying := robustConnect(t, h, "doctor", robustApp(t))
	copying.send(&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "copy", copying.recvN(1), "CopyIn")
	copying.send(&pgproto3.CopyData{Data: []byte("X\tclose-2\n")})
	sleepApp := robustApp(t)
	sleeping := robustConnect(t, h, "doctor", sleepApp)
	sleeping.send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	barrier := robustConnect(t, h, "doctor", robustApp(t))
	barrier.send(&pgproto3.Query{String: "BEGIN; SELECT pg_sleep(30)"}) // the frontend waits for it
	unsynced := robustConnect(t, h, "doctor", robustApp(t))
	unsynced.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{})
	preStartup := protoDial(t, h) // connected, nothing sent
	halfStartup := protoDial(t, h)
	halfStartup.Write([]byte{0, 0, 0, 40, 0, 3})
	sslOnly := protoDial(t, h)
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	sslOnly.Write(ssl)
	// Wait until the sleeps run upstream.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND state = 'active' AND datname = current_database() AND pid <> pg_backend_pid()").Scan(&n)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep sessions not active")
		}
		time.Sleep(20 * time.Millisecond)
	}

	closed := make(chan struct{})
	start := time.Now()
	go func() {
		h.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("Server.Close still blocked after 10s; proxy goroutines:\n%s", strings.Join(proxyGoroutines(), "\n\n"))
	}
	t.Logf("Close returned in %s", time.Since(start))
	if gs := proxyGoroutines(); len(gs) > 0 {
		// Goroutines of other tests' proxies would be a leak too, but
		// give stragglers of this one a moment.
		time.Sleep(500 * time.Millisecond)
		if gs = proxyGoroutines(); len(gs) > 0 {
			t.Fatalf("%d proxy goroutines left after Close:\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
	}
	// Every client sees its connection end.
	for _, conn := range []net.Conn{copying.conn, sleeping.conn, barrier.conn, unsynced.conn, preStartup, halfStartup, sslOnly} {
		expectEOF(t, conn)
	}
	if err := idle.Ping(ctx); err == nil {
		t.Fatal("idle session survived Close")
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		c.Write(ssl)
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Fatal("closed proxy answered a new connection")
		}
		c.Close()
	}
	// The open transaction and the COPY were not committed.
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows after Close (%v)", n, err)
	}
	// Close is idempotent.
	h.srv.Close()
}

// 3.6: Terminate was buffered and never sent: PostgreSQL saw the
// connection drop instead (and logged it, in a transaction).
func TestTerminateReachesPostgreSQL(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	h.pg.StatementLog(t) // skips without a server log
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	c.send(&pgproto3.Terminate{})
	expectEOF(t, c.conn)
	conn := h.direct()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctxT(t), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'doctor'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upstream session lives on")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(h.pg.StatementLog(t), "\n") {
		if strings.Contains(line, "@"+h.pg.Database+" ") && strings.Contains(line, "unexpected EOF") {
			t.Fatalf("PostgreSQL saw no Terminate: %s", line)
		}
	}
}

// 3.6: an ordinary end of session while the frontend waited was logged
// as if something had gone wrong ("session closed").
func TestOrdinarySessionEndNotLogged(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	// A barrier that lasts, then a query that waits for it.
	c.send(&pgproto3.Query{String: "SET search_path = public; SELECT pg_sleep(30)"}, &pgproto3.Query{String: "SELECT 2"})
	time.Sleep(300 * time.Millisecond)
	h.srv.Close() // waits for the session to end
	if logs := h.logBuf.String(); strings.Contains(logs, "session closed") {
		t.Fatalf("ordinary end of session logged:\n%s", logs)
	}
}

// 3.6: a malformed message from PostgreSQL was reported to the client as
// its own protocol violation ("malformed ReadyForQuery message").
func TestMalformedServerMessageBlamesPostgreSQL(t *testing.T) {
	up := fakeUpstream(t)
	h := newHarness(t, testPolicy, "", func(c *proxy.Config) { c.Upstream.Address = up })
	conn := protoDial(t, h)
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(protoStartup("doctor", "fake"))
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	data := expectEOF(t, conn)
	errs := backendErrors(data)
	if len(errs) != 1 || errs[0].Severity != "FATAL" || !strings.Contains(errs[0].Message, "from PostgreSQL") {
		for _, e := range errs {
			t.Logf("client got %s %s %s", e.Severity, e.Code, e.Message)
		}
		t.Fatal("want one FATAL error naming PostgreSQL")
	}
}

// fakeUpstream is a PostgreSQL stand-in that lets one session start, then
// answers its first query with a ReadyForQuery that does not decode.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		be := pgproto3.NewBackend(conn, conn)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		be.Flush()
		// The proxy's setup query: search_path, extra_float_digits and
		// the roles, then its search_path, the catalog, and LISTEN.
		if _, err := be.Receive(); err != nil {
			return
		}
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("public"), []byte("1"), []byte("doctor"), []byte("doctor"), []byte("hex")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("pg_catalog, pg_temp")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("LISTEN")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		be.Flush()
		if _, err := be.Receive(); err != nil {
			return
		}
		conn.Write([]byte{'Z', 0, 0, 0, 4}) // no status byte
		io.Copy(io.Discard, conn)
	}()
	return ln.Addr().String()
}

// panickyGrants panics when asked about the role "auditor" (in the
// frontend, authorizing a statement) or, for "billing", on every second
// call (the backend, describing a result).
type panickyGrants struct {
	base    proxy.GrantSource
	billing atomic.Int32
}

func (g *panickyGrants) For(role string) *policy.Grants {
	switch {
	case role == "auditor":
		panic("grant source failed on " + role)
	case role == "billing" && g.billing.Add(1)%2 == 0:
		panic("grant source failed on " + role)
	}
	return g.base.For(role)
}

// 2.7: a panic in a session killed the whole proxy.
func TestPanicEndsOnlyItsSession(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) {
		c.Grants = &panickyGrants{base: c.Policy.Grants()}
	})
	insertPatients(t, h.connect("doctor"), [3]string{"Q", "panic-ssn-1", "d"})
	for _, role := range []string{"auditor", "billing"} {
		c := protoConnect(t, h, role)
		c.send(&pgproto3.Query{String: "SELECT ssn FROM patients WHERE ssn = 'panic-ssn-1'"})
		expectEOF(t, c.conn)
	}
	stillServes(t, h)
	logs := h.logBuf.String()
	if !strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "panic-ssn-1") || strings.Contains(logs, "grant source failed") {
		t.Fatalf("log:\n%s", logs)
	}
}
