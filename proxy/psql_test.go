package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/testenv"
)

// These tests drive the real psql client through the proxy.

// psqlSchema is testSchema plus a plaintext twin of patients, loaded
// straight into PostgreSQL, whose psql output is the oracle.
const psqlSchema = testSchema + `
CREATE TABLE public.plain_patients (id serial PRIMARY KEY, name text NOT NULL, ssn text, diagnosis text);
GRANT ALL ON public.plain_patients TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
`

// psqlPath finds psql; without it the test skips, or fails when the run
// requires its integration tests (PGCLOAK_TEST_REQUIRE=1).
func psqlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("psql")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/psql"); serr == nil {
			return "/usr/bin/psql"
		}
		testenv.Unavailable(t, "psql not found: %v", err)
	}
	return p
}

// psqlResult is what one psql run printed.
type psqlResult struct {
	stdout, stderr string
	exit           int
}

// psqlClient runs psql against one server (the proxy or PostgreSQL).
type psqlClient struct {
	t          *testing.T
	bin        string
	host, port string
	db         string
}

func psqlThroughProxy(t *testing.T, bin string, h *harness) *psqlClient {
	host, port, err := net.SplitHostPort(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	return &psqlClient{t: t, bin: bin, host: host, port: port, db: h.pg.Database}
}

// psqlDirect connects straight to PostgreSQL, as the same roles (which, as
// through the proxy, log in without a password).
func psqlDirect(t *testing.T, bin string, h *harness) *psqlClient {
	return &psqlClient{t: t, bin: bin, host: h.pg.Host, port: strconv.Itoa(h.pg.Port), db: h.pg.Database}
}

// run runs psql as role with args (after the connection options), feeding
// stdin. psqlrc is not read; the environment carries only what psql needs.
func (c *psqlClient) run(role, stdin string, args ...string) psqlResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"-X", "-h", c.host, "-p", c.port, "-U", role, "-d", c.db}, args...)
	cmd := exec.CommandContext(ctx, c.bin, all...)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "PGPASSWORD=unused", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10",
		"PGCLIENTENCODING=UTF8", "LC_ALL=C.UTF-8", "PAGER=", "PSQL_PAGER=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := psqlResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.exit = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("psql: %v", err)
	}
	return res
}

// mustRun is run for a command that must succeed quietly.
func (c *psqlClient) mustRun(role, stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(role, stdin, args...)
	if r.exit != 0 || strings.Contains(r.stderr, "ERROR") {
		c.t.Fatalf("psql %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.exit, r.stdout, r.stderr)
	}
	return r.stdout
}

// psqlRows is the CSV psql loads into patients and plain_patients.
const psqlRows = `Ann,111-22-3333,flu
"Smith, Bob",444-55-6666,"asthma, ""mild"""
Carl,777-88-9999,
Dörte Ünal,123-00-4567,"multi
line	tab \ backslash"
Eve,000-00-0000,""
`

func TestPsqlDescribe(t *testing.T) {
	bin := psqlPath(t)
	h := newHarness(t, testPolicy, testSchema)
	c := psqlThroughProxy(t, bin, h)
	out := c.mustRun("doctor", "", "-c", `\d patients`)
	for _, want := range []string{`Table "public.patients"`, "ssn", "diagnosis", "bytea", "patients_pkey", "patients_ssn_key"} {
		if !strings.Contains(out, want) {
			t.Errorf(`\d patients output lacks %q:\n%s`, want, out)
		}
	}
	// \d with a pattern and \dt list relations through the same catalog queries.
	out = c.mustRun("doctor", "", "-c", `\dt public.*`)
	if !strings.Contains(out, "patients") || !strings.Contains(out, "visits") {
		t.Errorf(`\dt output:\n%s`, out)
	}
	// What psql shows must be what PostgreSQL shows.
	if want := psqlDirect(t, bin, h).mustRun("doctor", "", "-c", `\d patients`); want != c.mustRun("doctor", "", "-c", `\d patients`) {
		t.Errorf(`\d patients through the proxy differs from PostgreSQL's:\nproxy:\n%s\nPostgreSQL:\n%s`, out, want)
	}
}

func TestPsqlCopy(t *testing.T) {
	bin := psqlPath(t)
	h := newHarness(t, testPolicy, psqlSchema)
	ctx := ctxT(t)
	c, d := psqlThroughProxy(t, bin, h), psqlDirect(t, bin, h)

	// \copy FROM STDIN: the rows come from psql's standard input.
	out := c.mustRun("doctor", psqlRows, "-c", `\copy patients (name, ssn, diagnosis) FROM STDIN CSV`)
	if strings.TrimSpace(out) != "COPY 5" {
		t.Errorf("\\copy FROM printed %q, want COPY 5", out)
	}
	d.mustRun("doctor", psqlRows, "-c", `\copy plain_patients (name, ssn, diagnosis) FROM STDIN CSV`)

	// At rest: ciphertext only.
	rows, err := h.direct().Query(ctx, "SELECT name, ssn, diagnosis FROM patients ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var name string
		var ssn, diag []byte
		if err := rows.Scan(&name, &ssn, &diag); err != nil {
			t.Fatal(err)
		}
		n++
		if bytes.Contains(ssn, []byte("-00")) || bytes.Contains(ssn, []byte("-22-")) || len(ssn) < 16 {
			t.Errorf("%s: ssn at rest %x is not ciphertext", name, ssn)
		}
		for _, plain := range []string{"flu", "asthma", "multi", "line"} {
			if bytes.Contains(diag, []byte(plain)) {
				t.Errorf("%s: diagnosis at rest %x holds plaintext", name, diag)
			}
		}
		if name == "Carl" && diag != nil {
			t.Errorf("Carl: empty unquoted CSV field should be NULL, stored %x", diag)
		}
		if name == "Eve" && diag == nil {
			t.Errorf(`Eve: quoted empty CSV field "" should be an empty string, stored NULL`)
		}
	}
	if rows.Err() != nil || n != 5 {
		t.Fatalf("%d rows at rest, err %v", n, rows.Err())
	}

	// \copy TO STDOUT prints plaintext, exactly as PostgreSQL prints the
	// plaintext twin.
	for _, format := range []string{"CSV", "", "(FORMAT csv, HEADER, QUOTE '''', DELIMITER ';')", "(FORMAT text, NULL 'NULL')"} {
		got := c.mustRun("doctor", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT `+format)
		want := d.mustRun("doctor", "", "-c", `\copy plain_patients (name, ssn, diagnosis) TO STDOUT `+format)
		if got != want {
			t.Errorf("\\copy TO STDOUT %s:\nproxy:\n%s\nPostgreSQL:\n%s", format, got, want)
		}
	}
	// Spelled out for the two formats the brief names.
	wantCSV := "Ann,111-22-3333,flu\n\"Smith, Bob\",444-55-6666,\"asthma, \"\"mild\"\"\"\nCarl,777-88-9999,\n" +
		"Dörte Ünal,123-00-4567,\"multi\nline\ttab \\ backslash\"\nEve,000-00-0000,\"\"\n"
	if got := c.mustRun("doctor", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT CSV`); got != wantCSV {
		t.Errorf("\\copy TO STDOUT CSV:\n%q\nwant\n%q", got, wantCSV)
	}
	wantText := "Ann\t111-22-3333\tflu\nSmith, Bob\t444-55-6666\tasthma, \"mild\"\nCarl\t777-88-9999\t\\N\n" +
		"Dörte Ünal\t123-00-4567\tmulti\\nline\\ttab \\\\ backslash\nEve\t000-00-0000\t\n"
	if got := c.mustRun("doctor", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT`); got != wantText {
		t.Errorf("\\copy TO STDOUT (text):\n%q\nwant\n%q", got, wantText)
	}
	// billing has no key for diagnosis: NULL, while ssn shows.
	got := c.mustRun("billing", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT CSV`)
	wantBilling := "Ann,111-22-3333,\n\"Smith, Bob\",444-55-6666,\nCarl,777-88-9999,\nDörte Ünal,123-00-4567,\nEve,000-00-0000,\n"
	if got != wantBilling {
		t.Errorf("billing \\copy TO STDOUT CSV:\n%q\nwant\n%q", got, wantBilling)
	}
	// The text format loads back through the proxy.
	text := c.mustRun("doctor", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT`)
	h.pg.ExecAdmin(t, "TRUNCATE patients")
	c.mustRun("doctor", text, "-c", `\copy patients (name, ssn, diagnosis) FROM STDIN`)
	if again := c.mustRun("doctor", "", "-c", `\copy patients (name, ssn, diagnosis) TO STDOUT`); again != text {
		t.Errorf("text \\copy round trip:\n%q\nwant\n%q", again, text)
	}

	// PostgreSQL's statement log never sees COPY plaintext.
	if h.pg.StatementLogPath != "" {
		c.mustRun("doctor", "Zed,555-12-9876,zzmarker-psqlcopy-41f\n", "-c", `\copy patients (name, ssn, diagnosis) FROM STDIN CSV`)
		out := c.mustRun("doctor", "", "-A", "-t", "-c", "SELECT diagnosis, 'psql-copy-log-fence-8c1' FROM patients WHERE ssn = '555-12-9876'")
		if out != "zzmarker-psqlcopy-41f|psql-copy-log-fence-8c1\n" {
			t.Errorf("marker row reads back as %q", out)
		}
		log := h.pg.AwaitStatement(t, "psql-copy-log-fence-8c1")
		for _, secret := range []string{"555-12-9876", "zzmarker-psqlcopy-41f"} {
			if strings.Contains(log, secret) {
				t.Errorf("the statement log holds plaintext %q", secret)
			}
		}
	}
}

func TestPsqlSelectByRole(t *testing.T) {
	bin := psqlPath(t)
	h := newHarness(t, testPolicy, testSchema)
	c := psqlThroughProxy(t, bin, h)
	c.mustRun("doctor", "", "-c",
		"INSERT INTO patients (name, ssn, diagnosis) VALUES ('Ann', '111-22-3333', 'flu'), ('Bob', '444-55-6666', 'gout')")
	query := "SELECT name, ssn, diagnosis FROM patients ORDER BY name"

	out := c.mustRun("doctor", "", "-A", "-t", "-F", "|", "-c", query)
	if want := "Ann|111-22-3333|flu\nBob|444-55-6666|gout\n"; out != want {
		t.Errorf("doctor sees:\n%s\nwant:\n%s", out, want)
	}
	// The default aligned table too.
	out = c.mustRun("doctor", "", "-c", query)
	for _, want := range []string{"name", "ssn", "diagnosis", "111-22-3333", "flu", "(2 rows)"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor's table lacks %q:\n%s", want, out)
		}
	}
	out = c.mustRun("billing", "", "-A", "-t", "-F", "|", "-c", query)
	if want := "Ann|111-22-3333|\nBob|444-55-6666|\n"; out != want {
		t.Errorf("billing sees:\n%s\nwant:\n%s", out, want)
	}
	// The empty diagnosis is a NULL, not an empty string.
	out = c.mustRun("billing", "", "-A", "-t", "-F", "|", "-P", "null=<NULL>", "-c", query)
	if want := "Ann|111-22-3333|<NULL>\nBob|444-55-6666|<NULL>\n"; out != want {
		t.Errorf("billing sees (null shown as <NULL>):\n%s\nwant:\n%s", out, want)
	}
	// Deterministic equality from psql.
	out = c.mustRun("billing", "", "-A", "-t", "-c", "SELECT name FROM patients WHERE ssn = '444-55-6666'")
	if out != "Bob\n" {
		t.Errorf("billing WHERE ssn = …: %q", out)
	}
}

func TestPsqlRefusedStatementContinues(t *testing.T) {
	bin := psqlPath(t)
	h := newHarness(t, testPolicy, testSchema)
	c := psqlThroughProxy(t, bin, h)
	script := `SELECT pg_backend_pid() AS pid_before \gset
SELECT 'before' AS step;
SELECT name FROM patients WHERE diagnosis LIKE 'fl%';
SELECT 'after' AS step;
INSERT INTO patients (name, ssn, diagnosis) VALUES ('Dora', '999-00-1111', 'cold');
SELECT name FROM patients ORDER BY ssn;
SELECT name, diagnosis FROM patients WHERE ssn = '999-00-1111';
BEGIN;
INSERT INTO patients (name, ssn, diagnosis) VALUES ('Tx', '888-00-1111', 'tx');
SELECT upper(diagnosis) FROM patients;
SELECT 'in aborted transaction';
ROLLBACK;
SELECT count(*) || ' rows' FROM patients;
SELECT (pg_backend_pid() = :pid_before) AS same_session;
`
	file := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.run("doctor", "", "-q", "-v", "ON_ERROR_STOP=0", "-A", "-t", "-f", file)
	if r.exit != 0 {
		t.Errorf("psql exit %d with ON_ERROR_STOP=0", r.exit)
	}
	if want := "before\nafter\nDora|cold\n1 rows\nt\n"; r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	errLines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	var pgcloakErrs []string
	for _, l := range errLines {
		if strings.Contains(l, "ERROR:  pgcloak: ") {
			pgcloakErrs = append(pgcloakErrs, l)
		}
	}
	if len(pgcloakErrs) != 3 {
		t.Fatalf("want 3 pgcloak errors (LIKE, ORDER BY, upper()), stderr:\n%s", r.stderr)
	}
	for i, line := range []int{3, 6, 10} {
		prefix := "psql:" + file + ":" + strconv.Itoa(line) + ": ERROR:  pgcloak: "
		if !strings.HasPrefix(pgcloakErrs[i], prefix) || !strings.Contains(pgcloakErrs[i], "public.patients.") {
			t.Errorf("error %d = %q, want prefix %q naming the column", i, pgcloakErrs[i], prefix)
		}
	}
	if !strings.Contains(r.stderr, "current transaction is aborted") {
		t.Errorf("the refusal inside BEGIN should abort the transaction; stderr:\n%s", r.stderr)
	}

	// A role without the write grant: 42501, and the session goes on.
	r = c.run("billing", "", "-v", "ON_ERROR_STOP=0", "-A", "-t",
		"-c", "UPDATE patients SET diagnosis = 'x'", "-c", "SELECT 'still here'")
	if !strings.Contains(r.stderr, `ERROR:  pgcloak: role "billing" may not write column public.patients.diagnosis`) ||
		r.stdout != "still here\n" {
		t.Errorf("billing UPDATE: exit %d\nstdout:\n%s\nstderr:\n%s", r.exit, r.stdout, r.stderr)
	}

	// With ON_ERROR_STOP=1 psql stops at the refusal with exit status 3.
	r = c.run("doctor", "", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-f", file)
	if r.exit != 3 || r.stdout != "before\n" {
		t.Errorf("ON_ERROR_STOP=1: exit %d, stdout %q; want 3 and only the first result", r.exit, r.stdout)
	}
}
