package audit

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

func TestFingerprintReplacesEveryValue(t *testing.T) {
	tests := []struct {
		name    string
		sql     string
		want    string
		secrets []string // none may appear in the fingerprint
	}{
		{"insert values",
			"INSERT INTO public.patients (ssn, name, age) VALUES ('123-45-6789', 'Alice', 42)",
			"INSERT INTO public.patients (ssn, name, age) VALUES ($1, $2, $3)",
			[]string{"123-45-6789", "Alice", "42"}},
		{"negative and decimal numbers",
			"INSERT INTO t VALUES (-17, 3.25, -1.5e3, .5, 0x1F, 1_000)",
			"INSERT INTO t VALUES (-$1, $2, -$3, $4, $5, $6)",
			[]string{"17", "3.25", "1.5e3", ".5", "0x1F", "1_000"}},
		{"escape string with escaped quote",
			`SELECT * FROM t WHERE note = E'it\'s \x41 secret\n'`,
			"SELECT * FROM t WHERE note = $1",
			[]string{"secret", `\x41`}},
		{"doubled quote",
			"UPDATE t SET name = 'it''s Bob' WHERE id = 7",
			"UPDATE t SET name = $1 WHERE id = $2",
			[]string{"Bob", "it''s", "7"}},
		{"dollar-quoted DO block",
			"DO $$BEGIN INSERT INTO t VALUES ('secret-1'); END$$",
			"DO $1",
			[]string{"secret-1", "BEGIN"}},
		{"tagged dollar-quoted function body",
			"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT 'secret-2' $body$",
			"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $1",
			[]string{"secret-2", "$body$"}},
		{"bit, hex and national strings",
			"SELECT B'0101', X'ff', N'nat'",
			"SELECT $1, $2, N $3",
			[]string{"0101", "ff", "nat"}},
		{"unicode escape string",
			`SELECT U&'d\0061t\+000061 secret' UESCAPE '\', 1`,
			`SELECT $1 UESCAPE $2, $3`,
			[]string{"secret", `\0061`, "U&"}},
		{"unicode identifier kept, its neighbour value not",
			`SELECT U&"d\0061t" FROM t WHERE x = U&'v\0061l'`,
			`SELECT U&"d\0061t" FROM t WHERE x = $1`,
			[]string{`v\0061l`}},
		{"typed literals",
			"SELECT * FROM visits WHERE day > date '2020-01-01' AND span < interval '1 day' AND at = timestamptz '2020-01-01 10:00+00'",
			"SELECT * FROM visits WHERE day > date $1 AND span < interval $2 AND at = timestamptz $3",
			[]string{"2020-01-01", "1 day", "10:00"}},
		{"casts",
			"SELECT '42'::int4, CAST('3.5' AS numeric(10, 2))",
			"SELECT $1::int4, CAST($2 AS numeric($3, $4))",
			[]string{"42", "3.5"}},
		{"array literals",
			"SELECT * FROM t WHERE codes && '{1,2}' OR codes = ARRAY[77, 88]",
			"SELECT * FROM t WHERE codes && $1 OR codes = ARRAY[$2, $3]",
			[]string{"{1,2}", "77", "88"}},
		{"booleans are values, NULL is not",
			"SELECT * FROM t WHERE has_hiv = true OR tested IS FALSE OR ssn IS NULL",
			"SELECT * FROM t WHERE has_hiv = $1 OR tested IS $2 OR ssn IS NULL",
			[]string{"true", "FALSE"}},
		{"copy from stdin",
			"COPY public.patients (ssn, name) FROM STDIN WITH (FORMAT csv, DELIMITER ';', NULL 'n/a')",
			"COPY public.patients (ssn, name) FROM STDIN WITH (FORMAT csv, DELIMITER $1, NULL $2)",
			[]string{"n/a", "';'"}},
		{"line comment with a value",
			"SELECT name FROM patients -- ssn 123-45-6789\nWHERE ssn = $1",
			"SELECT name FROM patients WHERE ssn = $1",
			[]string{"123-45-6789", "--"}},
		{"nested block comment",
			"SELECT /* outer 'a' /* inner 987-65-4321 */ still */ name/*x*/FROM t",
			"SELECT name FROM t",
			[]string{"987-65-4321", "outer", "still", "/*"}},
		{"comment first",
			"/* Alice's record */ SELECT 1",
			"SELECT $1",
			[]string{"Alice"}},
		{"multi-statement",
			"SELECT 'a1'; UPDATE t SET x = 'b2' WHERE id = 3;\nDELETE FROM t WHERE y = 'c3'",
			"SELECT $1; UPDATE t SET x = $2 WHERE id = $3; DELETE FROM t WHERE y = $4",
			[]string{"a1", "b2", "c3"}},
		{"numbered after existing parameters",
			"SELECT * FROM t WHERE a = $2 AND b = 'v' AND c = $1 AND d = 10",
			"SELECT * FROM t WHERE a = $2 AND b = $3 AND c = $1 AND d = $4",
			[]string{"'v'", "10"}},
		{"identifiers that look like values are names",
			`SELECT "123", "Alice" FROM "t 1" WHERE "123" = 456`,
			`SELECT "123", "Alice" FROM "t 1" WHERE "123" = $1`,
			[]string{"456"}},
		{"string continuation across lines",
			"SELECT 'first'\n   'second' AS s",
			"SELECT $1 AS s",
			[]string{"first", "second"}},
		{"whitespace collapsed",
			"SELECT\n\ta ,\r\n  b\t\tFROM   t",
			"SELECT a , b FROM t",
			nil},
		{"custom operator keeps its sign out of the value",
			"SELECT * FROM t WHERE a<-5 AND b @- 'q'",
			"SELECT * FROM t WHERE a<-$1 AND b @- $2",
			[]string{"5", "'q'"}},
		{"unterminated string",
			"SELECT * FROM t WHERE ssn = '123-45-6789",
			"<unparsable statement, 40 bytes>",
			[]string{"123-45-6789", "ssn"}},
		{"unterminated comment",
			"SELECT 1 /* ssn 123-45-6789",
			"<unparsable statement, 27 bytes>",
			[]string{"123-45-6789"}},
		{"trailing junk after a number",
			"SELECT 123abc",
			"<unparsable statement, 13 bytes>",
			[]string{"123"}},
		{"a constant glued to its neighbour stays apart",
			"SELECT $''$'', ''2",
			"SELECT $ $1 $ $2, $3 $4",
			nil},
		{"empty", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Fingerprint(tt.sql)
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("fingerprint %q contains %q", got, s)
				}
			}
			if got != tt.want {
				t.Errorf("Fingerprint(%q)\n got %q\nwant %q", tt.sql, got, tt.want)
			}
		})
	}
}

// FuzzFingerprintLeavesNoConstant checks that no constant survives: the
// fingerprint, when the lexer can read it again, has none left.
func FuzzFingerprintLeavesNoConstant(f *testing.F) {
	for _, s := range []string{
		"INSERT INTO t VALUES (-5, 'a', 1.5e3, E'it\\'s', B'0101', X'ff', U&'d\\0061t', $$x$$, $q$ y $q$, true)",
		"SELECT $2 /* c */ -- d\n, 'x' 'y'", `SELECT U&"a" UESCAPE '!'`, "COPY t FROM STDIN",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		fp := Fingerprint(sql)
		if strings.HasPrefix(fp, "<unparsable statement") {
			return
		}
		res, err := pg_query.Scan(fp)
		if err != nil {
			return // $1$2 from 1'x' is no longer one token; nothing leaked
		}
		for _, tok := range res.Tokens {
			if isConstant(tok) || isComment(tok) {
				t.Errorf("Fingerprint(%q) = %q keeps %v %q", sql, fp, tok.Token, fp[tok.Start:tok.End])
			}
		}
	})
}

func TestShapeReplacesIdentifiersToo(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{`SELECT name FROM patients WHERE ssn = "123-45-6789"`, `SELECT name FROM ? WHERE ? = ?`},
		{`select * from t where email = a@b.com`, `select * from ? where ? = ?@?.?`},
		{`SELECT x AS "Ann Smith", U&"d\0061t\+000061" FROM t WHERE id = 5`, `SELECT ? AS ?, ? FROM ? WHERE ? = $1`},
		{`INSERT INTO public.p (ssn) VALUES ($1)`, `INSERT INTO ?.? (?) VALUES ($1)`},
	} {
		got := Shape(c.sql)
		if got != c.want {
			t.Errorf("Shape(%q) = %q, want %q", c.sql, got, c.want)
		}
		for _, v := range []string{"123-45-6789", "Ann Smith", "b.com", "d\\0061t"} {
			if strings.Contains(got, v) {
				t.Errorf("Shape(%q) keeps %q", c.sql, v)
			}
		}
	}
}
