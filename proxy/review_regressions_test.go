package proxy_test

// Regression tests for the findings of a code review: each reproduces a
// finding through the proxy in front of a real PostgreSQL and fails
// without its fix.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// recvWithin reads one token, or returns the read error (a timeout means
// the proxy hangs).
func recvWithin(c *protoClient, d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	msg, err := c.fe.Receive()
	if err != nil {
		return "", err
	}
	return c.token(msg), nil
}

// recvReadyWithin reads tokens up to ReadyForQuery, failing when the proxy
// stays silent for d.
func recvReadyWithin(t *testing.T, c *protoClient, d time.Duration) []string {
	t.Helper()
	var got []string
	for {
		tok, err := recvWithin(c, d)
		if err != nil {
			t.Fatalf("after %q: %v (the proxy hangs)", got, err)
		}
		if tok == "" {
			continue
		}
		got = append(got, tok)
		if strings.HasPrefix(tok, "Z:") {
			return got
		}
	}
}

// storedSSN is the bytes PostgreSQL holds in patients.ssn for name.
func storedSSN(t *testing.T, h *harness, name string) []byte {
	t.Helper()
	var raw []byte
	if err := h.direct().QueryRow(ctxT(t), "SELECT ssn FROM public.patients WHERE name = $1", name).Scan(&raw); err != nil {
		t.Fatalf("stored ssn of %s: %v", name, err)
	}
	return raw
}

// holdCatalogLock makes the proxy's catalog query time out (the session
// sets lock_timeout) until release is called.
func holdCatalogLock(t *testing.T, h *harness) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.direct().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE pg_catalog.pg_rewrite IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			tx.Rollback(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

// 1.1: with two COPY FROM STDIN in one string, the data of the second was
// sent raw (or encrypted with the other's rewriter).
func TestRegressionMultiCopyRefused(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	for _, sql := range []string{
		"COPY other.patients (name, ssn) FROM STDIN; COPY public.patients (name, ssn) FROM STDIN",
		"COPY public.patients (name, ssn) FROM STDIN; COPY other.patients (name, ssn) FROM STDIN",
	} {
		wantTokens(t, sql, recvReadyAfter(t, c, &pgproto3.Query{String: sql}), "E:0A000", "Z:I")
	}
	// One COPY per string still works.
	c.send(&pgproto3.Query{String: "COPY public.patients (name, ssn) FROM STDIN"})
	wantTokens(t, "single copy", c.recvN(1), "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Single\tsingle-ssn-1\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "single copy done", c.recvReady(), "C:COPY 1", "Z:I")
	assertCiphertext(t, h, map[string][3]string{"Single": {"single-ssn-1", "", ""}})
}

// recvReadyAfter sends msg and reads its answer, failing if the proxy
// hangs.
func recvReadyAfter(t *testing.T, c *protoClient, msg pgproto3.FrontendMessage) []string {
	t.Helper()
	c.send(msg)
	return recvReadyWithin(t, c, 5*time.Second)
}

// 1.2: SQL EXECUTE of a statement made by protocol Parse sent its
// arguments in plaintext; protocol Close left an SQL-level statement of
// the same name behind.
func TestRegressionSQLExecuteOfProtocolStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Parse{Name: "s1", Query: "INSERT INTO patients (name, ssn) VALUES ('Exe', $1)"}, &pgproto3.Sync{})
	wantTokens(t, "parse", c.recvReady(), "ParseComplete", "Z:I")
	wantTokens(t, "execute", c.query("EXECUTE s1('EXEC-PLAINTEXT-42')"), "C:INSERT 0 1", "Z:I")
	if raw := storedSSN(t, h, "Exe"); bytes.Contains(raw, []byte("EXEC-PLAINTEXT-42")) {
		t.Fatalf("plaintext stored: %q", raw)
	}
	wantTokens(t, "read back", c.query("SELECT ssn FROM patients WHERE name = 'Exe'"), "Row:ssn/25", "D:EXEC-PLAINTEXT-42", "C:SELECT 1", "Z:I")

	// PREPARE a plain statement, Close it, Parse an encrypted one of the
	// same name: EXECUTE must use the Parse's plan.
	wantTokens(t, "prepare", c.query("PREPARE s2 AS INSERT INTO other.patients (name, ssn) VALUES ('Plain', $1)"), "C:PREPARE", "Z:I")
	c.send(
		&pgproto3.Close{ObjectType: 'S', Name: "s2"},
		&pgproto3.Parse{Name: "s2", Query: "INSERT INTO patients (name, ssn) VALUES ('Closed', $1)"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "close and parse", c.recvReady(), "CloseComplete", "ParseComplete", "Z:I")
	wantTokens(t, "execute after close", c.query("EXECUTE s2('CLOSE-PLAINTEXT-7')"), "C:INSERT 0 1", "Z:I")
	if raw := storedSSN(t, h, "Closed"); bytes.Contains(raw, []byte("CLOSE-PLAINTEXT-7")) {
		t.Fatalf("plaintext stored: %q", raw)
	}
}

// 1.4: a failed catalog reload marked the client's session state failed
// (a SET ROLE was then forgotten by the proxy only), and inside a
// transaction silently aborted it; after DDL the proxy went on with the
// old catalog.
func TestRegressionFailedReloadKeepsSessionState(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"A", "111", "secret-diagnosis"})
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")
	c.query("CREATE TEMP TABLE regress_tmp (a int)") // DDL: the catalog is stale
	release := holdCatalogLock(t, h)
	wantTokens(t, "set role", c.query("SET ROLE billing"), "C:SET", "Z:I")
	release()
	wantTokens(t, "current_user", c.query("SELECT current_user"), "Row:current_user/19", "D:billing", "C:SELECT 1", "Z:I")
	wantTokens(t, "as billing", c.query("SELECT diagnosis FROM patients"), "Row:diagnosis/25", "D:NULL", "C:SELECT 1", "Z:I")
}

func TestRegressionFailedReloadInTransaction(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")

	// The reload fails; the client's transaction goes on, but nothing
	// that uses a relation runs on a catalog DDL may have changed.
	wantTokens(t, "ddl", c.query("BEGIN; CREATE TEMP TABLE regress_a (a int)"), "C:BEGIN", "C:CREATE TABLE", "Z:T")
	release := holdCatalogLock(t, h)
	wantTokens(t, "no relation", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	wantTokens(t, "relation", c.query("SELECT name FROM other.patients"), "E:58000", "Z:E")
	if !strings.Contains(c.lastErr.Message, "catalog could not be reloaded after DDL") {
		t.Fatalf("error %q", c.lastErr.Message)
	}
	release()
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")

	// Once the reload succeeds the transaction goes on unharmed.
	wantTokens(t, "ddl again", c.query("BEGIN; CREATE TEMP TABLE regress_b (a int)"), "C:BEGIN", "C:CREATE TABLE", "Z:T")
	release = holdCatalogLock(t, h)
	wantTokens(t, "no relation again", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	release()
	wantTokens(t, "insert", c.query("INSERT INTO regress_b VALUES (1)"), "C:INSERT 0 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	wantTokens(t, "committed", c.query("SELECT a FROM regress_b"), "Row:a/23", "D:1", "C:SELECT 1", "Z:I")
}

// 3.1: the catalog reload (a simple Query) made PostgreSQL drop the
// client's unnamed statement, and so did the injected abort.
func TestRegressionReloadKeepsUnnamedStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { c.CatalogTTL = time.Millisecond })
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Parse{Query: "SELECT name FROM other.patients"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	wantTokens(t, "parse", c.recvReady(), "ParseComplete", "Params:", "Row:name/25", "Z:I")
	time.Sleep(20 * time.Millisecond) // the snapshot expires: Bind reloads it
	c.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "bind", c.recvReady(), "BindComplete", "C:SELECT 0", "Z:I")
}

func TestRegressionInjectedAbortKeepsUnnamedStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"B", "u-2", "bad"})
	h.pg.ExecAdmin(t, `UPDATE patients SET diagnosis = '\x0102'::bytea WHERE name = 'B'`)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	c.send(&pgproto3.Parse{Query: "SELECT 42"}, &pgproto3.Sync{})
	wantTokens(t, "unnamed", c.recvReady(), "ParseComplete", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "bad", Query: "SELECT diagnosis FROM patients"},
		&pgproto3.Bind{DestinationPortal: "bp", PreparedStatement: "bad"},
		&pgproto3.Execute{Portal: "bp"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "failed result", c.recvReady(), "ParseComplete", "BindComplete", "E:XX001", "Z:E")
	c.send(
		&pgproto3.Parse{Name: "rb", Query: "ROLLBACK"},
		&pgproto3.Bind{DestinationPortal: "rbp", PreparedStatement: "rb"},
		&pgproto3.Execute{Portal: "rbp"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "rollback", c.recvReady(), "ParseComplete", "BindComplete", "C:ROLLBACK", "Z:I")
	c.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "unnamed survives", c.recvReady(), "BindComplete", "D:42", "C:SELECT 1", "Z:I")
}

// 3.5: a refusal in the extended protocol Described "pgcloak.refused",
// which succeeds when the client made a statement of that name.
func TestRegressionRefusalWhenStatementNameTaken(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Parse{Name: "pgcloak.refused", Query: "SELECT 1"}, &pgproto3.Sync{})
	wantTokens(t, "parse", c.recvReady(), "ParseComplete", "Z:I")
	c.send(
		&pgproto3.Parse{Query: "SELECT name FROM patients WHERE ssn LIKE 'x%'"},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
	)
	wantTokens(t, "refused", recvReadyWithin(t, c, 5*time.Second), "E:0A000", "Z:I")
	wantTokens(t, "in step", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
}

// 1.5: fast-path set_config changed the role behind the proxy's back.
func TestRegressionFastpathSetConfigRefused(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"F", "222", "fastpath-secret"})
	c := protoConnect(t, h, "doctor")
	setRole := &pgproto3.FunctionCall{Function: 2078, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("role"), []byte("billing"), []byte("false")}}
	c.send(&pgproto3.Parse{Query: "SELECT 5"}, &pgproto3.Sync{})
	wantTokens(t, "unnamed", c.recvReady(), "ParseComplete", "Z:I")
	wantTokens(t, "fastpath", recvReadyAfter(t, c, setRole), "E:0A000", "Z:I")
	// Like the client's call, the refusal leaves the unnamed statement
	// alone and fails an open transaction.
	c.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "unnamed survives", c.recvReady(), "BindComplete", "D:5", "C:SELECT 1", "Z:I")
	wantTokens(t, "current_user", c.query("SELECT current_user"), "Row:current_user/19", "D:doctor", "C:SELECT 1", "Z:I")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "fastpath in tx", recvReadyAfter(t, c, setRole), "E:0A000", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")

	// Other functions pass.
	var int4pl uint32
	if err := h.direct().QueryRow(ctxT(t), "SELECT 'pg_catalog.int4pl(int4, int4)'::regprocedure::oid").Scan(&int4pl); err != nil {
		t.Fatal(err)
	}
	c.send(&pgproto3.FunctionCall{Function: int4pl, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("2"), []byte("3")}})
	msg := c.recv()
	if r, ok := msg.(*pgproto3.FunctionCallResponse); !ok || string(r.Result) != "5" {
		t.Fatalf("int4pl through the fast path: %#v", msg)
	}
	wantTokens(t, "ready", c.recvReady(), "Z:I")
	wantTokens(t, "as doctor", c.query("SELECT diagnosis FROM patients"), "Row:diagnosis/25", "D:fastpath-secret", "C:SELECT 1", "Z:I")
}

const tzPolicy = `
policy:
  keys:
    - {name: k, kind: randomized}
  columns:
    - {table: public.tz_t, column: ts, key: k, type: timestamptz}
  roles:
    - {role: doctor, read: [k], write: [k]}
`

// 3.2: a TimeZone change and a timestamptz literal in one string: the
// literal was encrypted in the old zone.
func TestRegressionTimeZoneInSameString(t *testing.T) {
	h := newHarness(t, tzPolicy, "CREATE TABLE public.tz_t (id serial, ts bytea); GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;")
	c := protoConnect(t, h, "doctor")
	c.query("SET TIME ZONE 'UTC'")
	for _, sql := range []string{
		"SET TIME ZONE 'Asia/Tokyo'; INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"SELECT set_config('TimeZone', 'Asia/Tokyo', false); INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"RESET ALL; INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"SET TIME ZONE 'Asia/Tokyo'; COPY tz_t (ts) FROM STDIN",
		"SET TIME ZONE 'Asia/Tokyo'; SELECT ts FROM tz_t",
	} {
		wantTokens(t, sql, c.query(sql), "E:0A000", "Z:I")
	}
	// Sent separately, the literal is read in the new zone.
	wantTokens(t, "set", c.query("SET TIME ZONE 'Asia/Tokyo'"), "C:SET", "Z:I")
	wantTokens(t, "insert", c.query("INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')"), "C:INSERT 0 1", "Z:I")
	wantTokens(t, "utc", c.query("SET TIME ZONE 'UTC'"), "C:SET", "Z:I")
	wantTokens(t, "read back", c.query("SELECT ts FROM tz_t"), "Row:ts/1184", "D:2024-01-01 01:00:00+00", "C:SELECT 1", "Z:I")
	// Strings without such a value keep working.
	wantTokens(t, "plain", c.query("SET TIME ZONE 'Asia/Tokyo'; SELECT count(*) FROM tz_t"), "C:SET", "Row:count/20", "D:1", "C:SELECT 1", "Z:I")
}

// 2.1: COPY FROM STDIN in a string that also needs a barrier deadlocked:
// the proxy waited for the string to end before relaying the COPY data.
func TestRegressionCopyWithBarrierNoDeadlock(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Query{String: "BEGIN; COPY other.patients (name) FROM STDIN; COMMIT"})
	wantTokens(t, "copy", c.recvN(2), "C:BEGIN", "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "done", recvReadyWithin(t, c, 5*time.Second), "C:COPY 1", "C:COMMIT", "Z:I")

	// An encrypted COPY too.
	c.send(&pgproto3.Query{String: "SET search_path = public; COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "encrypted copy", c.recvN(2), "C:SET", "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Barrier\tbarrier-ssn-1\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "encrypted done", recvReadyWithin(t, c, 5*time.Second), "C:COPY 1", "Z:I")
	assertCiphertext(t, h, map[string][3]string{"Barrier": {"barrier-ssn-1", "", ""}})

	// A client that sends a query instead of COPY data: PostgreSQL fails
	// the COPY and drops the message; so does the proxy, without hanging.
	c.send(&pgproto3.Query{String: "BEGIN; COPY other.patients (name) FROM STDIN; COMMIT"})
	wantTokens(t, "copy again", c.recvN(2), "C:BEGIN", "CopyIn")
	c.send(&pgproto3.Query{String: "SELECT 1"})
	wantTokens(t, "violation", recvReadyWithin(t, c, 5*time.Second), "E:08P01", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	wantTokens(t, "in step", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
}

// 2.2: a COPY whose rewriter could not be built was started anyway and
// then failed too early: the server waited for data forever.
func TestRegressionCopyRewriterFailureRefused(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	const sql = `COPY public.patients (name, ssn) FROM STDIN (NULL 'a\')`
	wantTokens(t, "simple", recvReadyAfter(t, c, &pgproto3.Query{String: sql}), "E:0A000", "Z:I")
	c.send(&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "extended", recvReadyWithin(t, c, 5*time.Second), "ParseComplete", "BindComplete", "E:0A000", "Z:I")
	wantTokens(t, "in step", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
}

// 2.3: the backend cleared pending.barrier while the frontend read it (a
// data race the race detector reports).
func TestRegressionBarrierRace(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	big := "SET search_path = public, other /*" + strings.Repeat("x", 100000) + "*/"
	for range 20 {
		wantTokens(t, "set", c.query(big), "C:SET", "Z:I")
	}
}

// 2.4: a Sync swallowed by COPY left the queue without waking a frontend
// waiting for it (here: a Bind of a statement parsed before that Sync).
func TestRegressionSwallowedSyncReleased(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Name: "c", Query: "COPY other.patients (name) FROM STDIN"},
		&pgproto3.Bind{PreparedStatement: "c"},
		&pgproto3.Execute{},
		&pgproto3.Sync{}, // ignored by the server in copy-in mode
		&pgproto3.Bind{PreparedStatement: "c"},
	)
	var got []string
	for len(got) < 4 {
		tok, err := recvWithin(c, 5*time.Second)
		if err != nil {
			t.Fatalf("after %q: %v (the proxy hangs)", got, err)
		}
		if tok != "" {
			got = append(got, tok)
		}
	}
	// PostgreSQL takes the Bind for a protocol violation during COPY,
	// which ends the session.
	wantTokens(t, "copy", got, "ParseComplete", "BindComplete", "CopyIn", "E:08P01")
	expectEOF(t, c.conn)
	stillServes(t, h)
}

// failsWhenRun is a statement that fails at Execute, not before.
const failsWhenRun = "SELECT 1/(random()*0)::int"

// 3.3: a Query sent into a failed extended batch was dropped without
// uncounting its ReadyForQuery; portals then outlived their transaction
// in the proxy's records, and a later portal of the same name was taken
// for the old one (its rows went out undecrypted).
func TestRegressionSkippedQueryKeepsPortalEpochs(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"E", "epoch-ssn-1", "d"})
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Parse{Query: failsWhenRun}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Query{String: "SELECT 1"}, // skipped by the server
		&pgproto3.Sync{})
	wantTokens(t, "failed batch", c.recvReady(), "ParseComplete", "BindComplete", "E:22012", "Z:I")
	c.send(
		&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "plain"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "plain portal", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25", "C:SELECT 0", "Z:I")
	c.send(
		&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "enc"},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "new portal", c.recvReady(), "ParseComplete", "BindComplete", "D:epoch-ssn-1", "C:SELECT 1", "Z:I")
}

// 3.4: a Bind or Close 'P' the server skipped after an error was not
// undone: the proxy's record of the unnamed portal was not the server's,
// and its rows went out undecrypted.
func TestRegressionSkippedBindAndCloseUndone(t *testing.T) {
	for _, skipped := range []pgproto3.FrontendMessage{
		&pgproto3.Bind{PreparedStatement: "plain"},
		&pgproto3.Close{ObjectType: 'P'},
	} {
		t.Run(fmt.Sprintf("%T", skipped), func(t *testing.T) {
			h := newHarness(t, testPolicy, testSchema)
			insertPatients(t, h.connect("doctor"), [3]string{"P1", "portal-ssn-1", "d"}, [3]string{"P2", "portal-ssn-2", "d"})
			c := protoConnect(t, h, "doctor")
			run := func(name, sql string, want ...string) {
				t.Helper()
				c.send(
					&pgproto3.Parse{Name: name, Query: sql},
					&pgproto3.Bind{DestinationPortal: name, PreparedStatement: name},
					&pgproto3.Execute{Portal: name},
					&pgproto3.Sync{},
				)
				wantTokens(t, sql, c.recvReady(), append([]string{"ParseComplete", "BindComplete"}, want...)...)
			}
			c.send(&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"}, &pgproto3.Describe{ObjectType: 'S', Name: "plain"}, &pgproto3.Sync{})
			wantTokens(t, "plain", c.recvReady(), "ParseComplete", "Params:", "Row:name/25", "Z:I")
			run("b", "BEGIN", "C:BEGIN", "Z:T")
			// The unnamed portal, suspended after one row.
			c.send(
				&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients ORDER BY id"},
				&pgproto3.Bind{PreparedStatement: "enc"},
				&pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{MaxRows: 1},
				&pgproto3.Sync{},
			)
			wantTokens(t, "suspended", c.recvReady(), "ParseComplete", "BindComplete", "Row:ssn/25", "D:portal-ssn-1", "PortalSuspended", "Z:T")
			run("sp", "SAVEPOINT s", "C:SAVEPOINT", "Z:T")
			c.send(
				&pgproto3.Parse{Name: "bad", Query: failsWhenRun},
				&pgproto3.Bind{DestinationPortal: "x", PreparedStatement: "bad"},
				&pgproto3.Execute{Portal: "x"},
				skipped,
				&pgproto3.Sync{},
			)
			wantTokens(t, "failed batch", c.recvReady(), "ParseComplete", "BindComplete", "E:22012", "Z:E")
			run("rb", "ROLLBACK TO SAVEPOINT s", "C:ROLLBACK", "Z:T")
			c.send(&pgproto3.Execute{}, &pgproto3.Sync{})
			wantTokens(t, "rest of the portal", c.recvReady(), "D:portal-ssn-2", "C:SELECT 1", "Z:T")
		})
	}
}

// 3.6: DDL after BEGIN in the same string was not taken for DDL inside a
// transaction: the snapshot reloaded inside it outlived a rollback.
func TestRegressionDDLAfterBeginInString(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+"\nALTER TABLE public.patients OWNER TO doctor; GRANT CREATE ON SCHEMA public TO doctor;")
	insertPatients(t, h.connect("doctor"), [3]string{"R", "rename-ssn-1", "d"})
	c := protoConnect(t, h, "doctor")
	// (Renaming a policy table is refused; dropping it is DDL the proxy
	// lets through and must see rolled back.)
	wantTokens(t, "ddl", c.query("BEGIN; DROP TABLE public.patients"), "C:BEGIN", "C:DROP TABLE", "Z:T")
	wantTokens(t, "reload in tx", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	wantTokens(t, "after", c.query("SELECT ssn FROM patients"), "Row:ssn/25", "D:rename-ssn-1", "C:SELECT 1", "Z:I")
}

// 3.6: Terminate was buffered and never sent: PostgreSQL saw the
// connection drop instead (and logged it, in a transaction).
func TestRegressionTerminateFlushed(t *testing.T) {
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
func TestRegressionSessionClosedIsQuiet(t *testing.T) {
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
func TestRegressionMalformedServerMessage(t *testing.T) {
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
func TestRegressionPanicEndsOnlyItsSession(t *testing.T) {
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

// A message that ends a COPY FROM STDIN by violating the protocol must
// reach the server even when the session's catalog is overdue for a
// reload: waiting for the COPY to finish first would wait forever.
func TestRegressionCatchUpSkipsCopy(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { c.CatalogTTL = 20 * time.Millisecond })
	for _, next := range []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Parse{Query: "SELECT 1"}} {
		c := protoConnect(t, h, "doctor")
		c.send(&pgproto3.Query{String: "COPY other.patients (name) FROM STDIN"})
		if tok, err := recvWithin(c, 5*time.Second); err != nil || tok != "CopyIn" {
			t.Fatalf("COPY: %q, %v", tok, err)
		}
		time.Sleep(100 * time.Millisecond) // the snapshot is overdue
		c.send(next)
		tok, err := recvWithin(c, 5*time.Second)
		if err != nil || !strings.HasPrefix(tok, "E:") {
			t.Fatalf("%T during COPY: %q, %v (the proxy hangs)", next, tok, err)
		}
		c.conn.Close()
	}
	stillServes(t, h)
}

// The catalog catch-up happens at most once per TTL: when the reload keeps
// failing (here, on a lock held elsewhere), pipelined requests do not each
// wait for the ones before them and try again.
func TestRegressionCatchUpOncePerTTL(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { c.CatalogTTL = 50 * time.Millisecond })
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")
	release := holdCatalogLock(t, h)
	defer release()
	time.Sleep(150 * time.Millisecond) // the snapshot is overdue
	before := strings.Count(h.logBuf.String(), "catalog reload failed")
	msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT pg_catalog.pg_sleep(0.05)"}}
	for range 10 {
		msgs = append(msgs, &pgproto3.Query{String: "SELECT 1"})
	}
	c.send(msgs...)
	for range 11 {
		recvReadyWithin(t, c, 10*time.Second)
	}
	if n := strings.Count(h.logBuf.String(), "catalog reload failed") - before; n > 3 {
		t.Errorf("%d reloads tried for 11 pipelined queries", n)
	}
}
