package proxy_test

// The proxy's books of statements and portals follow the server's through
// transactions that end inside a string or a batch, and through many
// PREPAREs at once.

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Many PREPAREs in one string: the proxy pruned the sources of the
// string's own earlier PREPAREs (not confirmed yet) while recording the
// later ones, and an SQL-level statement without a source ran without the
// checks of its plan (search_path, catalog) and of its constants' key
// versions. (Here the proxy's qualified table names kept PostgreSQL on
// other.patients; the test checks the check runs.)
func TestManyPreparesInOneStringKeepTheirSource(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "path", c.query("SET search_path TO other, public"), "C:SET", "Z:I")
	var b strings.Builder
	b.WriteString("PREPARE leak0 AS INSERT INTO patients (name, ssn) VALUES ('leak0', 'PRUNED-PLAINTEXT-0');")
	for i := 1; i <= 80; i++ {
		fmt.Fprintf(&b, "PREPARE filler%d AS SELECT %d;", i, i)
	}
	got := c.query(b.String())
	if got[len(got)-1] != "Z:I" || got[0] != "C:PREPARE" {
		t.Fatalf("prepares: %q", got)
	}
	wantTokens(t, "path back", c.query("SET search_path TO public"), "C:SET", "Z:I")
	// As for a single PREPARE (TestPreparedAcrossSearchPath).
	wantTokens(t, "execute under another path", c.query("EXECUTE leak0"), "E:0A000", "Z:I")
	if raw := sqDirectBytes(t, ctxT(t), h, "SELECT ssn FROM public.patients WHERE name = 'leak0'"); len(raw) > 0 && bytes.Contains(raw[0], []byte("PRUNED-PLAINTEXT-0")) {
		t.Fatalf("plaintext stored: %q", raw[0])
	}
	// The same with PREPAREs parsed by the protocol and run later.
	msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "mk", Query: "PREPARE leak1 AS INSERT INTO other.patients (name) VALUES ('x')"}}
	for i := 1; i <= 80; i++ {
		msgs = append(msgs, &pgproto3.Parse{Name: fmt.Sprintf("mkf%d", i), Query: fmt.Sprintf("PREPARE pf%d AS SELECT %d", i, i)})
	}
	msgs = append(msgs, &pgproto3.Bind{PreparedStatement: "mk"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.send(msgs...)
	got = c.recvReady()
	if got[len(got)-2] != "C:PREPARE" {
		t.Fatalf("protocol prepares: %q", got[len(got)-3:])
	}
	wantTokens(t, "execute", c.query("EXECUTE leak1"), "C:INSERT 0 1", "Z:I")
}

// A transaction that ends, and a new one that begins, within one string or
// one batch, or a ROLLBACK TO SAVEPOINT: the server drops the portals made
// in what ended, though the ReadyForQuery reports a transaction in
// progress. The proxy kept the portal, so a new portal of the same name was
// taken for the old one (and its rows for plain ones).
func TestPortalDiesWithItsTransaction(t *testing.T) {
	plainPortal := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "plain"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
	}
	plainTokens := []string{"ParseComplete", "BindComplete", "Row:name/25"}
	for _, tc := range []struct {
		name  string
		begin string // query before the portal
		// batch ends the transaction in the portal's own batch; end
		// in a query after it.
		batch       []pgproto3.FrontendMessage
		batchTokens []string
		end         string
		endTokens   []string
	}{
		{name: "COMMIT; BEGIN in one string", begin: "BEGIN", end: "COMMIT; BEGIN", endTokens: []string{"C:COMMIT", "C:BEGIN", "Z:T"}},
		{name: "COMMIT and BEGIN in one batch", begin: "BEGIN",
			batch: []pgproto3.FrontendMessage{
				&pgproto3.Parse{Name: "c", Query: "COMMIT"},
				&pgproto3.Bind{DestinationPortal: "pc", PreparedStatement: "c"},
				&pgproto3.Execute{Portal: "pc"},
				&pgproto3.Parse{Name: "b", Query: "BEGIN"},
				&pgproto3.Bind{DestinationPortal: "pb", PreparedStatement: "b"},
				&pgproto3.Execute{Portal: "pb"},
			},
			batchTokens: []string{"ParseComplete", "BindComplete", "C:COMMIT", "ParseComplete", "BindComplete", "C:BEGIN"}},
		{name: "ROLLBACK TO SAVEPOINT", begin: "BEGIN; SAVEPOINT s", end: "ROLLBACK TO SAVEPOINT s", endTokens: []string{"C:ROLLBACK", "Z:T"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testPolicy, testSchema)
			insertPatients(t, h.connect("doctor"), [3]string{"P", "portal-ssn", "diag"})
			c := protoConnect(t, h, "doctor")
			c.query(tc.begin)
			c.send(append(append(slices.Clone(plainPortal), tc.batch...), &pgproto3.Sync{})...)
			want := append(append(slices.Clone(plainTokens), tc.batchTokens...), "Z:T")
			wantTokens(t, "plain portal", c.recvReady(), want...)
			if tc.end != "" {
				wantTokens(t, "end", c.query(tc.end), tc.endTokens...)
			}
			c.send(
				&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients"},
				&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "enc"},
				&pgproto3.Execute{Portal: "p1"},
				&pgproto3.Sync{},
			)
			wantTokens(t, "new portal of the same name", c.recvReady(), "ParseComplete", "BindComplete", "D:portal-ssn", "C:SELECT 1", "Z:T")
		})
	}
}

// SQL EXECUTE planned against a Close and Parse of an earlier batch still
// in flight: when that batch fails, the server keeps the old statement,
// while the EXECUTE went out planned by the new one.
func TestExecuteWaitsForEarlierBatchOnItsStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "prepare", c.query("PREPARE s(text) AS INSERT INTO public.patients (name, ssn) VALUES ('B', $1)"), "C:PREPARE", "Z:I")
	c.send(
		&pgproto3.Parse{Query: failsWhenRun},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "s"},
		&pgproto3.Parse{Name: "s", Query: "INSERT INTO other.patients (name, ssn) VALUES ('A', $1)"},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "EXECUTE s('EXEC-AFTER-FAIL-PLAINTEXT')"},
	)
	t.Logf("batch %q", c.recvReady())
	t.Logf("execute %q", c.recvReady())
	for _, raw := range sqDirectBytes(t, ctxT(t), h, "SELECT ssn FROM public.patients WHERE name = 'B'") {
		if bytes.Contains(raw, []byte("EXEC-AFTER-FAIL-PLAINTEXT")) {
			t.Fatalf("plaintext stored in public.patients.ssn: %q", raw)
		}
	}
}
