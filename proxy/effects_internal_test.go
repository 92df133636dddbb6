package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// recorder is a stateTarget that notes what it is told.
type recorder struct {
	state sessionState
	calls []string
}

func (r *recorder) settings() *sessionState { return &r.state }
func (r *recorder) prepared(st *sqlrewrite.Statement) {
	r.calls = append(r.calls, "prepared "+st.Prepare.Name)
}
func (r *recorder) deallocated(name string) {
	r.calls = append(r.calls, fmt.Sprintf("deallocated %q", name))
}
func (r *recorder) discarded() { r.calls = append(r.calls, "discarded") }
func (r *recorder) ddl(st *sqlrewrite.Statement) {
	r.calls = append(r.calls, fmt.Sprintf("ddl changes=%t", st.ChangesCatalog))
}
func (r *recorder) unlistened()                              { r.calls = append(r.calls, "unlistened") }
func (r *recorder) transactionControl(*sqlrewrite.Statement) {}

// analyzed is the statements of sql as the proxy plans them, on a catalog
// without encrypted tables.
func analyzed(t *testing.T, sql string) []*sqlrewrite.Statement {
	t.Helper()
	plan, err := sqlrewrite.Analyze(sql, &sqlrewrite.Env{Catalog: &catalog{}, SearchPath: []string{"public"}})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return plan.Statements
}

func TestApplyStatementChangesStateByKind(t *testing.T) {
	for _, c := range []struct {
		sql   string
		tag   string
		calls string
		role  string // current role after
		path  string // search_path after (it was x before)
	}{
		{"SET ROLE nurse", "SET", "", "nurse", "x"},
		{"SET search_path = a, b", "SET", "", "doctor", "a,b"},
		{"RESET ALL", "RESET", "", "doctor", "public"},
		{"PREPARE q AS SELECT 1", "PREPARE", "prepared q", "doctor", "x"},
		{"DEALLOCATE q", "DEALLOCATE", `deallocated "q"`, "doctor", "x"},
		{"DEALLOCATE ALL", "DEALLOCATE ALL", `deallocated ""`, "doctor", "x"},
		{"DISCARD ALL", "DISCARD ALL", "unlistened discarded", "doctor", "public"},
		{"UNLISTEN *", "UNLISTEN", "unlistened", "doctor", "x"},
		{"CREATE TABLE t (a int)", "CREATE TABLE", "ddl changes=false", "doctor", "x"},
		{"SELECT 1", "SELECT 1", "", "doctor", "x"},
	} {
		t.Run(c.sql, func(t *testing.T) {
			r := &recorder{state: *newSessionState(settings{sessionAuth: "doctor", searchPath: []string{"public"}})}
			// A changed setting first, for RESET ALL and DISCARD ALL to undo.
			r.state.apply(sqlrewrite.Effect{Setting: sqlrewrite.SettingSearchPath, Values: []string{"x"}})
			for _, st := range analyzed(t, c.sql) {
				applyStatement(r, st, c.tag)
			}
			if got := strings.Join(r.calls, " "); got != c.calls {
				t.Errorf("calls %q, want %q", got, c.calls)
			}
			cur := r.state.current
			if cur.currentRole() != c.role {
				t.Errorf("role %q, want %q", cur.currentRole(), c.role)
			}
			if got := strings.Join(cur.searchPath, ","); got != c.path {
				t.Errorf("search_path %q, want %q", got, c.path)
			}
		})
	}
}

// A transaction's end decides what its settings become: the tag of a
// COMMIT that rolled back undoes them.
func TestApplyStatementFollowsTheCommitTag(t *testing.T) {
	for _, c := range []struct {
		tag, role string
	}{
		{"COMMIT", "nurse"},
		{"ROLLBACK", "doctor"},
	} {
		r := &recorder{state: *newSessionState(settings{sessionAuth: "doctor"})}
		for _, st := range analyzed(t, "BEGIN; SET ROLE nurse") {
			applyStatement(r, st, "")
		}
		for _, st := range analyzed(t, "COMMIT") {
			applyStatement(r, st, c.tag)
		}
		r.state.readyForQuery('I')
		if got := r.state.current.currentRole(); got != c.role {
			t.Errorf("COMMIT tagged %s: role %q, want %q", c.tag, got, c.role)
		}
	}
}

// The prediction made while a string is planned and the confirmation as
// PostgreSQL reports each statement done leave the same session state.
func TestPredictionAndConfirmationAgree(t *testing.T) {
	for _, sql := range []string{
		"SET ROLE nurse; SET search_path = clinic, public",
		"BEGIN; SET LOCAL ROLE nurse; SAVEPOINT s; SET search_path = x; ROLLBACK TO s; RELEASE s",
		"PREPARE a AS SELECT 1; PREPARE b AS SELECT 2; DEALLOCATE a",
		"PREPARE a AS SELECT 1; DEALLOCATE ALL; PREPARE c AS SELECT 3",
		"SET ROLE nurse; DISCARD ALL",
		"SET SESSION AUTHORIZATION nurse; RESET ROLE; SET search_path = y; RESET search_path",
	} {
		t.Run(sql, func(t *testing.T) {
			ss := idleSession()
			sim := ss.newQuerySim(sql)
			stmts := analyzed(t, sql)
			for i, st := range stmts {
				sim.step(st)
				ss.completed(&pending{}, st, strings.ToUpper(strings.Fields(sql[st.Start:st.End])[0]))
				if !sameSettings(sim.state.current, ss.state.current) {
					t.Fatalf("after statement %d: predicted %+v, confirmed %+v", i+1, sim.state.current, ss.state.current)
				}
			}
			for _, name := range []string{"a", "b", "c"} {
				predicted, _ := sim.lookup(name)
				var confirmed *sqlrewrite.Prepared
				if p := ss.sessionPreparedLocked(name); p != nil {
					confirmed = p.prep
				}
				if (predicted == nil) != (confirmed == nil) {
					t.Errorf("prepared %q: predicted %v, confirmed %v", name, predicted != nil, confirmed != nil)
				}
			}
		})
	}
}

func sameSettings(a, b settings) bool {
	return a.role == b.role && a.sessionAuth == b.sessionAuth && slices.Equal(a.searchPath, b.searchPath) &&
		a.floatDigits == b.floatDigits && a.byteaOutput == b.byteaOutput
}

// changesSession, which makes the frontend wait for a statement before it
// plans the next, knows every statement applyStatement changes state for.
func TestChangesSessionKnowsWhatApplyStatementChanges(t *testing.T) {
	for _, sql := range []string{
		"SET ROLE nurse", "RESET ROLE", "SET search_path = a", "SET LOCAL search_path = a", "RESET ALL",
		"SELECT set_config('search_path', 'a', false)", "SET extra_float_digits = 3", "SET bytea_output = hex",
		"SET SESSION AUTHORIZATION nurse", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s",
		"ROLLBACK TO s", "PREPARE TRANSACTION 'x'", "PREPARE q AS SELECT 1", "DEALLOCATE q", "DEALLOCATE ALL",
		"DISCARD ALL", "UNLISTEN *", "CREATE TABLE t (a int)", "DROP TABLE t", "ALTER TABLE t ADD b int",
		"SELECT 1", "INSERT INTO t VALUES (1)", "LISTEN x", "NOTIFY x", "SET work_mem = '4MB'", "SHOW search_path",
	} {
		for _, st := range analyzed(t, sql) {
			r := &recorder{state: *newSessionState(settings{sessionAuth: "doctor", searchPath: []string{"public"}})}
			// Every setting away from its reset value, for RESET to change.
			for _, e := range analyzed(t, "SET ROLE other; SET search_path = elsewhere; SET extra_float_digits = 1; SET bytea_output = escape") {
				applyStatement(r, e, "SET")
			}
			before := fmt.Sprintf("%+v", r.state)
			applyStatement(r, st, "COMMIT")
			// Transaction control changes the transaction state, which
			// the proxy learns from ReadyForQuery.
			changed := len(r.calls) > 0 || fmt.Sprintf("%+v", r.state) != before || st.Tx != sqlrewrite.TxNone
			if changesSession(st) != changed {
				t.Errorf("%s: changesSession %t, applyStatement changed state: %t", sql, changesSession(st), changed)
			}
		}
	}
}
