package sqlrewrite

import (
	"errors"
	"slices"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// arrayParamCases compare a deterministic column with an array parameter
// (= ANY($n), <> ALL($n)): the comparison is with a hidden bytea[] of the
// candidates of every element, and $n itself leaves the SQL.
var arrayParamCases = []acceptCase{
	{name: "equal any", sql: `SELECT id FROM patients WHERE ssn = ANY($1)`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "equal any with an array cast", sql: `SELECT id FROM patients WHERE ssn = ANY($1::text[]) AND id > 0`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($2::bytea[])) AND id > 0`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "some with CAST and a qualified column", sql: `SELECT id FROM patients p WHERE p.ssn = SOME (CAST($1 AS varchar(11)[]))`,
		want:   `SELECT id FROM "public".patients p WHERE (p.ssn = ANY($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "not equal all", sql: `SELECT id FROM patients WHERE ssn <> ALL ($1)`,
		want:   `SELECT id FROM "public".patients WHERE (ssn <> ALL($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "qualified operator and parentheses", sql: `SELECT id FROM patients WHERE ((ssn)) OPERATOR(pg_catalog.=) ANY (($1)::text[][])`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "one hidden parameter for both uses", sql: `SELECT id FROM patients WHERE ssn = ANY($1) OR ssn <> ALL($1)`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($2::bytea[])) OR (ssn <> ALL($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "with a single-value parameter", sql: `SELECT id FROM patients WHERE ssn = ANY($2) OR ssn = $1 LIMIT $3`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($4::bytea[])) OR (ssn = ANY(ARRAY[$5, $6, $7, $8, $9, $10, $11, $12]::bytea[])) LIMIT $3`,
		params: "$1=" + pSSN + "/r,$2=" + pSSN + "/r[],$3=-,$4=" + pSSN + "/c$2[],$5..$12=" + pSSN + "/c$1", searches: pSSN},
	{name: "two columns sharing a key", sql: `SELECT 1 FROM patients p JOIN visits v ON v.patient_ssn = p.ssn WHERE p.ssn = ANY($1) AND v.patient_ssn = ANY($1)`,
		want:   `SELECT 1 FROM "public".patients p JOIN "public".visits v ON v.patient_ssn = p.ssn WHERE (p.ssn = ANY($2::bytea[])) AND (v.patient_ssn = ANY($3::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[],$3=" + vSSN + "/c$1[]", searches: pSSN + "," + vSSN},
	{name: "integer column", sql: `SELECT id FROM staff WHERE badge = ANY($1::int8[])`,
		want:   `SELECT id FROM "public".staff WHERE (badge = ANY($2::bytea[]))`,
		params: "$1=" + sBadge + "/r[],$2=" + sBadge + "/c$1[]", searches: sBadge},
	{name: "in DELETE", kind: KindDelete, sql: `DELETE FROM patients WHERE ssn = ANY($1)`,
		want:   `DELETE FROM "public".patients WHERE (ssn = ANY($2::bytea[]))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "plain column keeps a plain parameter", sql: `SELECT id FROM patients WHERE name = ANY($1::text[])`,
		want: `SELECT id FROM "public".patients WHERE name = ANY($1::text[])`},
	// Array constants, as pgx's simple protocol sends an array argument.
	{name: "array constant", sql: `SELECT id FROM patients WHERE ssn = ANY('{"a","b"}')`,
		want:     `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<elemcands:` + pSSN + `:{"a","b"}:[]>']))`,
		searches: pSSN},
	{name: "array constant with casts, not equal all", sql: `SELECT id FROM staff WHERE badge <> ALL (E'{1,\\0402}'::numeric(5,1)[]::int8[])`,
		want:     `SELECT id FROM "public".staff WHERE (badge <> ALL(ARRAY['<elemcands:` + sBadge + `:{1,\0402}:[{1700 [5 1]} {20 []}]>']))`,
		searches: sBadge},
	{name: "array constant and array parameter", sql: `SELECT id FROM patients WHERE ssn = ANY($1) OR ssn = SOME ('{}')`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY($2::bytea[])) OR (ssn = ANY(ARRAY['<elemcands:` + pSSN + `:{}:[]>']))`,
		params: "$1=" + pSSN + "/r[],$2=" + pSSN + "/c$1[]", searches: pSSN},
	{name: "NULL array", sql: `SELECT id FROM patients WHERE ssn = ANY(NULL) OR ssn <> ALL(NULL::text[])`,
		want:     `SELECT id FROM "public".patients WHERE (ssn = ANY(NULL::bytea[])) OR (ssn <> ALL(NULL::bytea[]))`,
		searches: pSSN},
	{name: "plain column keeps its array constant", sql: `SELECT id FROM patients WHERE name = ANY('{a}')`,
		want: `SELECT id FROM "public".patients WHERE name = ANY('{a}')`},
}

func TestArrayParamComparisons(t *testing.T) {
	for _, tc := range arrayParamCases {
		t.Run(tc.name, func(t *testing.T) { runAccept(t, tc) })
	}
}

// TestArrayParamRewritesParse checks that PostgreSQL's parser takes the
// rewritten SQL.
func TestArrayParamRewritesParse(t *testing.T) {
	for _, tc := range arrayParamCases {
		p := mustAnalyze(t, tc.sql, testEnv())
		out := mustRewrite(t, p)
		if _, err := pg_query.Parse(out); err != nil {
			t.Errorf("%s: %v\n%s", tc.name, err, out)
		}
	}
}

// TestArrayParamCasts: the casts recorded are the element types of the
// array casts, innermost first, on the client's parameter.
func TestArrayParamCasts(t *testing.T) {
	for sql, want := range map[string][]Cast{
		`SELECT 1 FROM patients WHERE ssn = ANY($1)`:                               nil,
		`SELECT 1 FROM patients WHERE ssn = ANY($1::text[])`:                       {{OID: 25}},
		`SELECT 1 FROM patients WHERE ssn = ANY(CAST($1 AS varchar(3)[]))`:         {{OID: 1043, Mods: []int32{3}}},
		`SELECT 1 FROM patients WHERE ssn = ANY($1::varchar[]::pg_catalog.text[])`: {{OID: 1043}, {OID: 25}},
		`SELECT 1 FROM staff WHERE badge <> ALL($1::numeric(5,1)[])`:               {{OID: 1700, Mods: []int32{5, 1}}},
	} {
		p := mustAnalyze(t, sql, testEnv())
		pr := p.Params[0]
		if pr == nil || !pr.Array || !slices.EqualFunc(pr.Casts, want, Cast.equal) {
			t.Errorf("%s: param %+v, want array with casts %v", sql, pr, want)
		}
		if h := p.Hidden(); len(h) != 1 || !h[0].Array || h[0].Source != 1 {
			t.Errorf("%s: hidden %+v", sql, h)
		}
	}
}

func TestArrayParamRefusals(t *testing.T) {
	for _, tc := range []refuseCase{
		{name: "randomized column", sql: `SELECT 1 FROM patients WHERE diagnosis = ANY($1)`, code: na, column: pDiag, contains: "randomized"},
		{name: "randomized not equal all", sql: `SELECT 1 FROM patients WHERE dob <> ALL($1::date[])`, code: na, column: pDOB, contains: "randomized"},
		{name: "equal all", sql: `SELECT 1 FROM patients WHERE ssn = ALL($1)`, code: na, column: pSSN, contains: "= ALL"},
		{name: "not equal any", sql: `SELECT 1 FROM patients WHERE ssn <> ANY($1)`, code: na, column: pSSN, contains: "<> ANY"},
		{name: "ordering", sql: `SELECT 1 FROM patients WHERE ssn < ANY($1)`, code: na, column: pSSN},
		{name: "cast to a single value", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1::text)`, code: na, column: pSSN},
		{name: "cast to an array of a type without conversion", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1::interval[])`, code: na, column: pSSN, contains: "interval"},
		{name: "cast to unknown[]", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1::unknown[])`, code: na, column: pSSN},
		{name: "cast to a schema's array type", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1::public.text[])`, code: na, column: pSSN},
		{name: "array and single value", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1) OR ssn = $1`, code: na, column: pSSN, contains: "both as an array"},
		{name: "single value and array", sql: `SELECT 1 FROM patients WHERE ssn IN ($1) OR ssn = ANY($1)`, code: na, column: pSSN, contains: "both as an array"},
		{name: "stored and compared as array", sql: `UPDATE patients SET ssn = $1 WHERE ssn = ANY($1)`, code: na, column: pSSN},
		{name: "array also plain", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1) OR name = ANY($1)`, code: na, column: pSSN, contains: "plain"},
		{name: "array used elsewhere", sql: `SELECT cardinality($1::text[]) FROM patients WHERE ssn = ANY($1)`, code: na, column: pSSN, contains: "plain"},
		{name: "cast differently", sql: `SELECT 1 FROM patients WHERE ssn = ANY($1::text[]) OR ssn = ANY($1::varchar[])`, code: na, column: pSSN, contains: "cast differently"},
		{name: "different keys", sql: `SELECT 1 FROM patients p, staff s WHERE p.ssn = ANY($1) AND s.badge = ANY($1)`, code: na, column: sBadge},
		{name: "scalar subquery", sql: `SELECT 1 FROM visits WHERE (SELECT ssn FROM patients LIMIT 1) = ANY($1)`, code: na, column: pSSN, contains: "array"},
		{name: "randomized column, array constant", sql: `SELECT 1 FROM patients WHERE diagnosis = ANY('{a}')`, code: na, column: pDiag, contains: "randomized"},
		{name: "equal all, array constant", sql: `SELECT 1 FROM patients WHERE ssn = ALL('{a}')`, code: na, column: pSSN, contains: "= ALL"},
		{name: "array constant cast to a single value", sql: `SELECT 1 FROM patients WHERE ssn = ANY('{a}'::text)`, code: na, column: pSSN},
		{name: "NULL cast to a single value", sql: `SELECT 1 FROM patients WHERE ssn = ANY(NULL::text)`, code: na, column: pSSN},
		{name: "number for an array", sql: `SELECT 1 FROM patients WHERE ssn = ANY(1)`, code: na, column: pSSN, contains: "array"},
		{name: "SQL PREPARE", sql: `PREPARE q AS SELECT 1 FROM patients WHERE ssn = ANY($1)`, code: na, column: pSSN, contains: "PREPARE"},
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

// TestExecuteArrayParamRefused: SQL EXECUTE of a statement prepared with
// the extended protocol cannot pass its array parameter.
func TestExecuteArrayParamRefused(t *testing.T) {
	p := mustAnalyze(t, `SELECT 1 FROM patients WHERE ssn = ANY($1)`, testEnv())
	env := testEnv()
	env.Prepared = func(name string) (*Prepared, bool) {
		return &Prepared{Name: name, Params: p.Params, ClientParams: p.ClientParams, Statement: p.Statements[0]}, name == "s"
	}
	_, err := Analyze(`EXECUTE s('{a,b}')`, env)
	var e *Error
	if !errors.As(err, &e) || e.Code != na || e.Column != pSSN {
		t.Fatalf("err = %v, want a refusal", err)
	}
}
