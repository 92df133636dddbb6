package sqlrewrite

import (
	"fmt"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgcloak/pgcloak/policy"
)

// TestValueSources checks what the plan says each constant and parameter
// bound for an encrypted column is before it meets the column: the type
// PostgreSQL gives the constant and the casts written on it, which the
// proxy applies as PostgreSQL would (the column is bytea there).
func TestValueSources(t *testing.T) {
	cases := []struct {
		name, sql string
		want      string // the first literal's or parameter's source
	}{
		{"string literal", `INSERT INTO staff(badge) VALUES ('42')`, "705"},
		{"small integer", `INSERT INTO staff(badge) VALUES (42)`, "23"},
		{"negative int4 bound", `INSERT INTO staff(badge) VALUES (-2147483648)`, "23"},
		{"integer beyond int4", `INSERT INTO staff(badge) VALUES (3000000000)`, "20"},
		{"integer beyond int8", `INSERT INTO staff(badge) VALUES (30000000000000000000)`, "1700"},
		{"decimal", `INSERT INTO staff(badge) VALUES (42.7)`, "1700"},
		{"exponent", `INSERT INTO staff(badge) VALUES (1e3)`, "1700"},
		{"boolean", `INSERT INTO staff(badge) VALUES (true)`, "16"},
		{"cast of a string", `INSERT INTO staff(badge) VALUES ('1.5'::float4)`, "705 700"},
		{"cast chain innermost first", `INSERT INTO staff(badge) VALUES (true::int::int2)`, "16 23 21"},
		{"typmod", `INSERT INTO patients(ssn) VALUES ('abcdef'::varchar(3))`, "705 1043(3)"},
		{"numeric typmod", `INSERT INTO staff(badge) VALUES (CAST('1.25' AS numeric(5,1)))`, "705 1700(5,1)"},
		{"sql standard names", `INSERT INTO staff(badge) VALUES ('1'::double precision)`, "705 701"},
		{"bare char is char(1)", `INSERT INTO patients(ssn) VALUES ('abc'::char)`, "705 1042(1)"},
		{"timestamp precision", `INSERT INTO patients(ssn) VALUES ('2024-01-01 01:02:03.456'::timestamp(1) with time zone)`, "705 1184(1)"},
		{"param cast", `INSERT INTO staff(badge) VALUES ($1::int8)`, "$ 20"},
		{"param without cast", `INSERT INTO staff(badge) VALUES ($1)`, "$"},
		{"searched param cast", `SELECT 1 FROM patients WHERE ssn = $1::varchar(11)`, "$ 1043(11)"},
		{"searched literal", `SELECT 1 FROM patients WHERE ssn IN ('a', 5)`, "705"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := mustAnalyze(t, tc.sql, testEnv())
			if got := firstSource(plan); got != tc.want {
				t.Errorf("source = %q, want %q", got, tc.want)
			}
		})
	}
}

// firstSource prints the first literal's source as "oid cast cast…", or
// for a parameter "$ cast…".
func firstSource(p *Plan) string {
	for _, pr := range p.Params {
		if pr != nil && pr.Source == 0 {
			return "$" + castsText(pr.Casts)
		}
	}
	for _, e := range p.Edits {
		lits := []*Literal{e.Literal}
		for _, part := range e.Parts {
			lits = append(lits, part.Literal)
		}
		for _, l := range lits {
			if l != nil {
				return fmt.Sprint(l.Source.OID) + castsText(l.Source.Casts)
			}
		}
	}
	return ""
}

func castsText(cs []Cast) string {
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf(" %d", c.OID)
		for i, m := range c.Mods {
			sep := ","
			if i == 0 {
				sep = "("
			}
			s += fmt.Sprintf("%s%d", sep, m)
		}
		if len(c.Mods) > 0 {
			s += ")"
		}
	}
	return s
}

// An ORM's schema sync that sets an encrypted column to the type it has in
// PostgreSQL, bytea, changes nothing and is let through (issue 8, finding
// 11); any other type is refused with the hint to declare it bytea.
func TestAlterEncryptedColumnToBytea(t *testing.T) {
	for _, sql := range []string{
		`ALTER TABLE patients ALTER COLUMN ssn TYPE bytea`,
		`ALTER TABLE "public"."patients" ALTER COLUMN "ssn" SET DATA TYPE bytea`,
	} {
		if _, err := Analyze(sql, testEnv()); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// TestEveryTypeCanBeCastTo: a cast to every registered type, by its
// typname and by its name in PostgreSQL's messages, is one the analysis
// resolves to the type (the registry's names agree with the parser's).
func TestEveryTypeCanBeCastTo(t *testing.T) {
	for p := range policy.NumPGTypes {
		for _, name := range []string{p.Name(), p.SQLName()} {
			res, err := pg_query.Parse("SELECT 'x'::" + name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			tn := res.Stmts[0].Stmt.GetSelectStmt().GetTargetList()[0].GetResTarget().GetVal().GetTypeCast().GetTypeName()
			if c, ok := castTarget(tn); !ok || c.OID != p.OID() {
				t.Errorf("cast to %s: %v, %v; want OID %d", name, c, ok, p.OID())
			}
		}
	}
}

// A quoted type name is what it says: "char" is PostgreSQL's one-byte
// type (the keyword char is bpchar), and "integer" is no type at all.
// Taking either for the keyword's type stored 'abc' where PostgreSQL
// stores 'a', or a value where PostgreSQL fails.
func TestQuotedTypeNamesAreNotKeywords(t *testing.T) {
	for _, c := range []struct {
		cast string
		ok   bool
	}{
		{`"char"`, false},
		{`pg_catalog."char"`, false},
		{`"integer"`, false},
		{`"boolean"`, false},
		{`"decimal"`, false},
		{`char`, true},
		{`integer`, true},
		{`"int4"`, true},
		{`pg_catalog."bpchar"`, true},
	} {
		res, err := pg_query.Parse("SELECT 'x'::" + c.cast)
		if err != nil {
			t.Fatalf("%s: %v", c.cast, err)
		}
		tn := res.Stmts[0].Stmt.GetSelectStmt().GetTargetList()[0].GetResTarget().GetVal().GetTypeCast().GetTypeName()
		if _, ok := castTarget(tn); ok != c.ok {
			t.Errorf("cast to %s resolved: %t, want %t", c.cast, ok, c.ok)
		}
	}
}
