package sqlrewrite

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

const (
	mBorn = "public.members.born"
	mPay  = "public.members.pay"
	hBorn = "public.heirs.born"
)

// twoVersions is a session whose ordered keys have two enabled versions
// (after a rotation, before reencrypt).
func twoVersions(e *Env) { e.OrderVersions = func(*policy.ColumnRule) int { return 2 } }

const rng = " OPERATOR(pg_catalog.>=) "
const below = " OPERATOR(pg_catalog.<) "

// orderedCases are comparisons, sorts and aggregates on ordered columns.
var orderedCases = []acceptCase{
	{name: "less than a literal", sql: `SELECT id FROM members WHERE born < '2000-01-01'`,
		want: `SELECT id FROM "public".members WHERE (born` + rng + `'<<lo0:` + mBorn + `:2000-01-01>' AND born` + below + `'<<hi0:` + mBorn + `:2000-01-01>')`, searches: mBorn},
	{name: "literal on the left flips the operator", sql: `SELECT id FROM members m WHERE '2000-01-01' <= m.born`,
		want: `SELECT id FROM "public".members m WHERE (m.born` + rng + `'<>=lo0:` + mBorn + `:2000-01-01>' AND m.born` + below + `'<>=hi0:` + mBorn + `:2000-01-01>')`, searches: mBorn},
	{name: "parameter gets two hidden bounds", sql: `SELECT id FROM members WHERE born > $1 AND name = $2`,
		want:   `SELECT id FROM "public".members WHERE (born` + rng + `$3 AND born` + below + `$4) AND name = $2`,
		params: "$1=" + mBorn + "/r,$2=-,$3=" + mBorn + "/c$1>lo0,$4=" + mBorn + "/c$1>hi0", searches: mBorn},
	{name: "the same parameter and bound share a hidden parameter", sql: `SELECT id FROM members WHERE born > $1 OR (born > $1 AND pay >= $2)`,
		want:   `SELECT id FROM "public".members WHERE (born` + rng + `$3 AND born` + below + `$4) OR ((born` + rng + `$3 AND born` + below + `$4) AND (pay` + rng + `$5 AND pay` + below + `$6))`,
		params: "$1=" + mBorn + "/r,$2=" + mPay + "/r,$3=" + mBorn + "/c$1>lo0,$4=" + mBorn + "/c$1>hi0,$5=" + mPay + "/c$2>=lo0,$6=" + mPay + "/c$2>=hi0", searches: mBorn + "," + mPay},
	{name: "two key versions make two ranges", sql: `SELECT id FROM members WHERE born < $1`, env: twoVersions,
		want:   `SELECT id FROM "public".members WHERE ((born` + rng + `$2 AND born` + below + `$3) OR (born` + rng + `$4 AND born` + below + `$5))`,
		params: "$1=" + mBorn + "/r,$2=" + mBorn + "/c$1<lo0,$3=" + mBorn + "/c$1<hi0,$4=" + mBorn + "/c$1<lo1,$5=" + mBorn + "/c$1<hi1", searches: mBorn},
	{name: "between", sql: `SELECT id FROM members WHERE (born) BETWEEN $1 AND '2001-01-01' ORDER BY id`,
		want:   `SELECT id FROM "public".members WHERE ((born` + rng + `$2 AND born` + below + `$3) AND (born` + rng + `'<<=lo0:` + mBorn + `:2001-01-01>' AND born` + below + `'<<=hi0:` + mBorn + `:2001-01-01>')) ORDER BY id`,
		params: "$1=" + mBorn + "/r,$2=" + mBorn + "/c$1>=lo0,$3=" + mBorn + "/c$1>=hi0", searches: mBorn},
	{name: "not between symmetric", sql: `SELECT id FROM members WHERE pay NOT BETWEEN SYMMETRIC 5 AND -3`,
		want:     `SELECT id FROM "public".members WHERE (NOT (((pay` + rng + `'<>=lo0:` + mPay + `:5>' AND pay` + below + `'<>=hi0:` + mPay + `:5>') AND (pay` + rng + `'<<=lo0:` + mPay + `:-3>' AND pay` + below + `'<<=hi0:` + mPay + `:-3>')) OR ((pay` + rng + `'<>=lo0:` + mPay + `:-3>' AND pay` + below + `'<>=hi0:` + mPay + `:-3>') AND (pay` + rng + `'<<=lo0:` + mPay + `:5>' AND pay` + below + `'<<=hi0:` + mPay + `:5>'))))`,
		searches: mPay},
	{name: "equality is the equality range", sql: `SELECT id FROM members WHERE born = $1`,
		want:   `SELECT id FROM "public".members WHERE (born` + rng + `$2 AND born` + below + `$3)`,
		params: "$1=" + mBorn + "/r,$2=" + mBorn + "/c$1=lo0,$3=" + mBorn + "/c$1=hi0", searches: mBorn},
	{name: "not in with a null", sql: `SELECT id FROM members WHERE pay NOT IN (1, NULL)`,
		want: `SELECT id FROM "public".members WHERE (NOT ((pay` + rng + `'<=lo0:` + mPay + `:1>' AND pay` + below + `'<=hi0:` + mPay + `:1>') OR NULL))`, searches: mPay},
	{name: "is not distinct from a parameter", sql: `SELECT id FROM members WHERE born IS NOT DISTINCT FROM $1`,
		want:   `SELECT id FROM "public".members WHERE (coalesce((born` + rng + `$2 AND born` + below + `$3), born IS NULL AND $2 IS NULL))`,
		params: "$1=" + mBorn + "/r,$2=" + mBorn + "/c$1=lo0,$3=" + mBorn + "/c$1=hi0", searches: mBorn},
	{name: "less than null", sql: `SELECT id FROM members WHERE born < NULL`,
		want: `SELECT id FROM "public".members WHERE (NULL::boolean)`, searches: mBorn},
	{name: "order by, group by and distinct on ciphertext", sql: `SELECT DISTINCT born FROM members GROUP BY born ORDER BY born DESC NULLS LAST`,
		want: `SELECT DISTINCT born FROM "public".members GROUP BY born ORDER BY born DESC NULLS LAST`, searches: mBorn, outputs: mBorn},
	{name: "order by an output position and in a window", sql: `SELECT born, row_number() OVER (ORDER BY pay) FROM members ORDER BY 1`,
		want: `SELECT born, row_number() OVER (ORDER BY pay) FROM "public".members ORDER BY 1`, searches: mBorn + "," + mPay, outputs: mBorn},
	{name: "join on order between columns of one key", sql: `SELECT m.id FROM members m JOIN heirs h ON h.born > m.born`,
		want: `SELECT m.id FROM "public".members m JOIN "public".heirs h ON h.born > m.born`, searches: hBorn + "," + mBorn},
	{name: "min and max", sql: `SELECT min(born), max(m.pay) FILTER (WHERE id > 3), count(*) FROM members m`,
		want:     `SELECT pg_catalog.decode(pg_catalog.min(pg_catalog.encode(born, 'hex') COLLATE pg_catalog."C"), 'hex') AS "min", pg_catalog.decode(pg_catalog.max(pg_catalog.encode(m.pay, 'hex') COLLATE pg_catalog."C") FILTER (WHERE id > 3), 'hex') AS "max", count(*) FROM "public".members m`,
		searches: mBorn + "," + mPay, outputs: mBorn + "," + mPay},
	{name: "min with an alias and inside a subquery keeps its text", sql: `SELECT max(born) AS last FROM members WHERE pay = (SELECT min(pay) FROM members)`,
		want:     `SELECT pg_catalog.decode(pg_catalog.max(pg_catalog.encode(born, 'hex') COLLATE pg_catalog."C"), 'hex') AS last FROM "public".members WHERE pay = (SELECT pg_catalog.decode(pg_catalog.min(pg_catalog.encode(pay, 'hex') COLLATE pg_catalog."C"), 'hex') AS "min" FROM "public".members)`,
		searches: mBorn + "," + mPay, outputs: mBorn},
}

func TestOrderedColumnsCompareAndSortOnCiphertext(t *testing.T) {
	for _, tc := range orderedCases {
		t.Run(tc.name, func(t *testing.T) { runAccept(t, tc) })
	}
}

func TestOrderedPlansRecordTheVersionsTheyAreShapedFor(t *testing.T) {
	env := testEnv()
	twoVersions(env)
	p := mustAnalyze(t, `SELECT id FROM members WHERE born < $1`, env)
	if got := p.OrderVersions["born"]; got != 2 {
		t.Errorf("OrderVersions[born] = %d, want 2", got)
	}
	if got := ruleNames(p.Statements[0].Orders); got != mBorn {
		t.Errorf("Orders = %q, want %q", got, mBorn)
	}
	p = mustAnalyze(t, `SELECT id FROM members ORDER BY pay`, testEnv())
	if got := p.OrderVersions["pay"]; got != 1 {
		t.Errorf("OrderVersions[pay] = %d, want 1", got)
	}
	p = mustAnalyze(t, `SELECT id FROM members WHERE id = 1`, testEnv())
	if len(p.OrderVersions) != 0 {
		t.Errorf("a plan not using order records %v", p.OrderVersions)
	}
}

func TestOrderedRefusals(t *testing.T) {
	cases := []refuseCase{
		{name: "order by with two key versions", sql: `SELECT id FROM members ORDER BY born`, env: twoVersions, code: CodeNotInPrerequisiteState, column: mBorn, contains: "2 enabled versions"},
		{name: "min with two key versions", sql: `SELECT min(born) FROM members`, env: twoVersions, code: CodeNotInPrerequisiteState, column: mBorn},
		{name: "order by a randomized column", sql: `SELECT id FROM patients ORDER BY dob`, code: na, column: pDOB},
		{name: "less than on a deterministic column", sql: `SELECT id FROM patients WHERE ssn < 'x'`, code: na, column: pSSN},
		{name: "comparison with a computed value", sql: `SELECT id FROM members WHERE born < now()::date`, code: na, column: mBorn, contains: "compare it with a constant or a parameter"},
		{name: "comparison with a plain column", sql: `SELECT id FROM members WHERE pay > id`, code: na, column: mPay},
		{name: "ordered columns under different keys", sql: `SELECT id FROM members WHERE pay > born`, code: na, column: mPay, contains: "different keys"},
		{name: "an expression of the column", sql: `SELECT id FROM members WHERE born + 1 < '2000-01-01'`, code: na, column: mBorn},
		{name: "collation", sql: `SELECT id FROM members ORDER BY born COLLATE "C"`, code: na, column: mBorn},
		{name: "order by using", sql: `SELECT id FROM members ORDER BY born USING >`, code: na, column: mBorn},
		{name: "array parameter", sql: `SELECT id FROM members WHERE born = ANY($1)`, code: na, column: mBorn, contains: "use IN"},
		{name: "min over a window", sql: `SELECT min(born) OVER () FROM members`, code: na, column: mBorn},
		{name: "sql prepare with a parameter", sql: `PREPARE q(date) AS SELECT id FROM members WHERE born < $1`, code: na, column: mBorn, contains: "SQL PREPARE"},
		{name: "a view comparing with a constant", sql: `CREATE VIEW v AS SELECT id FROM members WHERE born < '2000-01-01'`, code: na, column: mBorn, contains: "fixed at creation"},
		{name: "a view sorting", sql: `CREATE VIEW v AS SELECT id FROM members ORDER BY born`, code: na, column: mBorn, contains: "one key version"},
		{name: "a materialized view taking a maximum", sql: `CREATE MATERIALIZED VIEW v AS SELECT max(pay) FROM members`, code: na, column: mPay},
		{name: "less than any array", sql: `SELECT id FROM members WHERE born < ANY(ARRAY['2000-01-01'::date])`, code: na, column: mBorn},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv()
			if tc.env != nil {
				tc.env(env)
			}
			_, err := Analyze(tc.sql, env)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Analyze(%q) = %v, want a refusal", tc.sql, err)
			}
			if e.Code != tc.code || e.Column != tc.column {
				t.Errorf("code %s column %q, want %s %q: %s", e.Code, e.Column, tc.code, tc.column, e.Message)
			}
			if tc.contains != "" && !strings.Contains(e.Message, tc.contains) {
				t.Errorf("message %q lacks %q", e.Message, tc.contains)
			}
		})
	}
}

// TestParametersUsedOnlyForBoundsAreNotSent: a parameter compared with an
// ordered column appears nowhere in the rewritten SQL; unless it is also
// stored, the proxy sends it as NULL instead of encrypting it for nothing.
func TestParametersUsedOnlyForBoundsAreNotSent(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		only bool
	}{
		{`SELECT id FROM members WHERE born > $1`, true},
		{`SELECT id FROM members m JOIN heirs h ON h.id = m.id WHERE m.born > $1 OR h.born BETWEEN $1 AND '2000-01-01'`, true},
		{`UPDATE members SET born = $1 WHERE born < $1`, false},
		{`UPDATE members SET born = $1 WHERE born < $1 AND born > $1`, false},
		{`UPDATE heirs SET born = NULL WHERE born < $1 RETURNING (SELECT count(*) FROM members WHERE born = $1)`, true},
	} {
		p := mustAnalyze(t, tc.sql, testEnv())
		if len(p.Params) == 0 || p.Params[0] == nil || p.Params[0].BoundsOnly != tc.only {
			t.Errorf("%s: $1 = %+v, want BoundsOnly %v", tc.sql, p.Params[0], tc.only)
		}
	}
}
