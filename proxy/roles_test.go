package proxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Session-role tests: whichever way the current role changes, the grants the
// proxy applies must be those of the role PostgreSQL reports as
// current_user, in the same statement.

const (
	sxSeedName = "Seed"
	sxSeedSSN  = "555-01-0001"
	sxSeedDiag = "seed-diagnosis"
)

// sxSessionPolicy is testPolicy plus the superuser postgres (needed for SET
// SESSION AUTHORIZATION), who reads clinical only and sees masks otherwise:
// a combination no other role has, so it is recognisable.
const sxSessionPolicy = testPolicy + "    - {role: postgres, read: [clinical], on_denied: mask}\n"

// sxRoleView is what each role's grants show of the seeded row.
var sxRoleView = map[string]string{
	"doctor":   "ssn=plain diagnosis=plain",
	"billing":  "ssn=plain diagnosis=null",
	"auditor":  "ssn=mask diagnosis=mask",
	"nokeys":   "ssn=null diagnosis=null",
	"postgres": "ssn=mask diagnosis=plain",
}

type sxMode struct {
	name string
	mode pgx.QueryExecMode
}

var sxModes = []sxMode{
	{"extended", pgx.QueryExecModeCacheStatement},
	{"simple", pgx.QueryExecModeSimpleProtocol},
}

func (m sxMode) simple() bool { return m.mode == pgx.QueryExecModeSimpleProtocol }

// sxExecMode runs sql without arguments in the mode's protocol (pgx's own
// Exec always uses the simple protocol for a statement without arguments).
func sxExecMode(ctx context.Context, conn *pgx.Conn, m sxMode, sql string) error {
	if m.simple() {
		_, err := conn.Exec(ctx, sql, m.mode)
		return err
	}
	return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
}

func sxMustExecMode(t *testing.T, ctx context.Context, conn *pgx.Conn, m sxMode, sql string) {
	t.Helper()
	if err := sxExecMode(ctx, conn, m, sql); err != nil {
		t.Fatalf("%s (%s): %v", sql, m.name, err)
	}
}

func sxExec(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag
}

// sxSeed inserts the row the role probes read, as doctor.
func sxSeed(t *testing.T, h *harness) {
	t.Helper()
	ctx := ctxT(t)
	sxExec(t, ctx, h.connect("doctor"), "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", sxSeedName, sxSeedSSN, sxSeedDiag)
}

func sxClassify(v *string, plain string) string {
	switch {
	case v == nil:
		return "null"
	case *v == plain:
		return "plain"
	case *v == "********":
		return "mask"
	}
	return "unexpected " + *v
}

// sxObserve returns, from one statement, PostgreSQL's current_user and what
// the proxy showed of the seeded row.
func sxObserve(t *testing.T, ctx context.Context, conn *pgx.Conn, m sxMode) (user, view string) {
	t.Helper()
	var ssn, diag *string
	err := conn.QueryRow(ctx, "SELECT current_user, ssn, diagnosis FROM patients WHERE name = 'Seed'", m.mode).Scan(&user, &ssn, &diag)
	if err != nil {
		t.Fatalf("sxObserve (%s): %v", m.name, err)
	}
	return user, "ssn=" + sxClassify(ssn, sxSeedSSN) + " diagnosis=" + sxClassify(diag, sxSeedDiag)
}

// sxAssertRole checks that PostgreSQL's current_user is want and that the
// proxy applied want's grants.
func sxAssertRole(t *testing.T, ctx context.Context, conn *pgx.Conn, m sxMode, want, step string) {
	t.Helper()
	user, view := sxObserve(t, ctx, conn, m)
	if user != want {
		t.Fatalf("%s (%s): PostgreSQL's current_user is %q, want %q", step, m.name, user, want)
	}
	if view != sxRoleView[want] {
		t.Fatalf("%s (%s): current_user is %q but the proxy showed %q, want %q", step, m.name, user, view, sxRoleView[want])
	}
}

func TestSessionRoleSetAndReset(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxAssertRole(t, ctx, conn, m, "doctor", "login")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE billing")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE NONE")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET ROLE NONE")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			sxAssertRole(t, ctx, conn, m, "auditor", "SET ROLE auditor")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE 'billing'")
			sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE 'billing'")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE TO DEFAULT")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET ROLE TO DEFAULT")
			sxMustExecMode(t, ctx, conn, m, "SET role = auditor")
			sxAssertRole(t, ctx, conn, m, "auditor", "SET role = auditor")
			// A SET ROLE PostgreSQL refuses (doctor is not a member of
			// nokeys) changes nothing.
			wantCode(t, sxExecMode(ctx, conn, m, "SET ROLE nokeys"), "42501")
			sxAssertRole(t, ctx, conn, m, "auditor", "failed SET ROLE nokeys")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE again")
			// set_config('role', …) as a plain SELECT target.
			sxMustExecMode(t, ctx, conn, m, "SELECT set_config('role', 'billing', false)")
			sxAssertRole(t, ctx, conn, m, "billing", "set_config role")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE after set_config")
		})
	}
}

func TestSessionAuthorization(t *testing.T) {
	h := newHarness(t, sxSessionPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("postgres")
			sxAssertRole(t, ctx, conn, m, "postgres", "login")
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION doctor")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET SESSION AUTHORIZATION doctor")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE billing under doctor")
			// RESET ROLE goes back to the session user, not the login one.
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE under doctor")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			// Changing the session authorization also drops the role.
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION auditor")
			sxAssertRole(t, ctx, conn, m, "auditor", "SET SESSION AUTHORIZATION auditor after SET ROLE")
			sxMustExecMode(t, ctx, conn, m, "RESET SESSION AUTHORIZATION")
			sxAssertRole(t, ctx, conn, m, "postgres", "RESET SESSION AUTHORIZATION")
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION 'billing'")
			sxAssertRole(t, ctx, conn, m, "billing", "SET SESSION AUTHORIZATION 'billing'")
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION DEFAULT")
			sxAssertRole(t, ctx, conn, m, "postgres", "SET SESSION AUTHORIZATION DEFAULT")
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION nokeys")
			sxAssertRole(t, ctx, conn, m, "nokeys", "SET SESSION AUTHORIZATION nokeys")
			// Inside a transaction that rolls back, undone.
			sxMustExecMode(t, ctx, conn, m, "RESET SESSION AUTHORIZATION")
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION doctor")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET SESSION AUTHORIZATION in a transaction")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK")
			sxAssertRole(t, ctx, conn, m, "postgres", "after ROLLBACK of SET SESSION AUTHORIZATION")
			// DISCARD ALL resets the session authorization too.
			sxMustExecMode(t, ctx, conn, m, "SET SESSION AUTHORIZATION doctor")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			if _, err := conn.Exec(ctx, "DISCARD ALL"); err != nil {
				t.Fatal(err)
			}
			dm := m
			if !m.simple() {
				// DISCARD ALL dropped pgx's cached prepared statements.
				dm.mode = pgx.QueryExecModeDescribeExec
			}
			sxAssertRole(t, ctx, conn, dm, "postgres", "DISCARD ALL")
		})
	}
}

func TestResetAllKeepsRole(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxMustExecMode(t, ctx, conn, m, "SET search_path TO other, public")
			sxMustExecMode(t, ctx, conn, m, "RESET ALL")
			// PostgreSQL does not reset the role on RESET ALL, but does
			// reset search_path: patients is public.patients again.
			sxAssertRole(t, ctx, conn, m, "billing", "RESET ALL")
			var sp string
			if err := conn.QueryRow(ctx, "SHOW search_path", m.mode).Scan(&sp); err != nil || sp != `"$user", public` {
				t.Fatalf("search_path after RESET ALL = %q, %v", sp, err)
			}
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE after RESET ALL")
		})
	}
}

func TestDiscardAllResetsRole(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	m := sxModes[0]
	m.mode = pgx.QueryExecModeDescribeExec // DISCARD ALL drops pgx's cached statements
	sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
	sxMustExecMode(t, ctx, conn, m, "PREPARE p AS SELECT ssn FROM patients")
	sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE billing")
	if _, err := conn.Exec(ctx, "DISCARD ALL"); err != nil {
		t.Fatal(err)
	}
	sxAssertRole(t, ctx, conn, m, "doctor", "DISCARD ALL")
	sxAssertRole(t, ctx, conn, sxModes[1], "doctor", "DISCARD ALL")
	// The SQL-level prepared statement is gone on both sides.
	wantCode(t, sxExecMode(ctx, conn, m, "EXECUTE p"), "26000")
}

func TestSetLocalRole(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET LOCAL ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET LOCAL ROLE in a transaction")
			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "doctor", "after COMMIT of SET LOCAL ROLE")

			// A session-level SET ROLE before the transaction comes back.
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET LOCAL ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET LOCAL ROLE over SET ROLE")
			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "auditor", "after COMMIT: session role again")

			// SET LOCAL then SET in the same transaction: the SET wins
			// at commit.
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET LOCAL ROLE auditor")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET after SET LOCAL")
			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "billing", "after COMMIT of SET")

			// set_config(…, true) is SET LOCAL.
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SELECT set_config('role', 'auditor', true)")
			sxAssertRole(t, ctx, conn, m, "auditor", "set_config local")
			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "billing", "after COMMIT of set_config local")

			// SET LOCAL outside a transaction does nothing (PostgreSQL
			// warns).
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxMustExecMode(t, ctx, conn, m, "SET LOCAL ROLE billing")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET LOCAL outside a transaction")
		})
	}
}

func TestSetRoleRolledBack(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE in a transaction")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK")
			sxAssertRole(t, ctx, conn, m, "doctor", "after ROLLBACK")

			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "billing", "after COMMIT")

			// An error aborts the transaction; COMMIT then rolls back.
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			wantCode(t, sxExecMode(ctx, conn, m, "SELECT 1/0"), "22012")
			if err := sxExecMode(ctx, conn, m, "COMMIT"); err != nil {
				t.Fatalf("COMMIT of a failed transaction: %v", err)
			}
			sxAssertRole(t, ctx, conn, m, "billing", "after COMMIT of a failed transaction")

			// START TRANSACTION … ABORT.
			sxMustExecMode(t, ctx, conn, m, "START TRANSACTION")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "RESET ROLE in a transaction")
			sxMustExecMode(t, ctx, conn, m, "ABORT")
			sxAssertRole(t, ctx, conn, m, "billing", "after ABORT of RESET ROLE")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
		})
	}
}

func TestSetRoleSavepoints(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT a")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxAssertRole(t, ctx, conn, m, "billing", "SET ROLE after SAVEPOINT")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK TO SAVEPOINT a")
			sxAssertRole(t, ctx, conn, m, "doctor", "ROLLBACK TO SAVEPOINT")

			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT b")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE billing")
			sxMustExecMode(t, ctx, conn, m, "RELEASE SAVEPOINT b")
			sxAssertRole(t, ctx, conn, m, "billing", "RELEASE keeps the change")

			// An error inside a savepoint, then ROLLBACK TO: the
			// transaction goes on with the savepoint's role.
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT c")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			wantCode(t, sxExecMode(ctx, conn, m, "SELECT 1/0"), "22012")
			wantCode(t, sxExecMode(ctx, conn, m, "SELECT 1"), "25P02")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK TO c")
			sxAssertRole(t, ctx, conn, m, "billing", "ROLLBACK TO after an error")

			// Nested savepoints: rolling back to the outer one undoes both.
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT d")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE auditor")
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT e")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "doctor", "nested savepoint")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK TO SAVEPOINT d")
			sxAssertRole(t, ctx, conn, m, "billing", "ROLLBACK TO the outer savepoint")

			sxMustExecMode(t, ctx, conn, m, "COMMIT")
			sxAssertRole(t, ctx, conn, m, "billing", "COMMIT")

			// The whole transaction rolled back: the role before BEGIN.
			sxMustExecMode(t, ctx, conn, m, "BEGIN")
			sxMustExecMode(t, ctx, conn, m, "SAVEPOINT f")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxMustExecMode(t, ctx, conn, m, "RELEASE f")
			sxMustExecMode(t, ctx, conn, m, "ROLLBACK")
			sxAssertRole(t, ctx, conn, m, "billing", "ROLLBACK after RELEASE")
		})
	}
}

// sxMulti runs a sxMulti-statement simple Query and returns its results.
func sxMulti(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}

func TestSetRoleInMultiStatementQuery(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	simple := sxModes[1]

	// A later statement fails: the implicit transaction rolls back and
	// takes the SET ROLE with it.
	_, err := sxMulti(ctx, conn, "SET ROLE billing; SELECT 1/0")
	wantCode(t, err, "22012")
	sxAssertRole(t, ctx, conn, simple, "doctor", "SET ROLE; failing statement")
	sxAssertRole(t, ctx, conn, sxModes[0], "doctor", "SET ROLE; failing statement")

	// It succeeds: the SET ROLE stays.
	if _, err := sxMulti(ctx, conn, "SET ROLE billing; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	sxAssertRole(t, ctx, conn, simple, "billing", "SET ROLE; SELECT 1")

	// A statement after the SET in the same string is decrypted for the
	// new role.
	res, err := sxMulti(ctx, conn, "RESET ROLE; SELECT current_user, ssn, diagnosis FROM patients WHERE name = 'Seed'; SET ROLE auditor; SELECT current_user, ssn, diagnosis FROM patients WHERE name = 'Seed'")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || len(res[1].Rows) != 1 || len(res[3].Rows) != 1 {
		t.Fatalf("results: %+v", res)
	}
	if r := res[1].Rows[0]; string(r[0]) != "doctor" || string(r[1]) != sxSeedSSN || string(r[2]) != sxSeedDiag {
		t.Fatalf("after RESET ROLE in the string: %q", r)
	}
	if r := res[3].Rows[0]; string(r[0]) != "auditor" || string(r[1]) != "********" || string(r[2]) != "********" {
		t.Fatalf("after SET ROLE auditor in the string: %q", r)
	}
	sxAssertRole(t, ctx, conn, simple, "auditor", "after the string")

	// A COMMIT inside the string keeps what came before it even when a
	// later statement fails.
	sxMustExecMode(t, ctx, conn, simple, "RESET ROLE")
	_, err = sxMulti(ctx, conn, "BEGIN; SET ROLE billing; COMMIT; SET ROLE auditor; SELECT 1/0")
	wantCode(t, err, "22012")
	sxAssertRole(t, ctx, conn, simple, "billing", "COMMIT then failure in one string")

	// Explicit ROLLBACK inside the string.
	sxMustExecMode(t, ctx, conn, simple, "RESET ROLE")
	if _, err := sxMulti(ctx, conn, "BEGIN; SET ROLE billing; ROLLBACK; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	sxAssertRole(t, ctx, conn, simple, "doctor", "ROLLBACK in the string")
}

// TestSetRoleInStringGrantsFollow: a write after SET ROLE in the same query
// string is checked against the role in effect when it runs, not the one
// the string was sent under.
func TestSetRoleInStringGrantsFollow(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	_, err := sxMulti(ctx, conn, "SET ROLE billing; UPDATE patients SET diagnosis = 'overwritten' WHERE name = 'Seed'")
	pe := wantCode(t, err, "42501")
	if !strings.Contains(pe.Message, "public.patients.diagnosis") {
		t.Fatalf("message %q should name the column", pe.Message)
	}
	sxAssertRole(t, ctx, conn, sxModes[1], "doctor", "after the refused string")
	// Nothing was written.
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'Seed'").Scan(&diag); err != nil || diag != sxSeedDiag {
		t.Fatalf("diagnosis = %q, %v", diag, err)
	}
	// Back to a role with the grant within the string: allowed.
	if _, err := sxMulti(ctx, conn, "SET ROLE billing; RESET ROLE; UPDATE patients SET diagnosis = 'rewritten' WHERE name = 'Seed'"); err != nil {
		t.Fatalf("write after RESET ROLE in the string: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'Seed'").Scan(&diag); err != nil || diag != "rewritten" {
		t.Fatalf("diagnosis = %q, %v", diag, err)
	}
	sxExec(t, ctx, conn, "UPDATE patients SET diagnosis = $1 WHERE name = 'Seed'", sxSeedDiag)
	// The search grant follows too: auditor may not search ssn.
	_, err = sxMulti(ctx, conn, "SET ROLE auditor; SELECT name FROM patients WHERE ssn = '"+sxSeedSSN+"'")
	wantCode(t, err, "42501")
	sxAssertRole(t, ctx, conn, sxModes[1], "doctor", "after the refused search")
}

func TestSetRoleInPipeline(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	const probe = "SELECT current_user, ssn, diagnosis FROM patients WHERE name = 'Seed'"
	type obs struct {
		user      string
		ssn, diag *string
	}
	var got [3]obs
	b := &pgx.Batch{}
	b.Queue(probe).QueryRow(func(r pgx.Row) error { return r.Scan(&got[0].user, &got[0].ssn, &got[0].diag) })
	b.Queue("SET ROLE billing")
	b.Queue(probe).QueryRow(func(r pgx.Row) error { return r.Scan(&got[1].user, &got[1].ssn, &got[1].diag) })
	b.Queue("SET ROLE auditor")
	b.Queue(probe).QueryRow(func(r pgx.Row) error { return r.Scan(&got[2].user, &got[2].ssn, &got[2].diag) })
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"doctor", "billing", "auditor"} {
		g := got[i]
		view := "ssn=" + sxClassify(g.ssn, sxSeedSSN) + " diagnosis=" + sxClassify(g.diag, sxSeedDiag)
		if g.user != want || view != sxRoleView[want] {
			t.Fatalf("batch step %d: current_user %q, proxy showed %q; want %q %q", i, g.user, view, want, sxRoleView[want])
		}
	}
	sxAssertRole(t, ctx, conn, sxModes[0], "auditor", "after the batch")

	// A batch is one implicit transaction: a failure undoes its SET ROLE.
	sxMustExecMode(t, ctx, conn, sxModes[1], "RESET ROLE")
	b = &pgx.Batch{}
	b.Queue("SET ROLE billing")
	b.Queue("SELECT 1/0")
	wantCode(t, conn.SendBatch(ctx, b).Close(), "22012")
	sxAssertRole(t, ctx, conn, sxModes[0], "doctor", "after the failed batch")
	sxAssertRole(t, ctx, conn, sxModes[1], "doctor", "after the failed batch")

	// A write queued after SET ROLE is checked against the new role.
	b = &pgx.Batch{}
	b.Queue("SET ROLE billing")
	b.Queue("UPDATE patients SET diagnosis = $1 WHERE name = 'Seed'", "batch-write")
	err := conn.SendBatch(ctx, b).Close()
	pe := wantCode(t, err, "42501")
	if !strings.Contains(pe.Message, "public.patients.diagnosis") {
		t.Fatalf("message %q should name the column", pe.Message)
	}
	sxAssertRole(t, ctx, conn, sxModes[0], "doctor", "after the refused batch")
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'Seed'").Scan(&diag); err != nil || diag != sxSeedDiag {
		t.Fatalf("diagnosis = %q, %v", diag, err)
	}
}

// 1.5: fast-path set_config changed the role behind the proxy's back.
func TestFastpathSetConfigRefused(t *testing.T) {
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

// A portal bound by a role that may read a column and run after SET ROLE
// shows the new role's view, as PostgreSQL runs it as the new role; for a
// role with on_denied: error that view is the error its own read would
// get, not NULLs.
func TestPortalRunAfterSetRoleFailsForAnErrorModeRole(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	h.pg.ExecAdmin(t, `GRANT strict, billing TO doctor`)
	for _, c := range []struct {
		role string
		want string
	}{
		{"strict", "E:42501"},
		{"billing", "D:NULL"},
	} {
		t.Run(c.role, func(t *testing.T) {
			pc := protoConnect(t, h, "doctor")
			wantTokens(t, "BEGIN", pc.query("BEGIN"), "C:BEGIN", "Z:T")
			pc.send(&pgproto3.Parse{Name: "s", Query: "SELECT diagnosis FROM patients WHERE name = '" + sxSeedName + "'"},
				&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}, &pgproto3.Sync{})
			wantTokens(t, "bind as doctor", pc.recvReady(), "ParseComplete", "BindComplete", "Z:T")
			wantTokens(t, "SET ROLE", pc.query("SET ROLE "+c.role), "C:SET", "Z:T")
			pc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			got := pc.recvReady()
			if len(got) == 0 || !strings.HasPrefix(got[0], c.want) {
				t.Fatalf("portal run as %s: %q, want %s first", c.role, got, c.want)
			}
		})
	}
}
