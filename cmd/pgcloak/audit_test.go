package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/testenv"
)

// auditPolicy gives postgres every key and audit_denied none of them.
const auditPolicy = `  roles:
    - {role: postgres, read: [ssn, clinical], write: [ssn, clinical]}
    - {role: audit_denied, read: [], on_denied: "null"}
audit:
  output: %s
`

// readAudit parses an audit file's records.
func readAudit(t *testing.T, path string) ([]audit.Record, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs, data
}

// auditColumn finds the record of a statement (by fingerprint prefix) and
// its entry for column with action.
func auditColumn(t *testing.T, recs []audit.Record, statement, column string, action audit.Action) (audit.Record, audit.Column) {
	t.Helper()
	for _, r := range recs {
		if !strings.HasPrefix(r.Statement, statement) {
			continue
		}
		for _, c := range r.Columns {
			if c.Column == column && c.Action == action {
				return r, c
			}
		}
	}
	t.Fatalf("no audit record of %q with %s %s; records:\n%+v", statement, column, action, recs)
	return audit.Record{}, audit.Column{}
}

func TestAuditTrailRecordsEveryAccessAndNoValue(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id serial, name text UNIQUE, ssn bytea, diagnosis bytea)")
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE audit_denied; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.ExecAdmin(t, "GRANT ALL ON ALL TABLES IN SCHEMA public TO audit_denied")
	path := writeConfig(t, pg.Address())
	trail := filepath.Join(filepath.Dir(path), "audit", "audit.log")
	rewriteConfig(t, path, "  roles:\n    - {role: postgres, read: [ssn, clinical], write: [ssn, clinical]}\n", fmt.Sprintf(auditPolicy, trail))
	createKeys(t, path)
	p := startProcess(t, path, nil)
	ctx := context.Background()
	conn := p.connect(ctx, "postgres", pg.Database)
	values := []string{"AUDIT-SSN-DUP", "AUDIT-SSN-LIT", "AUDIT-DIAG-LIT", "AUDIT-SSN-PARAM", "AUDIT-DIAG-PARAM", "AUDIT-SSN-COPY", "AUDIT-DIAG-COPY", "AUDIT-LIKE", "AUDIT-NAME"}
	steps := []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO patients (name, ssn, diagnosis) VALUES ('AUDIT-NAME', 'AUDIT-SSN-LIT', 'AUDIT-DIAG-LIT')", nil},
		{"INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", []any{"Bo", "AUDIT-SSN-PARAM", "AUDIT-DIAG-PARAM"}},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"name", "ssn", "diagnosis"},
		pgx.CopyFromRows([][]any{{"Cy", "AUDIT-SSN-COPY", "AUDIT-DIAG-COPY"}, {"Di", "AUDIT-SSN-COPY", "AUDIT-DIAG-COPY"}})); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(ssn) FROM patients WHERE ssn = $1", "AUDIT-SSN-COPY").Scan(&n); err != nil || n != 2 {
		t.Fatalf("search: %d %v", n, err)
	}
	if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY patients (name, ssn) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('AUDIT-NAME', 'AUDIT-SSN-DUP')")
	if pgErrCode(err) != "23505" {
		t.Fatalf("duplicate: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT ssn, diagnosis FROM patients ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if _, err := conn.Exec(ctx, "SET ROLE audit_denied"); err != nil {
		t.Fatal(err)
	}
	var ssn *string
	if err := conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE name = 'AUDIT-NAME'").Scan(&ssn); err != nil || ssn != nil {
		t.Fatalf("denied read: %v %v", ssn, err)
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "SELECT name FROM patients WHERE diagnosis LIKE 'AUDIT-LIKE%'")
	if pgErrCode(err) != "0A000" {
		t.Fatalf("LIKE on an encrypted column: %v", err)
	}
	// The trail is complete once the process has drained.
	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("pgcloak serve did not exit after SIGTERM")
	}
	if p.exitErr != nil {
		t.Fatalf("pgcloak serve exited with %v", p.exitErr)
	}

	recs, raw := readAudit(t, trail)
	for _, v := range values {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("the audit trail holds the value %q:\n%s", v, raw)
		}
	}
	if strings.Contains(p.logText(), "AUDIT-") {
		t.Errorf("the proxy's log holds a value:\n%s", p.logText())
	}
	r, c := auditColumn(t, recs, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "ssn", audit.Encrypted)
	if c.Rows != 1 || r.User != "postgres" || r.Role != "postgres" || r.Kind != "insert" || r.Outcome != audit.OutcomeOK || r.Database != pg.Database || r.Client == "" || r.Session == 0 {
		t.Errorf("insert record: %+v", r)
	}
	if _, c := auditColumn(t, recs, `copy "patients"`, "diagnosis", audit.Encrypted); c.Rows != 2 {
		t.Errorf("COPY encrypted %d rows, want 2", c.Rows)
	}
	if _, c := auditColumn(t, recs, "SELECT count(ssn) FROM patients WHERE ssn = $1", "ssn", audit.Searched); c.Rows != 1 {
		t.Errorf("search record rows %d, want 1 (the count's row)", c.Rows)
	}
	if _, c := auditColumn(t, recs, "SELECT ssn, diagnosis FROM patients ORDER BY id", "diagnosis", audit.Decrypted); c.Rows != 4 {
		t.Errorf("read decrypted %d rows, want 4", c.Rows)
	}
	r, c = auditColumn(t, recs, "SELECT ssn FROM patients WHERE name = $1", "ssn", audit.Denied)
	if c.Rows != 1 || r.Role != "audit_denied" || r.User != "postgres" {
		t.Errorf("denied record: %+v %+v", r, c)
	}
	if _, c := auditColumn(t, recs, "COPY patients (name, ssn) TO STDOUT", "ssn", audit.Decrypted); c.Rows != 4 {
		t.Errorf("COPY TO decrypted %d rows, want 4", c.Rows)
	}
	r, _ = auditColumn(t, recs, "INSERT INTO ? (name, ?) VALUES ($1, $2)", "ssn", audit.Encrypted)
	if r.Outcome != audit.OutcomeError || r.SQLState != "23505" {
		t.Errorf("failed insert record: %+v", r)
	}
	refused := false
	for _, r := range recs {
		if r.Outcome == audit.OutcomeRefused && r.SQLState == "0A000" && r.Statement == "SELECT name FROM ? WHERE ? LIKE $1" && strings.Contains(r.Reason, "diagnosis") {
			refused = true
		}
	}
	if !refused {
		t.Errorf("no record of the refused LIKE; records:\n%+v", recs)
	}
}
