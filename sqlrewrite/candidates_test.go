package sqlrewrite

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// candidateCases are search comparisons on deterministic columns, which
// become comparisons with every stored form of the value (candidates).
var candidateCases = []acceptCase{
	{name: "equal literal on the right", sql: `SELECT id FROM patients WHERE ssn = 'a'`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']))`, searches: pSSN},
	{name: "equal literal on the left", sql: `SELECT id FROM patients WHERE 'a' = ssn AND id = 1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>'])) AND id = 1`, searches: pSSN},
	{name: "param on the left with cast", sql: `SELECT id FROM patients p WHERE $1::varchar = p.ssn`,
		want: `SELECT id FROM "public".patients p WHERE (p.ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "not equal param on the left", sql: `SELECT id FROM patients WHERE $1 <> ssn`,
		want: `SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "comments inside the comparison and the column", sql: "SELECT id FROM patients p WHERE p /* x */ . ssn /* c */ IN /* d */ ( 'a' -- e\n , $1 ) AND id = 1",
		want:   "SELECT id FROM \"public\".patients p WHERE (p /* x */ . ssn = ANY(ARRAY['<cands:public.patients.ssn:a>'] || ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) AND id = 1",
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "casts on literals and params", sql: `SELECT id FROM patients WHERE ssn IN ('a'::text, CAST($1 AS varchar(11)), ($2)::text, NULL::text)`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY((ARRAY['<cands:public.patients.ssn:a>'] || ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[]) || (ARRAY[$11, $12, $13, $14, $15, $16, $17, $18]::bytea[] || ARRAY[NULL::bytea])))`,
		params: "$1=" + pSSN + "/r,$2=" + pSSN + "/r,$3..$10=" + pSSN + "/c$1,$11..$18=" + pSSN + "/c$2", searches: pSSN},
	{name: "in with mixed literals params and nulls", sql: `SELECT id FROM patients WHERE ssn IN (NULL, 'a', $2, NULL) AND name = $1`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[NULL::bytea] || (ARRAY['<cands:public.patients.ssn:a>'] || ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[]))) AND name = $1`,
		params: "$1=-,$2=" + pSSN + "/r,$3..$10=" + pSSN + "/c$2", searches: pSSN},
	{name: "not in with a param", sql: `SELECT id FROM patients WHERE ssn NOT IN ($1, 'b')`,
		want: `SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[] || ARRAY['<cands:public.patients.ssn:b>']))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "nested parentheses", sql: `SELECT id FROM patients WHERE (((ssn)) = (('a'))) OR ((ssn) IN (('b'), ($1)))`,
		want:   `SELECT id FROM "public".patients WHERE ((ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']))) OR ((ssn = ANY(ARRAY['<cands:public.patients.ssn:b>'] || ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "no space around the comparison", sql: `SELECT id FROM patients WHERE ssn='a'AND(ssn)<>$1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']))AND(ssn <> ALL(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "equal all and not equal any", sql: `SELECT id FROM patients WHERE ssn = ALL(ARRAY['a', $1]) OR ssn <> ANY(ARRAY['b', NULL])`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']) AND ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) OR (ssn <> ALL(ARRAY['<cands:public.patients.ssn:b>']) OR ssn <> ALL(ARRAY[NULL::bytea]))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "not equal all array", sql: `SELECT id FROM patients WHERE ssn <> ALL (ARRAY['a'])`,
		want: `SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY['<cands:public.patients.ssn:a>']))`, searches: pSSN},
	{name: "some and qualified operator", sql: `SELECT id FROM patients WHERE ssn OPERATOR(pg_catalog.=) SOME (ARRAY[$1])`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "is not distinct from literal on the left", sql: `SELECT id FROM patients WHERE 'a' IS NOT DISTINCT FROM ssn`,
		want: `SELECT id FROM "public".patients WHERE (coalesce(ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']), false))`, searches: pSSN},
	{name: "is distinct from param", sql: `SELECT id FROM patients WHERE ssn IS DISTINCT FROM $1::text`,
		want:   `SELECT id FROM "public".patients WHERE (NOT coalesce(ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]), ssn IS NULL AND (ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])[1] IS NULL))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "is distinct from null is left alone", sql: `SELECT id FROM "public".patients WHERE ssn IS DISTINCT FROM NULL AND ssn IN (NULL)`},
	{name: "one hidden parameter per source and column", sql: `SELECT id FROM patients WHERE ssn = $1 OR ssn IN ($1, 'a') OR ssn IS NOT DISTINCT FROM $1`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) OR (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[] || ARRAY['<cands:public.patients.ssn:a>'])) OR (coalesce(ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]), ssn IS NULL AND (ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])[1] IS NULL))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "param stored and searched", kind: KindUpdate, sql: `UPDATE patients SET ssn = $1 WHERE ssn = $1 AND id = $2`,
		want:   `UPDATE "public".patients SET ssn = $1 WHERE (ssn = ANY(ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[])) AND id = $2`,
		params: "$1=" + pSSN + "/w,$2=-,$3..$10=" + pSSN + "/c$1", writes: pSSN, searches: pSSN},
	{name: "highest parameter counts even when plain", sql: `SELECT id FROM patients WHERE ssn = $1 LIMIT $7`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$8, $9, $10, $11, $12, $13, $14, $15]::bytea[])) LIMIT $7`,
		params: "$1=" + pSSN + "/r,$2=-,$3=-,$4=-,$5=-,$6=-,$7=-,$8..$15=" + pSSN + "/c$1", searches: pSSN},
	{name: "two columns sharing a key get one hidden parameter each", sql: `SELECT 1 FROM patients p JOIN visits v ON v.patient_ssn = p.ssn WHERE p.ssn = $1 AND v.patient_ssn IN ($1)`,
		want:   `SELECT 1 FROM "public".patients p JOIN "public".visits v ON v.patient_ssn = p.ssn WHERE (p.ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) AND (v.patient_ssn = ANY(ARRAY[$10, $11, $12, $13, $14, $15, $16, $17]::bytea[]))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1,$10..$17=" + vSSN + "/c$1", searches: pSSN + "," + vSSN},
	{name: "integer column with signed and cast constants", sql: `SELECT id FROM staff WHERE badge IN (-5, '7'::int8, + 3)`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>'] || (ARRAY['<cands:public.staff.badge:7>'] || ARRAY['<cands:public.staff.badge:3>'])))`, searches: sBadge},
	{name: "in a join condition, a subquery and CASE", sql: `SELECT CASE WHEN v.patient_ssn = 'c' THEN 1 END FROM visits v JOIN patients p ON p.ssn = 'a' WHERE EXISTS (SELECT 1 FROM patients q WHERE q.ssn <> 'b')`,
		want:     `SELECT CASE WHEN (v.patient_ssn = ANY(ARRAY['<cands:public.visits.patient_ssn:c>'])) THEN 1 END FROM "public".visits v JOIN "public".patients p ON (p.ssn = ANY(ARRAY['<cands:public.patients.ssn:a>'])) WHERE EXISTS (SELECT 1 FROM "public".patients q WHERE (q.ssn <> ALL(ARRAY['<cands:public.patients.ssn:b>'])))`,
		searches: pSSN + "," + vSSN},
	// Forms that keep the one ciphertext of the primary version.
	{name: "join of two columns stays", sql: `SELECT 1 FROM "public".patients p, "public".visits v WHERE p.ssn = v.patient_ssn AND p.ssn IN (v.patient_ssn)`},
	{name: "row comparison keeps one ciphertext", sql: `SELECT id FROM patients WHERE (ssn, name) = ('a', 'b')`,
		want: `SELECT id FROM "public".patients WHERE (ssn, name) = ('<enc:public.patients.ssn:a>', 'b')`, searches: pSSN},
	{name: "constant compared with a list of columns keeps one ciphertext", sql: `SELECT 1 FROM patients p, visits v WHERE 'x' IN (p.ssn, v.patient_ssn)`,
		want: `SELECT 1 FROM "public".patients p, "public".visits v WHERE '<enc:public.patients.ssn:x>' IN (p.ssn, v.patient_ssn)`, searches: pSSN + "," + vSSN},
	{name: "scalar subquery keeps one ciphertext", sql: `SELECT 1 FROM visits WHERE (SELECT ssn FROM patients LIMIT 1) = 'x'`,
		want: `SELECT 1 FROM "public".visits WHERE (SELECT ssn FROM "public".patients LIMIT 1) = '<enc:public.patients.ssn:x>'`, searches: pSSN},
	{name: "multi-statement", sql: "SELECT 1 FROM patients WHERE ssn = 'a';\nSELECT 2 FROM visits WHERE patient_ssn NOT IN ('b', 'c'); SELECT 3",
		want:     "SELECT 1 FROM \"public\".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']));\nSELECT 2 FROM \"public\".visits WHERE (patient_ssn <> ALL(ARRAY['<cands:public.visits.patient_ssn:b>'] || ARRAY['<cands:public.visits.patient_ssn:c>'])); SELECT 3",
		searches: pSSN},
}

func TestCandidateComparisons(t *testing.T) {
	for _, tc := range candidateCases {
		t.Run(tc.name, func(t *testing.T) { runAccept(t, tc) })
	}
}

// TestCandidateRewritesParse renders candidates as the proxy does and
// checks that PostgreSQL's parser takes the result.
func TestCandidateRewritesParse(t *testing.T) {
	for _, tc := range candidateCases {
		p := mustAnalyze(t, tc.sql, testEnv())
		out, err := p.Rewrite(func(l *Literal) (string, error) {
			if l.Candidates {
				return `ARRAY['\x01'::bytea, '\x02'::bytea]`, nil
			}
			return `'\x01'::bytea`, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pg_query.Parse(out); err != nil {
			t.Errorf("%s: %v\n%s", tc.name, err, out)
		}
	}
}

func TestCandidateRefusals(t *testing.T) {
	for _, tc := range []refuseCase{
		{name: "randomized in list", sql: `SELECT 1 FROM patients WHERE diagnosis IN ('a', $1)`, code: na, column: pDiag},
		{name: "randomized is distinct from", sql: `SELECT 1 FROM patients WHERE dob IS DISTINCT FROM $1`, code: na, column: pDOB},
		{name: "cast of a param to a type without conversion", sql: `SELECT 1 FROM patients WHERE ssn IN ('a', $1::interval)`, code: na, column: pSSN, contains: "interval"},
		{name: "cast of a literal to a type without conversion", sql: `SELECT 1 FROM patients WHERE ssn <> '1'::inet`, code: na, column: pSSN},
		{name: "param cast differently in two places", sql: `SELECT 1 FROM patients WHERE ssn IN ($1::varchar(3), $1)`, code: na, column: pSSN, contains: "cast differently"},
		{name: "param both plain and searched", sql: `SELECT 1 FROM patients WHERE ssn = $1 OR name = $1`, code: na, column: pSSN, contains: "plain"},
		{name: "list with a plain column", sql: `SELECT 1 FROM patients WHERE ssn NOT IN ($1, name)`, code: na, column: pSSN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Analyze(tc.sql, testEnv())
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Column != tc.column || !strings.Contains(e.Message, tc.contains) {
				t.Fatalf("err = %v, want %s naming %q containing %q", err, tc.code, tc.column, tc.contains)
			}
		})
	}
}

// preparedFrom analyzes PREPARE text and returns an Env whose Prepared
// finds it, as the proxy's would.
func preparedFrom(t *testing.T, prepare string) (*Env, *Prepared) {
	t.Helper()
	p := mustAnalyze(t, prepare, testEnv())
	prep := p.Statements[0].Prepare
	env := testEnv()
	env.Prepared = func(name string) (*Prepared, bool) {
		if name == prep.Name {
			return prep, true
		}
		return nil, false
	}
	return env, prep
}

func TestPrepareExecuteCandidates(t *testing.T) {
	for _, tc := range []struct {
		name, prepare, wantPrepare string
		params                     string
		clientParams               int
		execute, wantExecute       string
	}{
		{name: "no type list: encrypted parameters get declared",
			prepare:     `PREPARE q AS SELECT id FROM patients WHERE name = $1 AND ssn = $2`,
			wantPrepare: `PREPARE q(unknown, bytea) AS SELECT id FROM "public".patients WHERE name = $1 AND (ssn = ANY(ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[]))`,
			params:      "$1=-,$2=" + pSSN + "/r,$3..$10=" + pSSN + "/c$2", clientParams: 2,
			execute:     `EXECUTE q('n', 'x')`,
			wantExecute: `EXECUTE q('n', '<enc:public.patients.ssn:x>', '<slots8:public.patients.ssn:x>')`},
		{name: "short type list is completed",
			prepare:     `PREPARE q (int) AS SELECT id FROM patients WHERE id = $1 AND ssn IN ($3, $2)`,
			wantPrepare: `PREPARE q (int, bytea, bytea) AS SELECT id FROM "public".patients WHERE id = $1 AND (ssn = ANY(ARRAY[$4, $5, $6, $7, $8, $9, $10, $11]::bytea[] || ARRAY[$12, $13, $14, $15, $16, $17, $18, $19]::bytea[]))`,
			params:      "$1=-,$2=" + pSSN + "/r,$3=" + pSSN + "/r,$4..$11=" + pSSN + "/c$3,$12..$19=" + pSSN + "/c$2", clientParams: 3,
			execute:     `EXECUTE q(1, NULL::text, 'y')`,
			wantExecute: `EXECUTE q(1, NULL, '<enc:public.patients.ssn:y>', '<slots8:public.patients.ssn:y>', NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea)`},
		{name: "longer type list numbers hidden parameters after it",
			prepare:     `PREPARE q (text, int, int) AS UPDATE patients SET name = 'n' WHERE ssn = $1 AND id = $2`,
			wantPrepare: `PREPARE q (bytea, int, int) AS UPDATE "public".patients SET name = 'n' WHERE (ssn = ANY(ARRAY[$4, $5, $6, $7, $8, $9, $10, $11]::bytea[])) AND id = $2`,
			params:      "$1=" + pSSN + "/r,$2=-,$3=-,$4..$11=" + pSSN + "/c$1", clientParams: 3,
			execute:     `EXECUTE q ( 'x' , 1, 2 ) -- done`,
			wantExecute: `EXECUTE q ( '<enc:public.patients.ssn:x>' , 1, 2 , '<slots8:public.patients.ssn:x>') -- done`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustAnalyze(t, tc.prepare, testEnv())
			if got := mustRewrite(t, p); got != tc.wantPrepare {
				t.Errorf("prepare\n got: %s\nwant: %s", got, tc.wantPrepare)
			}
			env, prep := preparedFrom(t, tc.prepare)
			if got := paramNames(prep.Params); got != tc.params || prep.ClientParams != tc.clientParams {
				t.Errorf("prepared params %s (client %d), want %s (%d)", got, prep.ClientParams, tc.params, tc.clientParams)
			}
			if len(p.Params) != 0 {
				t.Errorf("PREPARE itself has parameters %s", paramNames(p.Params))
			}
			e := mustAnalyze(t, tc.execute, env)
			if got := mustRewrite(t, e); got != tc.wantExecute {
				t.Errorf("execute\n got: %s\nwant: %s", got, tc.wantExecute)
			}
			if ruleNames(e.Statements[0].Searches) != pSSN {
				t.Errorf("execute searches %s", ruleNames(e.Statements[0].Searches))
			}
		})
	}
}

func TestExecuteCandidatesRefusals(t *testing.T) {
	env, _ := preparedFrom(t, `PREPARE q AS SELECT id FROM patients WHERE ssn = $1`)
	for sql, code := range map[string]string{
		`EXECUTE q`:                CodeSyntaxError,
		`EXECUTE q('a', 'b')`:      CodeSyntaxError,
		`EXECUTE q(lower('a'))`:    CodeFeatureNotSupported,
		`EXECUTE q(ARRAY['a'])`:    CodeFeatureNotSupported,
		`EXECUTE q('1'::interval)`: CodeFeatureNotSupported,
	} {
		_, err := Analyze(sql, env)
		var e *Error
		if !errors.As(err, &e) || e.Code != code {
			t.Errorf("%s: err = %v, want %s", sql, err, code)
		}
	}
	// Inside CREATE TABLE AS and EXPLAIN the arguments are found too.
	for sql, want := range map[string]string{
		`EXPLAIN EXECUTE q('a')`:                              `EXPLAIN EXECUTE q('<enc:public.patients.ssn:a>', '<slots8:public.patients.ssn:a>')`,
		`CREATE TABLE execute AS EXECUTE q('a') WITH NO DATA`: `CREATE TABLE execute AS EXECUTE q('<enc:public.patients.ssn:a>', '<slots8:public.patients.ssn:a>') WITH NO DATA`,
	} {
		if got := mustRewrite(t, mustAnalyze(t, sql, env)); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

func TestSetClientParams(t *testing.T) {
	p := mustAnalyze(t, `SELECT id FROM patients WHERE ssn = $1 AND id = $2`, testEnv())
	if p.ClientParams != 2 || len(p.Hidden()) != CandidateSlots || p.Hidden()[0].Source != 1 || !p.Hidden()[0].Candidates {
		t.Fatalf("plan params %s, client %d", paramNames(p.Params), p.ClientParams)
	}
	// A Parse declaring four parameter types: hidden ones move after them.
	p.SetClientParams(4)
	if got, want := paramNames(p.Params), "$1="+pSSN+"/r,$2=-,$3=-,$4=-,$5..$12="+pSSN+"/c$1"; got != want || p.ClientParams != 4 {
		t.Errorf("params %s (client %d), want %s", got, p.ClientParams, want)
	}
	if got, want := mustRewrite(t, p), `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$5, $6, $7, $8, $9, $10, $11, $12]::bytea[])) AND id = $2`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	p.SetClientParams(3) // fewer: no change
	if p.ClientParams != 4 {
		t.Errorf("ClientParams = %d", p.ClientParams)
	}
	plain := mustAnalyze(t, `INSERT INTO patients (ssn) VALUES ($1)`, testEnv())
	plain.SetClientParams(3)
	if plain.ClientParams != 0 || len(plain.Params) != 1 || plain.Hidden() != nil {
		t.Errorf("plan without hidden parameters changed: %s, %d", paramNames(plain.Params), plain.ClientParams)
	}
	if !p.Touches() {
		t.Error("Touches() = false")
	}
}

// TestLongInListNestsConcatenation: a chain of thousands of || would
// exhaust PostgreSQL's stack; the nesting depth stays logarithmic.
func TestLongInListNestsConcatenation(t *testing.T) {
	var b strings.Builder
	b.WriteString("SELECT id FROM patients WHERE ssn IN (")
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'x'")
	}
	b.WriteString(")")
	out := mustRewrite(t, mustAnalyze(t, b.String(), testEnv()))
	depth, maxDepth := 0, 0
	for _, c := range out {
		switch c {
		case '(':
			depth++
			maxDepth = max(maxDepth, depth)
		case ')':
			depth--
		}
	}
	if maxDepth > 20 || strings.Count(out, "<cands") != 5000 {
		t.Errorf("depth %d, %d candidates", maxDepth, strings.Count(out, "<cands"))
	}
}

// TestExplainExecuteEncryptsArguments: EXPLAIN EXECUTE and CREATE TABLE
// AS EXECUTE name no relation, yet their arguments may be bound for
// encrypted columns and must not reach PostgreSQL in plaintext.
func TestExplainExecuteEncryptsArguments(t *testing.T) {
	env := testEnv()
	env.Prepared = testPrepared
	for sql, want := range map[string]string{
		`EXPLAIN ANALYZE EXECUTE byssn('123')`:       `EXPLAIN ANALYZE EXECUTE byssn('<enc:public.patients.ssn:123>')`,
		`CREATE TABLE t AS EXECUTE add(1, 'x', 'y')`: `CREATE TABLE t AS EXECUTE add(1, '<encw:public.patients.ssn:x>', '<encw:public.patients.diagnosis:y>')`,
	} {
		p := mustAnalyze(t, sql, env)
		if got := mustRewrite(t, p); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	// Review regression: one level deeper, the EXECUTE was not analysed
	// and its argument went upstream in plaintext. Now it is, and the
	// copy of encrypted columns into a new table is refused.
	if _, err := Analyze(`EXPLAIN CREATE TABLE t AS EXECUTE byssn('123')`, env); err == nil || !strings.Contains(err.Error(), "CREATE TABLE AS would copy encrypted column") {
		t.Errorf("EXPLAIN CREATE TABLE AS EXECUTE: %v", err)
	}
}

// A single-value parameter's candidates go in CandidateSlots hidden bytea
// parameters, Slot 0 to 7, written as a fixed-arity ARRAY (a plan
// PostgreSQL can keep generic); an array parameter keeps one bytea[].
func TestCandidateSlots(t *testing.T) {
	p := mustAnalyze(t, `SELECT id FROM patients WHERE ssn = $1 OR ssn IS NOT DISTINCT FROM $1 OR ssn = ANY($2::text[])`, testEnv())
	want := `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[])) OR ` +
		`(coalesce(ssn = ANY(ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[]), ssn IS NULL AND (ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[])[1] IS NULL)) OR ` +
		`(ssn = ANY($11::bytea[]))`
	if got := mustRewrite(t, p); got != want {
		t.Errorf("rewrite\n got: %s\nwant: %s", got, want)
	}
	if p.ClientParams != 2 || len(p.Hidden()) != CandidateSlots+1 {
		t.Fatalf("params %s, client %d", paramNames(p.Params), p.ClientParams)
	}
	for k, h := range p.Hidden()[:CandidateSlots] {
		if h.Source != 1 || h.Slot != k || !h.Candidates || h.Array || h.Rule.Name() != pSSN {
			t.Errorf("hidden $%d = %+v, want slot %d of $1", 3+k, *h, k)
		}
	}
	if h := p.Hidden()[CandidateSlots]; h.Source != 2 || h.Slot != 0 || !h.Candidates || !h.Array {
		t.Errorf("hidden $11 = %+v, want the array $2's", *h)
	}

	// An SQL PREPARE numbers the slots after EXECUTE's arguments; EXECUTE
	// passes them as one constant rendering all eight.
	env, prep := preparedFrom(t, `PREPARE q AS SELECT id FROM patients WHERE ssn <> $1`)
	if got := paramNames(prep.Params); got != "$1="+pSSN+"/r,$2..$9="+pSSN+"/c$1" {
		t.Errorf("prepared params %s", got)
	}
	if got, want := mustRewrite(t, mustAnalyze(t, `PREPARE q AS SELECT id FROM patients WHERE ssn <> $1`, testEnv())),
		`PREPARE q(bytea) AS SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`; got != want {
		t.Errorf("prepare\n got: %s\nwant: %s", got, want)
	}
	e := mustAnalyze(t, `EXECUTE q('x')`, env)
	if got, want := mustRewrite(t, e), `EXECUTE q('<enc:public.patients.ssn:x>', '<slots8:public.patients.ssn:x>')`; got != want {
		t.Errorf("execute\n got: %s\nwant: %s", got, want)
	}
	e = mustAnalyze(t, `EXECUTE q(NULL)`, env)
	if got, want := mustRewrite(t, e), `EXECUTE q(NULL, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea, NULL::bytea)`; got != want {
		t.Errorf("execute NULL\n got: %s\nwant: %s", got, want)
	}
}

// The slots count against the 65535 parameters a Bind can carry.
func TestCandidateSlotsParameterLimit(t *testing.T) {
	n := maxParams/(CandidateSlots+1) + 1
	var b strings.Builder
	b.WriteString(`SELECT id FROM patients WHERE ssn IN (`)
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i)
	}
	b.WriteString(")")
	_, err := Analyze(b.String(), testEnv())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeProgramLimitExceeded {
		t.Fatalf("err = %v, want %s", err, CodeProgramLimitExceeded)
	}
}
