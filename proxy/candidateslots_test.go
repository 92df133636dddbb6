package proxy_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// TestCandidateSlotsGenericPlan: a prepared search on a deterministic
// column with a parameter carries its candidates in a fixed number of
// bytea parameters, so PostgreSQL settles on a generic plan after a few
// executions (with one bytea[] parameter it re-planned every time). Rows
// under both key versions are found throughout, and NULL finds nothing.
func TestCandidateSlotsGenericPlan(t *testing.T) {
	h, kr := rotationHarness(t)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	ssn := func(s string) string { return "slot-" + s + "-" + h.pg.Database }
	insert := func(n string) {
		if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", n, ssn(n)); err != nil {
			t.Fatal(err)
		}
	}
	insert("a1")
	rotate(t, h, kr, "ssn")
	insert("b1")
	if ids := ssnKeyIDs(t, ctx, h); ids["a1"] == ids["b1"] {
		t.Fatalf("key versions at rest: %v", ids)
	}

	const q = "SELECT name FROM patients WHERE ssn = $1"
	for i := range 10 {
		n := []string{"a1", "b1"}[i%2]
		if got := names(t, ctx, conn, pgx.QueryExecModeCacheStatement, q, ssn(n)); !slices.Equal(got, []string{n}) {
			t.Errorf("execution %d, %s: got %v", i+1, n, got)
		}
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeCacheStatement, q, nil); len(got) != 0 {
		t.Errorf("NULL: got %v", got)
	}

	// The same session's prepared statements, as PostgreSQL sees them.
	var stmt string
	var generic, custom int64
	err := conn.QueryRow(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
		WHERE statement LIKE 'SELECT name FROM %patients WHERE (ssn = ANY(ARRAY[$2, $3,%'`,
		pgx.QueryExecModeSimpleProtocol).Scan(&stmt, &generic, &custom)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: generic_plans %d, custom_plans %d", stmt, generic, custom)
	if !strings.Contains(stmt, "ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]") {
		t.Errorf("statement upstream: %s", stmt)
	}
	if generic == 0 {
		t.Errorf("no generic plan after 11 executions (custom_plans %d)", custom)
	}
}

// TestTooManyCandidates: a value stored in more forms than a parameter's
// candidate slots (here CandidateSlots+1 enabled key versions) cannot be
// searched with a parameter: the Bind is refused with 54000, pointing to
// reencrypt. Constants and array parameters carry any number.
func TestTooManyCandidates(t *testing.T) {
	h, kr := rotationHarness(t)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('v1', 'M-1')"); err != nil {
		t.Fatal(err)
	}
	for range sqlrewrite.CandidateSlots {
		rotate(t, h, kr, "ssn")
	}
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('v9', 'M-1')"); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "54000" || !strings.Contains(pe.Message, "public.patients.ssn") ||
			!strings.Contains(pe.Message, "reencrypt") || !strings.Contains(pe.Message, fmt.Sprint(sqlrewrite.CandidateSlots+1)) {
			t.Errorf("%s: %v, want 54000 naming the column and reencrypt", what, err)
		}
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		rows, err := conn.Query(ctx, "SELECT name FROM patients WHERE ssn = $1", mode, "M-1")
		if err == nil {
			rows.Close()
			err = rows.Err()
		}
		check(fmt.Sprintf("parameter (%v)", mode), err)
	}
	// NULL has no candidates to count.
	if got := names(t, ctx, conn, pgx.QueryExecModeExec, "SELECT name FROM patients WHERE ssn = $1", nil); len(got) != 0 {
		t.Errorf("NULL: %v", got)
	}
	if _, err := conn.Exec(ctx, "PREPARE many AS SELECT name FROM patients WHERE ssn = $1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "EXECUTE many('M-1')", pgx.QueryExecModeSimpleProtocol)
	check("EXECUTE", err)
	for _, tc := range []struct {
		sql  string
		args []any
	}{
		{"SELECT name FROM patients WHERE ssn = 'M-1'", nil},
		{"SELECT name FROM patients WHERE ssn = ANY($1)", []any{[]string{"M-1"}}},
	} {
		if got := names(t, ctx, conn, pgx.QueryExecModeExec, tc.sql, tc.args...); !slices.Equal(got, []string{"v1", "v9"}) {
			t.Errorf("%s: %v", tc.sql, got)
		}
	}
}
