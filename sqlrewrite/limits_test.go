package sqlrewrite

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// nestingConstruct builds SQL whose parse tree grows with n.
type nestingConstruct struct {
	name  string
	build func(n int) string
}

// repeatJoin is prefix + n copies of unit + suffix.
func repeatJoin(prefix, unit string, n int, suffix string) string {
	return prefix + strings.Repeat(unit, n) + suffix
}

// nested is open×n + core + close×n.
func nested(prefix, open, core, close string, n int) string {
	return prefix + strings.Repeat(open, n) + core + strings.Repeat(close, n)
}

// nestingConstructs are the forms the depth estimate must bound: the
// left-deep chains the grammar reduces as it reads, which nothing else
// bounds, and the right-nested forms bison's stack bounds.
var nestingConstructs = []nestingConstruct{
	// Left-deep chains.
	{"plus chain", func(n int) string { return repeatJoin("SELECT 1", "+1", n, " FROM patients") }},
	{"concat chain", func(n int) string { return repeatJoin("SELECT name", "||'a'", n, " FROM patients") }},
	{"typecast chain", func(n int) string { return repeatJoin("SELECT id", "::int", n, " FROM patients") }},
	{"power chain", func(n int) string { return repeatJoin("SELECT 1", "^1", n, "") }},
	{"unspaced unary ops", func(n int) string { return repeatJoin("SELECT 1*", "-+", n, "1") }},
	{"hex minus chain", func(n int) string { return repeatJoin("SELECT 0x1e", "-0x1e", n, "") }},
	{"is null chain", func(n int) string { return repeatJoin("SELECT id", " IS NULL", n, " FROM patients") }},
	{"collate chain", func(n int) string { return repeatJoin("SELECT name", ` COLLATE "C"`, n, " FROM patients") }},
	{"at time zone chain", func(n int) string { return repeatJoin("SELECT now()", " AT TIME ZONE 'UTC'", n, "") }},
	{"join chain", func(n int) string { return repeatJoin("SELECT 1 FROM patients p0", " JOIN visits v ON true", n, "") }},
	{"join chain on and", func(n int) string {
		return repeatJoin("SELECT 1 FROM patients p0", " JOIN visits v ON a = 1 AND b OR c", n, "")
	}},
	{"join chain using", func(n int) string {
		return repeatJoin("SELECT 1 FROM patients p0", " LEFT JOIN visits USING (a, b)", n, "")
	}},
	{"case then chain", func(n int) string { return repeatJoin("SELECT CASE WHEN a THEN 1", " || 1 WHEN b THEN 2", n, " END") }},
	{"union chain", func(n int) string { return repeatJoin("SELECT 1, 2", " UNION ALL SELECT 1, 2", n, "") }},
	{"union chain with where", func(n int) string {
		return repeatJoin("SELECT 1", " UNION SELECT a FROM t WHERE a AND b OR c", n, "")
	}},
	{"values union chain", func(n int) string { return repeatJoin("VALUES (1, 2)", " EXCEPT VALUES (1, 2), (3, 4)", n, "") }},
	{"operator() chain", func(n int) string { return repeatJoin("SELECT 1", " OPERATOR(pg_catalog.+) 1", n, "") }},
	// Right-nested forms.
	{"parentheses", func(n int) string { return nested("SELECT ", "(", "1", ")", n) }},
	{"right-nested plus", func(n int) string { return nested("SELECT ", "1+(", "1", ")", n) }},
	{"not chain", func(n int) string { return repeatJoin("SELECT ", "NOT ", n, "true") }},
	{"unary minus chain", func(n int) string { return repeatJoin("SELECT ", "- ", n, "1") }},
	{"function calls", func(n int) string { return nested("SELECT ", "abs(", "1", ")", n) }},
	{"array brackets", func(n int) string { return nested("SELECT ARRAY", "[", "1", "]", n) }},
	{"subscripts", func(n int) string { return nested("SELECT ", "a[", "1", "]", n) }},
	{"scalar subqueries", func(n int) string { return nested("SELECT ", "(SELECT ", "1", ")", n) }},
	{"from subqueries", func(n int) string { return nested("", "SELECT * FROM (", "SELECT 1", ") s", n) }},
	{"exists subqueries", func(n int) string { return nested("SELECT 1 WHERE ", "EXISTS (SELECT 1 WHERE ", "true", ")", n) }},
	{"ctes", func(n int) string { return nested("", "WITH a AS (", "SELECT 1", ") SELECT 1", n) }},
	{"case", func(n int) string { return nested("SELECT ", "CASE WHEN true THEN ", "1", " END", n) }},
	{"case on t.end", func(n int) string { return nested("SELECT ", "CASE WHEN t.end THEN ", "1", " END", n) }},
	{"or of and", func(n int) string { return nested("SELECT 1 WHERE ", "(a OR b AND ", "c", ")", n) }},
	{"between", func(n int) string { return nested("SELECT 1 WHERE ", "a BETWEEN 1 AND (", "2", ")", n) }},
	{"in lists", func(n int) string { return nested("SELECT 1 WHERE ", "a IN (", "1", ")", n) }},
	{"window order by", func(n int) string {
		return nested("SELECT ", "sum(1) OVER (ORDER BY ", "1", ")", n)
	}},
	{"within group", func(n int) string {
		return nested("SELECT ", "percentile_cont(0.5) WITHIN GROUP (ORDER BY ", "1", ")", n)
	}},
	{"filter", func(n int) string { return nested("SELECT ", "count(*) FILTER (WHERE ", "true", ")", n) }},
	{"row constructors", func(n int) string { return nested("SELECT ", "ROW(1, ", "1", ")", n) }},
	{"named arguments", func(n int) string { return nested("SELECT ", "f(a => ", "1", ")", n) }},
	// Mixed: half nesting, half a chain inside.
	{"calls around a chain", func(n int) string {
		return nested("SELECT ", "abs(", repeatJoin("1", "+1", n, ""), ")", n)
	}},
	{"subqueries around a chain", func(n int) string {
		return nested("SELECT ", "(SELECT ", repeatJoin("1", "||'a'", n, ""), ")", n)
	}},
}

// messageDepth is the deepest nesting of protobuf messages under m: the
// recursion depth of pg_query's serialisation, which is what overflows.
func messageDepth(m protoreflect.Message) int {
	deepest := 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				deepest = max(deepest, messageDepth(v.List().Get(i).Message()))
			}
		default:
			deepest = max(deepest, messageDepth(v.Message()))
		}
		return true
	})
	return deepest + 1
}

// treeSlack is how much deeper than the estimate a parsed tree may be:
// the statement's own few levels (RawStmt, SelectStmt, ResTarget).
const treeSlack depthUnits = 4

// TestLimitDepthEstimateBoundsTree: the estimate stays at or above the
// depth of the tree pg_query builds, for every construct and size; a
// construct it underestimated could get past maxTreeDepth deeper than
// measured safe.
func TestLimitDepthEstimateBoundsTree(t *testing.T) {
	for _, c := range nestingConstructs {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range []int{1, 2, 5, 20, 100, 300} {
				sql := c.build(n)
				tree, err := pg_query.Parse(sql)
				if err != nil {
					t.Fatalf("n=%d does not parse: %v", n, err)
				}
				real := depthUnits(messageDepth(tree.ProtoReflect()) / 2)
				est := measureCost(sql, len(sql)).depth
				if est <= maxTreeDepth && est+treeSlack < real {
					t.Errorf("n=%d: estimate %d, tree %d units deep", n, est, real)
				}
				if n == 300 {
					t.Logf("n=%d: estimate %d, tree %d (ratio %.2f)", n, est, real, float64(est)/float64(real))
				}
			}
		})
	}
}

// chainOf is "SELECT 1" followed by n copies of op+"1", a left-deep chain
// n deep.
func chainOf(op string, n int) string { return repeatJoin("SELECT 1", op+"1", n, "") }

// inList is an IN list of n items on a plain column of an encrypted
// table, so that it takes the full analysis.
func inList(n int) string {
	return repeatJoin("SELECT id FROM patients WHERE id IN (1", ",1", n-1, ")")
}

// limitCase is one statement for Limits.check: code "" is accepted.
type limitCase struct {
	name   string
	sql    string
	limits Limits
	code   string
}

func limitCases() []limitCase {
	const tooDeep, tooLarge = CodeStatementTooComplex, CodeProgramLimitExceeded
	deep := int(maxTreeDepth) + 100
	return []limitCase{
		// The report: 30,000 terms crash pg_query.
		{name: "plus chain of the report", sql: chainOf("+", 30000), code: tooDeep},
		{name: "plus chain under the limit", sql: chainOf("+", 900)},
		{name: "concat chain", sql: chainOf("||", deep), code: tooDeep},
		{name: "typecast chain", sql: repeatJoin("SELECT 1", "::int", deep, ""), code: tooDeep},
		{name: "not chain", sql: repeatJoin("SELECT ", "NOT ", deep, "true"), code: tooDeep},
		{name: "unary minus chain", sql: repeatJoin("SELECT ", "- ", deep, "1"), code: tooDeep},
		{name: "unary ops in one operator run", sql: "SELECT 1*" + strings.Repeat("-+", deep) + "1", code: tooDeep},
		{name: "parentheses", sql: nested("SELECT ", "(", "1", ")", deep), code: tooDeep},
		{name: "brackets", sql: nested("SELECT ARRAY", "[", "1", "]", deep), code: tooDeep},
		{name: "case", sql: nested("SELECT ", "CASE WHEN true THEN ", "1", " END", deep), code: tooDeep},
		{name: "function calls", sql: nested("SELECT ", "abs(", "1", ")", deep), code: tooDeep},
		{name: "subqueries", sql: nested("SELECT ", "(SELECT ", "1", ")", deep), code: tooDeep},
		{name: "join chain with AND conditions", sql: repeatJoin("SELECT 1 FROM t", " JOIN t ON a AND b", deep, ""), code: tooDeep},
		{name: "union chain", sql: repeatJoin("SELECT 1, 2", " UNION ALL SELECT 1, 2", deep, ""), code: tooDeep},
		{name: "chain after a backslash in a standard string", sql: `SELECT 'x\', ` + strings.Repeat("1+", deep) + "1 --'", code: tooDeep},
		{name: "chain after a junk parameter", sql: "SELECT $1$q$ $q$, " + strings.Repeat("1+", deep) + "1", code: tooDeep},
		{name: "chain after a stray comment end", sql: "SELECT 1 /* a */ */ " + strings.Repeat("+1", deep), code: tooDeep},
		{name: "hex minus chain", sql: repeatJoin("SELECT 0x1e", "-0x1e", deep, ""), code: tooDeep},
		{name: "t.end does not close a case", sql: nested("SELECT ", "CASE WHEN t.end THEN ", "1", " END", deep), code: tooDeep},

		// Flat structures are not deep, however long.
		{name: "1,000-term AND chain", sql: repeatJoin("SELECT 1 FROM patients WHERE id = 0", " AND id = 1", 1000, "")},
		{name: "30,000-term AND and OR chain", sql: repeatJoin("SELECT 1 WHERE a = 0", " AND b = 1 OR c = 2", 15000, "")},
		{name: "CASE of 10,000 branches", sql: repeatJoin("SELECT CASE a", " WHEN 1 THEN 'x' || 'y'", 10000, " END")},
		{name: "10,000 window functions", sql: repeatJoin("SELECT 1", ", sum(a) OVER (PARTITION BY b ORDER BY c)", 10000, " FROM t")},
		{name: "IN list of 100,000 items", sql: inList(100000)},
		{name: "3,000 statements", sql: strings.Repeat("SELECT 1+1+1 UNION SELECT 2; ", 3000)},

		// Depth hidden in strings, comments and quoted names is no depth.
		{name: "parentheses in a string", sql: "SELECT '" + strings.Repeat("(", 5000) + "'"},
		{name: "chain in an E string", sql: `SELECT E'x\', ` + strings.Repeat("1+", 5000) + "1 '"},
		{name: "chain in a dollar-quoted string", sql: "SELECT $q$ $a$ " + strings.Repeat("1+", 5000) + " $q$"},
		{name: "chain in nested comments", sql: "SELECT 1 /* /* */ " + strings.Repeat("+1", 5000) + " */"},
		{name: "chain in a line comment", sql: "SELECT 1 -- " + strings.Repeat("+1", 5000) + "\n"},
		{name: "brackets in a quoted name", sql: `SELECT 1 AS "` + strings.Repeat("[", 5000) + `"`},

		// Size and tokens.
		{name: "over max_statement_bytes", sql: "SELECT '" + strings.Repeat("x", 4096) + "'", limits: Limits{MaxStatementBytes: 4096}, code: tooLarge},
		{name: "at max_statement_bytes", sql: "SELECT '" + strings.Repeat("x", 4096-len("SELECT ''")) + "'", limits: Limits{MaxStatementBytes: 4096}},
		{name: "over the default max_statement_bytes", sql: "SELECT '" + strings.Repeat("x", 1<<20) + "'", code: tooLarge},
		{name: "IN list over the token budget", sql: inList(200000), code: tooLarge},
		{name: "comments over the token budget", sql: strings.Repeat("/**/", 1024) + "SELECT 1", limits: Limits{MaxStatementBytes: 4096}, code: tooLarge},
	}
}

func TestLimitChecks(t *testing.T) {
	for _, tc := range limitCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limits.check(tc.sql)
			wantLimitOutcome(t, err, tc.code)
		})
	}
}

// TestLimitMessages: refusals say what was exceeded, and name the
// setting an operator can change.
func TestLimitMessages(t *testing.T) {
	for sql, want := range map[string]string{
		chainOf("+", 30000): "statement is too complex",
		inList(200000):      "server.max_statement_bytes",
		"SELECT '" + strings.Repeat("x", 1<<20) + "'": "longer than server.max_statement_bytes (1048576)",
	} {
		err := Limits{}.check(sql)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.30s…: error %v does not say %q", sql, err, want)
		}
	}
}

// TestLimitAnalyzeRefuses: every way into the parser is checked first,
// whatever wraps the statement; text that is never parsed is not.
func TestLimitAnalyzeRefuses(t *testing.T) {
	deepChain := strings.Repeat("1+", 30000) + "1"
	small := func(e *Env) { e.Limits.MaxStatementBytes = 4096 }
	long := "'" + strings.Repeat("x", 5000) + "'"
	for _, tc := range []struct {
		name string
		sql  string
		env  func(*Env)
		code string // "" accepted
	}{
		{name: "plain select is not parsed", sql: "SELECT " + deepChain},
		{name: "leading comment", sql: "/* c */ SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "encrypted table", sql: "SELECT " + deepChain + " FROM patients", code: CodeStatementTooComplex},
		{name: "second statement", sql: "SELECT 1; SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "explain", sql: "EXPLAIN SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "prepare", sql: "PREPARE p AS SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "create table as", sql: "CREATE TABLE t AS SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "declare", sql: "DECLARE c CURSOR FOR SELECT " + deepChain, code: CodeStatementTooComplex},
		{name: "sql function body", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT " + deepChain + "; END", code: CodeStatementTooComplex},
		{name: "over the env's max_statement_bytes", sql: "SELECT id FROM patients WHERE name = " + long, env: small, code: CodeProgramLimitExceeded},
		{name: "plain DML over it is not parsed", sql: "SELECT " + long, env: small},
		{name: "IN list over the token budget", sql: inList(200000), code: CodeProgramLimitExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv()
			if tc.env != nil {
				tc.env(env)
			}
			_, err := Analyze(tc.sql, env)
			wantLimitOutcome(t, err, tc.code)
		})
	}
}

// TestLimitScanAdmits: the lexer is C code too; an analyzer whose text
// has not passed the limits does not reach it.
func TestLimitScanAdmits(t *testing.T) {
	a := newAnalyzer("/* */ SELECT "+strings.Repeat("1+", 30000)+"1", testEnv())
	_, err := a.tokens()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeStatementTooComplex {
		t.Fatalf("tokens() = %v, want the limit refusal", err)
	}
}

// ddlScript is about 300 KB of schema: tables, indexes, constraints,
// comments, views and functions.
func ddlScript() string {
	var b strings.Builder
	for i := 0; b.Len() < 300_000; i++ {
		fmt.Fprintf(&b, "CREATE TABLE app.t%d (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n", i)
		for c := 0; c < 12; c++ {
			fmt.Fprintf(&b, "  c%d numeric(12,2) NOT NULL DEFAULT 0 CHECK (c%d >= 0 AND c%d < 1e9),\n", c, c, c)
		}
		fmt.Fprintf(&b, "  note text COLLATE \"C\",\n  created timestamptz NOT NULL DEFAULT now()\n);\n")
		fmt.Fprintf(&b, "CREATE INDEX t%d_created ON app.t%d (created DESC) WHERE note IS NOT NULL;\n", i, i)
		fmt.Fprintf(&b, "COMMENT ON TABLE app.t%d IS 'table %d; it''s generated';\n", i, i)
		fmt.Fprintf(&b, "CREATE VIEW app.v%d AS SELECT id, c0 + c1 * 2 AS total, CASE WHEN c2 > 0 THEN 'pos' ELSE 'zero' END AS sign FROM app.t%d;\n", i, i)
		fmt.Fprintf(&b, "CREATE FUNCTION app.f%d(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $fn$ SELECT x + %d $fn$;\n", i, i)
	}
	return b.String()
}

// TestLimitOrdinaryBigStatements: what bulk loaders and migrations send
// stays within the default limits, through the whole analysis.
func TestLimitOrdinaryBigStatements(t *testing.T) {
	var insert strings.Builder
	insert.WriteString("INSERT INTO patients (id, name, ssn, diagnosis, dob) VALUES ")
	for i := 0; i < 10000; i++ {
		if i > 0 {
			insert.WriteString(", ")
		}
		fmt.Fprintf(&insert, "(%d, 'name %d', 'ssn-%d', 'diag', '2020-01-01')", i, i, i)
	}
	ssnIn := repeatJoin("SELECT id FROM patients WHERE ssn IN ('0'", ", 'x'", 9999, ")")
	and := repeatJoin("SELECT id FROM patients WHERE ssn = 'a'", " AND name = 'b'", 999, "")
	for name, sql := range map[string]string{
		"10,000-row INSERT":    insert.String(),
		"10,000-item IN list":  ssnIn,
		"1,000-term AND chain": and,
		"300 KB of DDL":        ddlScript(),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Analyze(sql, testEnv())
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if _, err := p.Rewrite(fakeEncrypt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// parseChildEnv names the directory of SQL files that
// TestLimitParseChild parses, in a child process: a crash there must not
// take the test binary down.
const parseChildEnv = "PGCLOAK_LIMIT_PARSE_DIR"

// parseSurvived is what the child prints when pg_query returned on every
// file.
const parseSurvived = "pg_query returned on every statement"

// TestLimitParseChild is the child of TestLimitDeepestAcceptedDoesNotCrash:
// it parses each file of the directory, saying which before it starts.
func TestLimitParseChild(t *testing.T) {
	dir := os.Getenv(parseChildEnv)
	if dir == "" {
		// Not started by TestLimitDeepestAcceptedDoesNotCrash: nothing
		// to parse.
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		sql, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("parsing %s\n", e.Name())
		_, err = pg_query.Parse(string(sql))
		fmt.Printf("returned (error: %v)\n", err)
	}
	fmt.Println(parseSurvived)
}

// childStackKiB is the C stack the child runs with besides the default: a
// 1 MiB limit makes the threads' stacks 1 MiB, an eighth of the usual
// 8 MiB, so surviving it shows the margin.
const childStackKiB = 1024

// parseInChild parses each statement in a child process, with the C
// stack limited to stackKiB (0: inherited), and reports whether pg_query
// returned on all of them, with the child's output (which names the
// statement it died on).
func parseInChild(t *testing.T, stmts map[string]string, stackKiB int) (bool, string) {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range stmts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{os.Args[0], "-test.run=^TestLimitParseChild$", "-test.count=1"}
	if stackKiB > 0 {
		// The stack limit must be set before the child starts: glibc
		// sizes thread stacks from it at startup.
		args = append([]string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -s %d && exec "$@"`, stackKiB), "sh"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), parseChildEnv+"="+dir, "GOTRACEBACK=single")
	out, err := cmd.CombinedOutput()
	survived := err == nil && strings.Contains(string(out), parseSurvived)
	return survived, string(out)
}

// deepestAccepted is the largest n for which c.build(n) passes the
// default limits (it grows with n, and is refused for some n).
func deepestAccepted(t *testing.T, c nestingConstruct) int {
	t.Helper()
	accepted := func(n int) bool { return Limits{}.check(c.build(n)) == nil }
	lo, hi := 1, 2
	for accepted(hi) {
		lo, hi = hi, hi*2
		if hi > 1<<20 {
			t.Fatalf("%s is never refused", c.name)
		}
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if accepted(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// TestLimitDeepestAcceptedDoesNotCrash parses the deepest form of each
// construct that the limits let through in a child process, with the
// default stack and with 1 MiB: pg_query must return. The refused chain
// of the report crashes the child, which shows the child can fail.
func TestLimitDeepestAcceptedDoesNotCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes: not with testing.Short")
	}
	control := map[string]string{"report": chainOf("+", 30000)}
	if ok, out := parseInChild(t, control, childStackKiB); ok {
		t.Fatalf("control: the refused 30,000-term chain did not crash the child:\n%.2000s", out)
	}
	deepest := map[string]string{}
	for i, c := range nestingConstructs {
		n := deepestAccepted(t, c)
		deepest[fmt.Sprintf("%02d %s n=%d", i, c.name, n)] = c.build(n)
	}
	for _, stack := range []int{0, childStackKiB} {
		if ok, out := parseInChild(t, deepest, stack); !ok {
			t.Errorf("stack %d KiB (0: default): a statement the limits accept killed pg_query:\n%.3000s", stack, out)
		}
	}
}

// BenchmarkLimitAnalysisCost measures what analysing the costliest shapes
// costs at the default token budget (the numbers in limits.go): run with
// -benchmem; heap-B/input-B is Go allocation per byte of SQL.
func BenchmarkLimitAnalysisCost(b *testing.B) {
	budget, maxBytes := Limits{}.maxTokens(), Limits{}.statementBytes()
	items := budget/2 - 100 // two tokens an item
	var rows strings.Builder
	rows.WriteString("INSERT INTO patients (id, ssn, diagnosis, dob) VALUES ")
	for i := 0; i < budget/10-10 && rows.Len() < maxBytes-100; i++ { // ten tokens a row
		if i > 0 {
			rows.WriteString(", ")
		}
		fmt.Fprintf(&rows, "(%d, 'ssn-%d', 'diag', '2020-01-01')", i, i)
	}
	for _, shape := range []struct{ name, sql string }{
		{"plain IN list", inList(items)},
		{"encrypted IN list", repeatJoin("SELECT id FROM patients WHERE ssn IN ('1'", ",'1'", items-1, ")")},
		{"target list", repeatJoin("SELECT 1", ",1", items-1, " FROM patients")},
		{"multi-row INSERT", rows.String()},
	} {
		b.Run(shape.name, func(b *testing.B) {
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for i := 0; i < b.N; i++ {
				p, err := Analyze(shape.sql, testEnv())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Rewrite(fakeEncrypt); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&m1)
			perByte := float64(m1.TotalAlloc-m0.TotalAlloc) / float64(b.N) / float64(len(shape.sql))
			b.ReportMetric(perByte, "heap-B/input-B")
			b.ReportMetric(float64(len(shape.sql)), "input-B")
		})
	}
}

// wantLimitOutcome checks err: nil for code "", else a refusal with code.
func wantLimitOutcome(t *testing.T, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want SQLSTATE %s", err, code)
	}
}
