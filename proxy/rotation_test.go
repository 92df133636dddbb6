package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy"
)

// rotationHarness is a proxy whose keyring the test can invalidate.
func rotationHarness(t *testing.T) (*harness, *keymap.Keyring) {
	var kr *keymap.Keyring
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { kr = c.Keyring })
	return h, kr
}

// rotate adds a new primary version to key and makes the proxy use it.
func rotate(t *testing.T, h *harness, kr *keymap.Keyring, key string) {
	t.Helper()
	if err := h.store.Rotate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	kr.Invalidate(key)
}

// ssnKeyIDs returns the key version each stored ssn is encrypted under,
// by patient name.
func ssnKeyIDs(t *testing.T, ctx context.Context, h *harness) map[string]uint32 {
	t.Helper()
	rows, err := h.direct().Query(ctx, "SELECT name, ssn FROM public.patients WHERE ssn IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint32{}
	for rows.Next() {
		var name string
		var ssn []byte
		if err := rows.Scan(&name, &ssn); err != nil {
			t.Fatal(err)
		}
		id, ok := keymap.KeyID(ssn)
		if !ok {
			t.Fatalf("%s: stored ssn is not a ciphertext", name)
		}
		out[name] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// names runs a query returning patient names, sorted.
func names(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, append([]any{mode}, args...)...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	slices.Sort(got)
	return got
}

// TestSearchesAcrossKeyVersions: after a rotation, equality searches on a
// deterministic column find rows written under every version, with
// constants and parameters, through the simple and the extended protocol,
// before and after the rows are re-encrypted.
func TestSearchesAcrossKeyVersions(t *testing.T) {
	h, kr := rotationHarness(t)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	ssn := func(s string) string { return "rot-" + s + "-" + h.pg.Database }

	insert := func(names ...string) {
		for _, n := range names {
			if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", n, ssn(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert("a1", "a2", "a3")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('nil', NULL)"); err != nil {
		t.Fatal(err)
	}
	rotate(t, h, kr, "ssn")
	insert("b1", "b2", "b3")
	// Simple protocol literal, written under the new version too.
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO patients (name, ssn) VALUES ('b4', '%s')", ssn("b4")), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	ids := ssnKeyIDs(t, ctx, h)
	if ids["a1"] == ids["b1"] || ids["a1"] != ids["a3"] || ids["b1"] != ids["b4"] {
		t.Fatalf("key versions at rest: %v", ids)
	}

	all := []string{"a1", "a2", "a3", "b1", "b2", "b3", "b4", "nil"}
	without := func(drop ...string) []string {
		var out []string
		for _, n := range all {
			if n != "nil" && !slices.Contains(drop, n) {
				out = append(out, n)
			}
		}
		return out
	}
	lit := func(n string) string { return "'" + ssn(n) + "'" }
	prepared := 0
	check := func(t *testing.T, phase string) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
			for _, tc := range []struct {
				sql  string
				args []any
				want []string
			}{
				{"SELECT name FROM patients WHERE ssn = " + lit("a1"), nil, []string{"a1"}},
				{"SELECT name FROM patients WHERE " + lit("b1") + " = ssn", nil, []string{"b1"}},
				{"SELECT name FROM patients WHERE ssn = $1", []any{ssn("a2")}, []string{"a2"}},
				{"SELECT name FROM patients WHERE $1::text = ssn", []any{ssn("b2")}, []string{"b2"}},
				{"SELECT name FROM patients WHERE ssn IN (" + lit("a1") + ", $1, NULL, " + lit("b3") + ")", []any{ssn("b1")}, []string{"a1", "b1", "b3"}},
				{"SELECT name FROM patients WHERE ssn = ANY(ARRAY[$1, " + lit("a3") + "])", []any{ssn("b2")}, []string{"a3", "b2"}},
				{"SELECT name FROM patients WHERE ssn <> " + lit("a1") + " AND ssn <> $1", []any{ssn("b1")}, without("a1", "b1")},
				{"SELECT name FROM patients WHERE ssn NOT IN (" + lit("a2") + ", $1)", []any{ssn("b2")}, without("a2", "b2")},
				// NOT IN with a NULL is never true.
				{"SELECT name FROM patients WHERE ssn NOT IN (" + lit("a2") + ", NULL)", nil, nil},
				{"SELECT name FROM patients WHERE ssn NOT IN (" + lit("a2") + ", $1)", []any{nil}, nil},
				{"SELECT name FROM patients WHERE NOT (ssn IN ($1, " + lit("a1") + "))", []any{nil}, nil},
				{"SELECT name FROM patients WHERE ssn IS DISTINCT FROM $1", []any{ssn("a3")}, append(without("a3"), "nil")},
				{"SELECT name FROM patients WHERE ssn IS DISTINCT FROM " + lit("b3"), nil, append(without("b3"), "nil")},
				{"SELECT name FROM patients WHERE ssn IS NOT DISTINCT FROM $1", []any{ssn("b4")}, []string{"b4"}},
				{"SELECT name FROM patients WHERE ssn IS NOT DISTINCT FROM $1", []any{nil}, []string{"nil"}},
				{"SELECT name FROM patients WHERE ssn IS DISTINCT FROM $1", []any{nil}, without()},
				{"SELECT name FROM patients WHERE ssn = ALL(ARRAY[$1, " + lit("a1") + "])", []any{ssn("a1")}, []string{"a1"}},
				{"SELECT p.name FROM patients p JOIN visits v ON true WHERE p.ssn = $1 AND v.patient_ssn IS NULL", []any{ssn("a1")}, nil},
			} {
				got := names(t, ctx, conn, mode, tc.sql, tc.args...)
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s, mode %v: %s %v\n got %v\nwant %v", phase, mode, tc.sql, tc.args, got, tc.want)
				}
			}
		}
		// A parameter both stored and searched: one row moves to the
		// primary version.
		tag, err := conn.Exec(ctx, "UPDATE patients SET ssn = $1 WHERE ssn = $1", ssn("a2"))
		if err != nil || tag.RowsAffected() != 1 {
			t.Errorf("%s: UPDATE SET ssn = $1 WHERE ssn = $1: %v, %d rows", phase, err, tag.RowsAffected())
		}
		// SQL PREPARE / EXECUTE with constants and NULL.
		prepared++
		byssn := fmt.Sprintf("byssn%d", prepared)
		if _, err := conn.Exec(ctx, "PREPARE "+byssn+" AS SELECT name FROM patients WHERE ssn = $1 OR ssn IN ($2, 'none')", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, "EXECUTE "+byssn+"("+lit("a1")+", "+lit("b1")+")"); !slices.Equal(got, []string{"a1", "b1"}) {
			t.Errorf("%s: EXECUTE: %v", phase, got)
		}
		if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, "EXECUTE "+byssn+"(NULL, "+lit("a3")+")"); !slices.Equal(got, []string{"a3"}) {
			t.Errorf("%s: EXECUTE with NULL: %v", phase, got)
		}
		// The statement made by PREPARE, bound through the protocol.
		res := conn.PgConn().ExecPrepared(ctx, byssn, [][]byte{[]byte(ssn("b3")), []byte(ssn("a1"))}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 2 {
			t.Errorf("%s: Bind of the PREPAREd statement: %v, %d rows", phase, res.Err, len(res.Rows))
		}
	}
	check(t, "after rotation")

	// The client sees only its own parameters, with their logical types,
	// and may declare more than the statement uses.
	sd, err := conn.PgConn().Prepare(ctx, "extra", "SELECT name FROM patients WHERE ssn = $1", []uint32{25, 23})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sd.ParamOIDs, []uint32{25, 23}) {
		t.Errorf("ParameterDescription %v, want [25 23]", sd.ParamOIDs)
	}
	res := conn.PgConn().ExecPrepared(ctx, "extra", [][]byte{[]byte(ssn("b2")), []byte("7")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "b2" {
		t.Errorf("statement declaring an unused parameter: %v, %v", res.Err, res.Rows)
	}
	res = conn.PgConn().ExecPrepared(ctx, "extra", [][]byte{[]byte(ssn("b2"))}, nil, nil).Read()
	var pe *pgconn.PgError
	if !errors.As(res.Err, &pe) || pe.Code != "08P01" {
		t.Errorf("Bind with too few parameters: %v", res.Err)
	}
	sd, err = conn.PgConn().Prepare(ctx, "plainsd", "SELECT name FROM patients WHERE ssn IN ($1, $2) AND id > $3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sd.ParamOIDs, []uint32{25, 25, 23}) {
		t.Errorf("ParameterDescription %v, want [25 25 23]", sd.ParamOIDs)
	}
	// Binary-format parameters.
	res = conn.PgConn().ExecParams(ctx, "SELECT name FROM patients WHERE ssn IN ($1, $2)",
		[][]byte{[]byte(ssn("a3")), []byte(ssn("b3"))}, nil, []int16{1}, nil).Read()
	if res.Err != nil || len(res.Rows) != 2 {
		t.Errorf("binary parameters: %v, %d rows", res.Err, len(res.Rows))
	}

	// Re-encrypt every row under the primary version, as reencrypt does.
	rule := h.idx.Column("public", "patients", "ssn")
	c, err := kr.Cipher(ctx, rule)
	if err != nil {
		t.Fatal(err)
	}
	direct := h.direct()
	rows, err := direct.Query(ctx, "SELECT id, ssn FROM public.patients WHERE ssn IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	type idSSN struct {
		ID  int
		SSN []byte
	}
	stored, err := pgx.CollectRows(rows, pgx.RowToStructByPos[idSSN])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range stored {
		pt, err := c.Decrypt(r.SSN)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := c.Encrypt(pt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Exec(ctx, "UPDATE public.patients SET ssn = $1 WHERE id = $2", ct, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	ids = ssnKeyIDs(t, ctx, h)
	for n, id := range ids {
		if id != ids["b1"] {
			t.Fatalf("%s still under an old version after re-encryption", n)
		}
	}
	check(t, "after re-encryption")

	// PostgreSQL never saw a plaintext.
	marker := "pgcloak-rotation-marker-" + h.pg.Database
	if _, err := conn.Exec(ctx, "SELECT '"+marker+"'"); err != nil {
		t.Fatal(err)
	}
	log := h.pg.AwaitStatement(t, marker)
	for _, n := range all {
		if strings.Contains(log, ssn(n)) {
			t.Fatalf("PostgreSQL's statement log holds the plaintext %q", ssn(n))
		}
	}
}

// TestSingleCiphertextFormsAfterRotation: comparison forms that carry one
// ciphertext (row comparisons, IN (VALUES …), subquery constants) would
// miss rows under an older key version; after a rotation they are refused
// instead of answering wrongly, while =, <> and IN keep working.
func TestSingleCiphertextFormsAfterRotation(t *testing.T) {
	h, kr := rotationHarness(t)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('old', 'R-1')"); err != nil {
		t.Fatal(err)
	}
	forms := []string{
		"SELECT name FROM patients WHERE (ssn, name) <> ('R-1', 'old')",
		"SELECT name FROM patients WHERE (ssn, name) = ('R-1', 'old')",
		"SELECT name FROM patients WHERE ssn IN (VALUES ('R-1'))",
		"SELECT name FROM patients WHERE ssn NOT IN (SELECT 'R-1')",
	}
	for _, q := range forms[1:3] {
		if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, q); fmt.Sprint(got) != "[old]" {
			t.Fatalf("before the rotation %s: %v", q, got)
		}
	}
	rotate(t, h, kr, "ssn")
	for _, q := range forms {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			_, err := conn.Exec(ctx, q, mode)
			if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "matches one key version only") {
				t.Errorf("%s (%v) after a rotation: %v", q, mode, err)
			}
		}
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, "SELECT name FROM patients WHERE ssn <> 'R-1'"); len(got) != 0 {
		t.Errorf("<> after a rotation: %v", got)
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeCacheStatement, "SELECT name FROM patients WHERE ssn = $1", "R-1"); fmt.Sprint(got) != "[old]" {
		t.Errorf("= after a rotation: %v", got)
	}
}

// TestPreparedConstantsAfterRotation: a statement prepared before a
// rotation holds its constants' ciphertexts under the old version only;
// it is refused once ("prepare it again"), and prepared again it finds
// rows under both versions. SQL PREPARE too.
func TestPreparedConstantsAfterRotation(t *testing.T) {
	h, kr := rotationHarness(t)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	q := "SELECT name FROM patients WHERE ssn = 'P-1'"
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('old', 'P-1')"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeCacheStatement, q); fmt.Sprint(got) != "[old]" {
		t.Fatalf("before: %v", got)
	}
	if _, err := conn.Exec(ctx, "PREPARE byssn AS "+q, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	rotate(t, h, kr, "ssn")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('new', 'P-1')"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeCacheStatement)
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "prepare it again") {
		t.Fatalf("cached statement after the rotation: %v", err)
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeCacheStatement, q); fmt.Sprint(got) != "[new old]" {
		t.Errorf("prepared again: %v", got)
	}
	if _, err := conn.Exec(ctx, "EXECUTE byssn", pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "0A000" {
		t.Errorf("EXECUTE of a PREPARE from before the rotation: %v", err)
	}
}
