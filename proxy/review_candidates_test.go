package proxy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/keymap"
)

// Regression tests for a review of the rewriting of comparisons into
// candidates and of the column states during migrations.

// TestComparisonNullSemantics: the rewritten comparisons return what the
// same comparisons return on a plaintext table, NULLs included.
func TestComparisonNullSemantics(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+`
CREATE TABLE public.plain (name text, ssn text);
INSERT INTO public.plain VALUES ('a','A'),('b','B'),('n',NULL);
GRANT ALL ON public.plain TO PUBLIC;`)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('a','A'),('b','B'),('n',NULL)"); err != nil {
		t.Fatal(err)
	}
	var null *string
	a := "A"
	cases := []struct {
		where string
		args  []any
	}{
		{"ssn <> $1", []any{null}},
		{"ssn = $1", []any{null}},
		{"ssn <> $1", []any{&a}},
		{"ssn NOT IN ($1, 'B')", []any{null}},
		{"ssn NOT IN ('A', NULL)", nil},
		{"ssn IN ('A', NULL)", nil},
		{"ssn IS DISTINCT FROM $1", []any{null}},
		{"ssn IS DISTINCT FROM $1", []any{&a}},
		{"ssn IS NOT DISTINCT FROM $1", []any{null}},
		{"ssn IS NOT DISTINCT FROM $1", []any{&a}},
		{"ssn IS DISTINCT FROM 'A'", nil},
		{"ssn = ALL(ARRAY['A', NULL])", nil},
		{"NOT (ssn = ALL(ARRAY['A', NULL]))", nil},
		{"ssn <> ANY(ARRAY['A', NULL])", nil},
		{"ssn <> ANY(ARRAY['A', $1])", []any{null}},
		{"(ssn = ANY(ARRAY[$1, 'B'])) IS NULL", []any{null}},
		{"(ssn <> ALL(ARRAY[$1, 'B'])) IS NULL", []any{null}},
		{"NOT (ssn IN ($1)) IS NULL", []any{&a}},
	}
	for _, c := range cases {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeSimpleProtocol} {
			q := "SELECT name FROM %s WHERE " + c.where + " ORDER BY name"
			got := names(t, ctx, conn, mode, fmt.Sprintf(q, "patients"), c.args...)
			want := names(t, ctx, conn, mode, fmt.Sprintf(q, "plain"), c.args...)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s %v (%v): proxy %v, plaintext table %v", c.where, c.args, mode, got, want)
			}
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

// TestWritesAcrossColumnStates: during a decrypt of patients.ssn, a value
// written to it and to visits.patient_ssn (same key) in one statement is
// stored as ciphertext, and copying patients.ssn (which holds text forms)
// into visits.patient_ssn is refused: visits.patient_ssn never holds a
// plaintext.
func TestWritesAcrossColumnStates(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+migTable+`
INSERT INTO pgcloak.column_migrations VALUES ('public','patients','ssn','decrypt','ssn',now(),NULL);`)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('x', 'S-LEAK')"); err != nil {
		t.Fatal(err)
	}
	var v []byte
	if err := h.direct().QueryRow(ctx, "SELECT ssn FROM public.patients WHERE name = 'x'").Scan(&v); err != nil || string(v) != "S-LEAK" {
		t.Fatalf("a write during decrypt stored %q, %v; want its text form", v, err)
	}
	for _, sql := range []string{
		"INSERT INTO visits (patient_ssn) SELECT $1 FROM patients WHERE ssn = $1",
		"WITH a AS (INSERT INTO patients (name, ssn) VALUES ('y', $1)) INSERT INTO visits (patient_ssn) VALUES ($1)",
	} {
		for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			val := "S-LEAK"
			if strings.HasPrefix(sql, "WITH") {
				val = fmt.Sprintf("S-2-%d", i) // patients.ssn is unique
			}
			if _, err := conn.Exec(ctx, sql, mode, val); err != nil {
				t.Fatalf("%s (%v): %v", sql, mode, err)
			}
		}
	}
	_, err := conn.Exec(ctx, "INSERT INTO visits (patient_ssn) SELECT ssn FROM patients WHERE name = 'x'")
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "cannot be copied") {
		t.Errorf("copy of a column being decrypted: %v", err)
	}
	rows, err := h.direct().Query(ctx, "SELECT patient_ssn FROM public.visits")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil || len(vals) != 4 {
		t.Fatalf("visits: %d rows, %v", len(vals), err)
	}
	for _, v := range vals {
		if !keymap.IsCiphertext(v) {
			t.Errorf("visits.patient_ssn holds %q", v)
		}
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, "SELECT name FROM patients WHERE ssn IN ('S-LEAK', 'S-2-0', 'S-2-1')"); fmt.Sprint(got) != "[x y y]" {
		t.Errorf("search during decrypt: %v", got)
	}
}
