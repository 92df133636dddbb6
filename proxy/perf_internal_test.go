package proxy

// Regression tests for the per-message costs a review found: work the
// proxy repeated for every Bind, Execute or value.

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// idleSession is a session with no connection, enough for planning state.
func idleSession() *session {
	srv := &Server{catalogs: newCatalogCache(time.Hour)}
	idx := policy.NewIndex(policy.Policy{})
	srv.SetPolicy(idx, nil, policy.Server{})
	return &session{
		srv:   srv,
		cat:   &catalog{loaded: time.Now(), policy: idx},
		state: newSessionState(settings{sessionAuth: "doctor", searchPath: []string{"public"}}),
		pl:    newBooks(),
	}
}

// An SQL-level prepared statement keeps one preparedStmt, and with it the
// description a Describe recorded: otherwise every Execute sent a hidden
// Describe.
func TestSQLPreparedStatementKeepsItsDescription(t *testing.T) {
	ss := idleSession()
	prepare := &sqlrewrite.Statement{Kind: sqlrewrite.KindPrepare,
		Prepare: &sqlrewrite.Prepared{Name: "p", Statement: &sqlrewrite.Statement{Kind: sqlrewrite.KindSelect}}}
	ss.completed(&pending{}, prepare, "PREPARE")
	a := ss.pl.Statement("p")
	a.described = true
	if b := ss.pl.Statement("p"); b != a || !b.described {
		t.Fatal("the SQL-level statement's description was lost")
	}
	ss.completed(&pending{}, &sqlrewrite.Statement{Kind: sqlrewrite.KindDeallocate, Deallocate: "p"}, "DEALLOCATE")
	if ss.pl.Statement("p") != nil {
		t.Fatal("a deallocated statement is still found")
	}
	// PREPARE again under the same name: a statement of its own.
	ss.completed(&pending{}, prepare, "PREPARE")
	if c := ss.pl.Statement("p"); c == a || c.described {
		t.Fatal("a new PREPARE kept the old statement's description")
	}
}

// A Bind in an unchanged environment costs a comparison, not a new
// simulation of the session.
func TestReplannedUnchangedEnvironmentIsCheap(t *testing.T) {
	ss := idleSession()
	st := &preparedStmt{name: "s", plan: &sqlrewrite.Plan{SQL: "SELECT $1"}, env: ss.planEnvNow()}
	allocs := testing.AllocsPerRun(100, func() {
		if err := ss.replanned(st); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the expanded search path
		t.Fatalf("%v allocations per Bind", allocs)
	}
}

// Decoding a text-format ciphertext reuses the caller's buffer.
func TestDecodeByteaTextReusesScratch(t *testing.T) {
	value := []byte(`\x` + hex.EncodeToString(make([]byte, 64)))
	scratch := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		out, err := decodeByteaText(scratch[:0], value)
		if err != nil || len(out) != 64 {
			t.Fatal(out, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per value", allocs)
	}
}

// A hidden parameter's bytea[] is what pgtype encodes, in one allocation.
func TestEncodeByteaArrayMatchesPgtype(t *testing.T) {
	m := pgtype.NewMap()
	for _, elems := range [][][]byte{
		nil,
		{},
		{nil},
		{{}},
		{[]byte("a"), nil, make([]byte, 300)},
		{[]byte("ct1"), []byte("ct2")},
	} {
		want, err := m.Encode(byteaArrayOID, pgtype.BinaryFormatCode, elems, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeByteaArray(elems)
		if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("%q: got %x, pgtype %x", elems, got, want)
		}
	}
	elems := [][]byte{make([]byte, 48), make([]byte, 48)}
	if allocs := testing.AllocsPerRun(100, func() { encodeByteaArray(elems) }); allocs != 1 {
		t.Errorf("%v allocations", allocs)
	}
}
