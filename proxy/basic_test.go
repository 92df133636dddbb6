package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgCode returns the SQLSTATE of a PostgreSQL (or pgcloak) error.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func wantCode(t *testing.T, err error, code string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("want SQLSTATE %s, got %v", code, err)
	}
	if pe.Code != code {
		t.Fatalf("want SQLSTATE %s, got %s: %s", code, pe.Code, pe.Message)
	}
	return pe
}

func TestRoundTripExtendedProtocol(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	_, err := doc.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "Alice", "123-45-6789", "flu")
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	var name, ssn, diag string
	err = doc.QueryRow(ctx, "SELECT name, ssn, diagnosis FROM patients WHERE ssn = $1", "123-45-6789").Scan(&name, &ssn, &diag)
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if name != "Alice" || ssn != "123-45-6789" || diag != "flu" {
		t.Fatalf("got %q %q %q", name, ssn, diag)
	}
	// At rest: PostgreSQL holds only ciphertext.
	var rawSSN, rawDiag []byte
	if err := h.direct().QueryRow(ctx, "SELECT ssn, diagnosis FROM patients").Scan(&rawSSN, &rawDiag); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rawSSN), "123-45") || strings.Contains(string(rawDiag), "flu") {
		t.Fatalf("plaintext at rest: %q %q", rawSSN, rawDiag)
	}
}

func TestRoundTripSimpleProtocol(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := doc.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('Bob', '987-65-4321', 'asthma'); INSERT INTO patients (name, ssn) VALUES ('Eve', '111-11-1111')", simple); err != nil {
		t.Fatalf("insert: %v", err)
	}
	rows, err := doc.Query(ctx, "SELECT name, ssn, diagnosis FROM patients ORDER BY id", simple)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name, ssn string
		diag      *string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.name, &x.ssn, &x.diag)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ssn != "987-65-4321" || got[0].diag == nil || *got[0].diag != "asthma" || got[1].diag != nil {
		t.Fatalf("rows = %+v", got)
	}
	var n int
	if err := doc.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn IN ('111-11-1111', '000-00-0000')", simple).Scan(&n); err != nil || n != 1 {
		t.Fatalf("IN on deterministic column: n=%d err=%v", n, err)
	}
}

func TestRefusedStatementKeepsSessionUsable(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	_, err := doc.Exec(ctx, "SELECT name FROM patients WHERE diagnosis LIKE 'fl%'")
	pe := wantCode(t, err, "0A000")
	if !strings.Contains(pe.Message, "public.patients.diagnosis") || !strings.HasPrefix(pe.Message, "pgcloak: ") {
		t.Fatalf("message %q should name the column with the pgcloak prefix", pe.Message)
	}
	// In a transaction the refusal aborts it, as any error would.
	tx, err := doc.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT 1 FROM patients ORDER BY ssn")
	wantCode(t, err, "0A000")
	_, err = tx.Exec(ctx, "SELECT 1")
	wantCode(t, err, "25P02")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := doc.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session unusable after refusal: %v", err)
	}
}

func TestGrantsByRole(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	if _, err := doc.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "Ann", "222-22-2222", "gout"); err != nil {
		t.Fatal(err)
	}
	billing := h.connect("billing")
	var ssn string
	var diag *string
	if err := billing.QueryRow(ctx, "SELECT ssn, diagnosis FROM patients").Scan(&ssn, &diag); err != nil {
		t.Fatal(err)
	}
	if ssn != "222-22-2222" || diag != nil {
		t.Fatalf("billing sees ssn=%q diagnosis=%v; want ssn and NULL", ssn, diag)
	}
	_, err := billing.Exec(ctx, "UPDATE patients SET diagnosis = $1", "x")
	pe := wantCode(t, err, "42501")
	if !strings.Contains(pe.Message, "public.patients.diagnosis") {
		t.Fatalf("message %q should name the column", pe.Message)
	}
	var masked string
	if err := h.connect("auditor").QueryRow(ctx, "SELECT diagnosis FROM patients").Scan(&masked); err != nil || masked != "********" {
		t.Fatalf("auditor mask = %q, %v", masked, err)
	}
	_, err = h.connect("strict").Exec(ctx, "SELECT diagnosis FROM patients")
	wantCode(t, err, "42501")

	// SET ROLE switches grants; RESET ROLE switches back.
	if _, err := doc.Exec(ctx, "SET ROLE billing"); err != nil {
		t.Fatal(err)
	}
	if err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients").Scan(&diag); err != nil || diag != nil {
		t.Fatalf("after SET ROLE billing: diag=%v err=%v", diag, err)
	}
	if _, err := doc.Exec(ctx, "RESET ROLE"); err != nil {
		t.Fatal(err)
	}
	if err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients").Scan(&diag); err != nil || diag == nil || *diag != "gout" {
		t.Fatalf("after RESET ROLE: diag=%v err=%v", diag, err)
	}
}

func TestUnknownRoleSeesNull(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	if _, err := h.connect("doctor").Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('Z', '333-33-3333')"); err != nil {
		t.Fatal(err)
	}
	var ssn *string
	if err := h.connect("nokeys").QueryRow(context.Background(), "SELECT ssn FROM patients").Scan(&ssn); err != nil || ssn != nil {
		t.Fatalf("nokeys: ssn=%v err=%v", ssn, err)
	}
}

// Regression: with standard_conforming_strings off PostgreSQL reads
// backslashes in literals differently from the analysis, so statements on
// encrypted tables are refused until it is back on.
func TestStandardConformingStringsOffRefused(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	if _, err := doc.Exec(ctx, "SET standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	_, err := doc.Exec(ctx, `INSERT INTO patients (name, ssn) VALUES ('a\', '123-45-6789')`, pgx.QueryExecModeSimpleProtocol)
	wantCode(t, err, "0A000")
	if _, err := doc.Exec(ctx, `SELECT 'plain\\' AS x`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("a statement on no encrypted table must pass: %v", err)
	}
	if _, err := doc.Exec(ctx, "SET standard_conforming_strings = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Exec(ctx, `INSERT INTO patients (name, ssn) VALUES ('a\', '123-45-6789')`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("with the setting back on: %v", err)
	}
}
