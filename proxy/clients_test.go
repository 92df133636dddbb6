package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/testenv"
)

// The client matrix (issue 8) runs real drivers through the proxy: pgjdbc,
// psycopg2 and node-postgres, each a small program under clients/ that
// asserts its own expected values, prints one line per check ("ok",
// "FAIL" or "skip", then the check's name: client/group/check) and exits
// non-zero when a check fails. `make clients` (which `make test` runs)
// prepares what the programs need; a missing toolchain skips the client,
// or fails it under PGCLOAK_TEST_REQUIRE=1.
//
// Each client runs twice: through pgcloak, in front of encrypted columns,
// and straight against PostgreSQL on a twin schema whose columns have the
// real types. The second run is the oracle: the values a program expects
// are PostgreSQL's, so a check that passes there and fails through the
// proxy is a pgcloak bug. Checks only pgcloak can pass (refusals, the
// restricted role's view) skip themselves against PostgreSQL.

// clientMatrixSkip lists check groups, checks (client/group/check or just
// the check's name) the programs skip, in addition to the comma-separated
// list in PGCLOAK_MATRIX_SKIP. Groups: core (what every application
// does), regressions (driver findings of issue 8), conversions (binary
// parameters and literals of another type than the column's, converted as
// PostgreSQL converts them) and limitations (what PostgreSQL does and
// pgcloak refuses today). E.g. {"conversions", "limitations"}, or
// PGCLOAK_MATRIX_SKIP=conversions,jdbc/regressions/setDate.
var clientMatrixSkip = []string{}

// cmPolicy encrypts every policy column of people and imports. doctor has
// every key; billing, the restricted role, reads ssn only and writes
// nothing: other encrypted columns read as NULL.
const cmPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: counts, kind: deterministic}
    - {name: notes, kind: randomized}
    - {name: facts, kind: randomized}
  columns:
    - {table: public.people, column: ssn, key: ssn, type: text}
    - {table: public.people, column: note, key: notes, type: text}
    - {table: public.people, column: born, key: facts, type: date}
    - {table: public.people, column: seen_at, key: facts, type: timestamptz}
    - {table: public.people, column: score, key: facts, type: float8}
    - {table: public.people, column: amount, key: facts, type: numeric}
    - {table: public.people, column: visits, key: counts, type: int8}
    - {table: public.people, column: active, key: facts, type: bool}
    - {table: public.people, column: ref, key: facts, type: uuid}
    - {table: public.people, column: doc, key: facts, type: jsonb}
    - {table: public.imports, column: ssn, key: ssn, type: text}
    - {table: public.imports, column: note, key: notes, type: text}
    - {table: public.imports, column: born, key: facts, type: date}
    - {table: public.imports, column: amount, key: facts, type: numeric}
  roles:
    - {role: doctor, read: [ssn, counts, notes, facts], write: [ssn, counts, notes, facts]}
    - {role: billing, read: [ssn], on_denied: "null"}
`

// cmSchema is the schema behind the proxy when enc is "bytea", and its
// plaintext twin otherwise (the real types, for the PostgreSQL run).
func cmSchema(enc bool) string {
	ty := func(real string) string {
		if enc {
			return "bytea"
		}
		return real
	}
	return `
CREATE TABLE public.people (
  id      serial PRIMARY KEY,
  name    text NOT NULL,
  ssn     ` + ty("text") + ` UNIQUE,
  note    ` + ty("text") + `,
  born    ` + ty("date") + `,
  seen_at ` + ty("timestamptz") + `,
  score   ` + ty("float8") + `,
  amount  ` + ty("numeric") + `,
  visits  ` + ty("int8") + `,
  active  ` + ty("bool") + `,
  ref     ` + ty("uuid") + `,
  doc     ` + ty("jsonb") + `
);
CREATE TABLE public.imports (
  id     serial PRIMARY KEY,
  name   text NOT NULL,
  ssn    ` + ty("text") + `,
  note   ` + ty("text") + `,
  born   ` + ty("date") + `,
  amount ` + ty("numeric") + `
);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
`
}

// cmClient is one driver's program and how to start it.
type cmClient struct {
	name string
	// command finds the toolchain (testenv.Unavailable when missing) and
	// returns the command line that runs the program.
	command func(t *testing.T, dir string) []string
}

var cmClients = []cmClient{
	{"jdbc", cmJDBC},
	{"psycopg2", cmPsycopg2},
	{"node", cmNode},
}

func TestClientMatrix(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "clients"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmClients {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			argv := c.command(t, dir)
			t.Run("pgcloak", func(t *testing.T) {
				h := newHarness(t, cmPolicy, cmSchema(true))
				host, port, err := net.SplitHostPort(h.addr)
				if err != nil {
					t.Fatal(err)
				}
				cmRun(t, argv, host, port, h.pg.Database, "pgcloak")
				cmAtRest(t, h)
			})
			t.Run("postgres", func(t *testing.T) {
				pg := testenv.Postgres(t)
				createRoles(t, pg)
				pg.ExecAdmin(t, cmSchema(false))
				cmRun(t, argv, pg.Host, strconv.Itoa(pg.Port), pg.Database, "postgres")
			})
		})
	}
}

var cmLine = regexp.MustCompile(`(?m)^(ok|FAIL|skip) +([^\s:]+)`)

// cmRun runs one client program against host:port/db and fails t (going
// on) when it exits non-zero or reports no check; its output is in the
// test log.
func cmRun(t *testing.T, argv []string, host, port, db, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var env []string
	for _, kv := range os.Environ() {
		// libpq's and the drivers' own variables would steer the programs
		// elsewhere; the connection is what MATRIX_* says.
		if strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "PGCLOAK_") {
			continue
		}
		if strings.HasPrefix(kv, "TZ=") || strings.HasPrefix(kv, "MATRIX_") {
			continue
		}
		env = append(env, kv)
	}
	skip := append([]string(nil), clientMatrixSkip...)
	if s := os.Getenv("PGCLOAK_MATRIX_SKIP"); s != "" {
		skip = append(skip, s)
	}
	cmd.Env = append(env,
		"MATRIX_HOST="+host, "MATRIX_PORT="+port, "MATRIX_DB="+db,
		"MATRIX_USER=doctor", "MATRIX_RESTRICTED_USER=billing",
		"MATRIX_TARGET="+target, "MATRIX_SKIP="+strings.Join(skip, ","),
		"TZ=UTC", "PGCONNECT_TIMEOUT=10")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	output := out.String()
	t.Logf("%s (%s):\n%s", strings.Join(argv, " "), time.Since(start).Round(time.Millisecond), output)
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("timed out after %s", time.Since(start).Round(time.Second))
		return
	case errors.As(err, &ee):
		var failed []string
		for _, m := range cmLine.FindAllStringSubmatch(output, -1) {
			if m[1] == "FAIL" {
				failed = append(failed, m[2])
			}
		}
		t.Errorf("exit %d; failed checks: %s", ee.ExitCode(), strings.Join(failed, " "))
		return
	case err != nil:
		t.Errorf("%s: %v", argv[0], err)
		return
	}
	if len(cmLine.FindAllString(output, -1)) == 0 {
		t.Error("the program reported no check")
	}
}

// cmAtRest checks that the clients' plaintext never reached PostgreSQL:
// every value they write in an encrypted text column starts "mxssn-" (ssn)
// or "note " (note).
func cmAtRest(t *testing.T, h *harness) {
	t.Helper()
	ctx := ctxT(t)
	for _, table := range []string{"people", "imports"} {
		var n int
		err := h.direct().QueryRow(ctx, "SELECT count(*) FROM "+table+
			" WHERE position('mxssn-'::bytea in ssn) > 0 OR position('note '::bytea in note) > 0").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows of %s hold plaintext in an encrypted column", n, table)
		}
		var rows int
		if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE ssn IS NOT NULL").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 0 {
			t.Errorf("%s: no rows with an ssn; the client wrote nothing?", table)
		}
	}
}

// cmJDBC runs Matrix.java as a single-file source program (Java 11+)
// against Debian's pgjdbc jar.
func cmJDBC(t *testing.T, dir string) []string {
	java := cmLook(t, "java", "/usr/bin/java")
	if out, err := exec.Command(java, "-version").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "java -version: %v\n%s", err, out)
	} else if m := regexp.MustCompile(`version "(\d+)`).FindSubmatch(out); m == nil {
		testenv.Unavailable(t, "java -version: no version in %q", out)
	} else if v, _ := strconv.Atoi(string(m[1])); v < 11 {
		testenv.Unavailable(t, "java %d cannot run single-file source programs (11+ needed)", v)
	}
	jar := os.Getenv("PGCLOAK_PGJDBC_JAR")
	if jar == "" {
		jar = "/usr/share/java/postgresql.jar"
	}
	if _, err := os.Stat(jar); err != nil {
		testenv.Unavailable(t, "pgjdbc: %v (apt-get install libpostgresql-jdbc-java, or set PGCLOAK_PGJDBC_JAR)", err)
	}
	return []string{java, "-Duser.timezone=UTC", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", jar, filepath.Join(dir, "jdbc", "Matrix.java")}
}

// cmPsycopg2 runs matrix.py with Debian's python3 and python3-psycopg2
// (not whatever python3 comes first on PATH, which may lack psycopg2).
func cmPsycopg2(t *testing.T, dir string) []string {
	py := os.Getenv("PGCLOAK_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import psycopg2").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "%s with psycopg2: %v\n%s(apt-get install python3-psycopg2)", py, err, out)
	}
	return []string{py, filepath.Join(dir, "python", "matrix.py")}
}

// cmNode runs matrix.js with node-postgres from clients/node/node_modules
// (`make clients` runs npm ci there).
func cmNode(t *testing.T, dir string) []string {
	node := cmLook(t, "node", "/usr/bin/node")
	for _, mod := range []string{"pg", "pg-copy-streams"} {
		if _, err := os.Stat(filepath.Join(dir, "node", "node_modules", mod, "package.json")); err != nil {
			testenv.Unavailable(t, "node module %s: %v (run make clients)", mod, err)
		}
	}
	return []string{node, filepath.Join(dir, "node", "matrix.js")}
}

func cmLook(t *testing.T, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	testenv.Unavailable(t, "%s not found", name)
	return ""
}
