package sqlrewrite

import (
	"errors"
	"strings"
	"testing"
)

// refuseCase is a statement pgcloak refuses, with the SQLSTATE and the
// column the message must name ("" when it names none).
type refuseCase struct {
	name   string
	sql    string
	env    func(*Env)
	code   string
	column string
	// contains is an extra substring the message must have.
	contains string
}

const na = CodeFeatureNotSupported

var refuseCases = []refuseCase{
	// Comparisons with constants that PostgreSQL would keep.
	{name: "view with literal", sql: `CREATE VIEW flagged AS SELECT id, ssn FROM patients WHERE ssn = 'x'`, code: na, column: pSSN,
		contains: "a view cannot compare encrypted column public.patients.ssn with a constant"},
	{name: "view with row comparison", sql: `CREATE VIEW flagged AS SELECT id FROM patients WHERE (ssn, name) = ('x', 'y')`, code: na, column: pSSN},
	{name: "materialized view with literal", sql: `CREATE MATERIALIZED VIEW flagged AS SELECT id FROM patients WHERE ssn IN ('x', 'y')`, code: na, column: pSSN,
		contains: "a materialized view cannot compare"},
	// Predicates that need plaintext.
	{name: "randomized equality", sql: `SELECT * FROM patients WHERE diagnosis = 'flu'`, code: na, column: pDiag,
		contains: "is encrypted with a randomized key: equality comparison is not possible"},
	{name: "randomized equality param", sql: `SELECT * FROM patients WHERE dob = $1`, code: na, column: pDOB},
	{name: "randomized in list", sql: `SELECT * FROM patients WHERE diagnosis IN ('a')`, code: na, column: pDiag},
	{name: "like", sql: `SELECT * FROM patients WHERE ssn LIKE '1%'`, code: na, column: pSSN,
		contains: "LIKE on encrypted column public.patients.ssn needs its plaintext inside PostgreSQL"},
	{name: "ilike", sql: `SELECT * FROM patients WHERE ssn ILIKE '1%'`, code: na, column: pSSN, contains: "ILIKE"},
	{name: "similar to", sql: `SELECT * FROM patients WHERE ssn SIMILAR TO '1%'`, code: na, column: pSSN, contains: "SIMILAR"},
	{name: "regex", sql: `SELECT * FROM patients WHERE ssn ~ '^1'`, code: na, column: pSSN, contains: "~"},
	{name: "less than", sql: `SELECT * FROM patients WHERE ssn < '5'`, code: na, column: pSSN, contains: "<"},
	{name: "greater equal on the right", sql: `SELECT * FROM patients WHERE '5' >= ssn`, code: na, column: pSSN},
	{name: "between", sql: `SELECT * FROM patients WHERE ssn BETWEEN 'a' AND 'b'`, code: na, column: pSSN, contains: "BETWEEN"},
	{name: "not between symmetric", sql: `SELECT * FROM patients WHERE 'a' NOT BETWEEN SYMMETRIC ssn AND 'z'`, code: na, column: pSSN},
	{name: "function", sql: `SELECT * FROM patients WHERE lower(ssn) = 'x'`, code: na, column: pSSN, contains: "lower()"},
	{name: "function in target list", sql: `SELECT length(diagnosis) FROM patients`, code: na, column: pDiag},
	{name: "cast", sql: `SELECT ssn::text FROM patients`, code: na, column: pSSN, contains: "cast"},
	{name: "cast to bytea", sql: `SELECT CAST(ssn AS bytea) FROM patients`, code: na, column: pSSN},
	{name: "concatenation", sql: `SELECT ssn || 'x' FROM patients`, code: na, column: pSSN, contains: "||"},
	{name: "prefix operator", sql: `SELECT -badge FROM staff`, code: na, column: sBadge},
	{name: "case result", sql: `SELECT CASE WHEN id > 1 THEN ssn END FROM patients`, code: na, column: pSSN, contains: "CASE"},
	{name: "case operand", sql: `SELECT CASE ssn WHEN 'x' THEN 1 END FROM patients`, code: na, column: pSSN},
	{name: "coalesce", sql: `SELECT coalesce(ssn, 'none') FROM patients`, code: na, column: pSSN, contains: "COALESCE"},
	{name: "greatest", sql: `SELECT greatest(ssn, ssn) FROM patients`, code: na, column: pSSN},
	{name: "nullif", sql: `SELECT nullif(ssn, 'x') FROM patients`, code: na, column: pSSN},
	{name: "is true", sql: `SELECT * FROM patients WHERE ssn IS TRUE`, code: na, column: pSSN},
	{name: "collate", sql: `SELECT * FROM patients WHERE ssn = 'x' COLLATE "C"`, code: na, column: pSSN},
	{name: "compared with plain column", sql: `SELECT * FROM patients WHERE ssn = name`, code: na, column: pSSN, contains: "plain"},
	{name: "compared with computed value", sql: `SELECT * FROM patients WHERE ssn = lower('X')`, code: na, column: pSSN},
	{name: "compared with concatenated params", sql: `SELECT * FROM patients WHERE ssn = $1 || $2`, code: na, column: pSSN},
	{name: "in list with plain column", sql: `SELECT * FROM patients WHERE ssn IN ('a', name)`, code: na, column: pSSN},
	{name: "any computed array", sql: `SELECT * FROM patients WHERE ssn = ANY(string_to_array($1, ','))`, code: na, column: pSSN, contains: "array"},
	{name: "any array with plain", sql: `SELECT * FROM patients WHERE ssn = ANY(ARRAY[name])`, code: na, column: pSSN},
	{name: "array constructor", sql: `SELECT ARRAY[ssn] FROM patients`, code: na, column: pSSN},
	{name: "row constructor outside comparison", sql: `SELECT ROW(ssn, 1) FROM patients`, code: na, column: pSSN},
	{name: "bit string", sql: `SELECT * FROM patients WHERE ssn = B'101'`, code: na, column: pSSN, contains: "bit-string"},
	{name: "cast to a type without conversion", sql: `SELECT * FROM patients WHERE ssn = '5'::interval`, code: na, column: pSSN, contains: "interval"},
	{name: "cast to a schema's type", sql: `SELECT * FROM patients WHERE ssn = '5'::public.text`, code: na, column: pSSN},
	{name: "cast to an array", sql: `SELECT * FROM patients WHERE ssn = 'x'::text[]`, code: na, column: pSSN},
	{name: "param cast to a type without conversion", sql: `SELECT * FROM patients WHERE ssn = $1::money`, code: na, column: pSSN},
	// Constants for a randomized column that the source query compares
	// (issue 8, finding 8): each is encrypted on its own.
	{name: "union of constants for a randomized column", sql: `INSERT INTO patients(diagnosis) SELECT 'dup' UNION SELECT 'dup'`, code: na, column: pDiag, contains: "UNION"},
	{name: "intersect of constants for a randomized column", sql: `INSERT INTO patients(diagnosis) SELECT 'dup' INTERSECT SELECT 'dup'`, code: na, column: pDiag},
	{name: "except of parameters for a randomized column", sql: `INSERT INTO patients(diagnosis) SELECT $1 EXCEPT SELECT $2`, code: na, column: pDiag},
	{name: "union under union all", sql: `INSERT INTO patients(diagnosis) SELECT 'a' UNION SELECT 'a' UNION ALL SELECT 'b'`, code: na, column: pDiag},
	{name: "values union for a randomized column", sql: `INSERT INTO patients(diagnosis) VALUES ('a') UNION VALUES ('a')`, code: na, column: pDiag},
	{name: "distinct constant for a randomized column", sql: `INSERT INTO patients(diagnosis) SELECT DISTINCT 'a' FROM generate_series(1, 2)`, code: na, column: pDiag},
	{name: "grouped constant for a randomized column", sql: `INSERT INTO patients(diagnosis) SELECT 'a' FROM generate_series(1, 2) GROUP BY 1`, code: na, column: pDiag},
	{name: "sign on a string", sql: `SELECT * FROM staff WHERE badge = -'5'`, code: na, column: sBadge},
	// Joins and comparisons between columns.
	{name: "join with different keys", sql: `SELECT * FROM patients p JOIN staff s ON p.ssn = s.badge`, code: na, column: pSSN, contains: "different keys"},
	{name: "join with randomized", sql: `SELECT * FROM patients p JOIN visits v ON v.note = p.diagnosis`, code: na, column: vNote},
	{name: "join with plain column", sql: `SELECT * FROM patients p JOIN other.patients o ON p.ssn = o.ssn`, code: na, column: pSSN},
	{name: "join using mismatched", sql: `SELECT * FROM patients JOIN other.patients USING (ssn)`, code: na, column: pSSN},
	{name: "join using randomized", sql: `SELECT * FROM patients p JOIN (SELECT diagnosis FROM patients) d USING (diagnosis)`, code: na, column: pDiag},
	{name: "natural join", sql: `SELECT * FROM patients NATURAL JOIN visits`, code: na, contains: "NATURAL JOIN"},
	{name: "in subquery of plain values", sql: `SELECT * FROM patients WHERE ssn IN (SELECT name FROM patients)`, code: na, column: pSSN},
	{name: "in subquery of different key", sql: `SELECT * FROM patients WHERE ssn IN (SELECT badge FROM staff)`, code: na, column: pSSN},
	{name: "subquery compared with greater", sql: `SELECT * FROM patients WHERE ssn > ANY (SELECT patient_ssn FROM visits)`, code: na, column: pSSN},
	// Ordering, grouping, aggregates.
	{name: "order by", sql: `SELECT name FROM patients ORDER BY ssn`, code: na, column: pSSN, contains: "ORDER BY"},
	{name: "order by position", sql: `SELECT ssn FROM patients ORDER BY 1 DESC`, code: na, column: pSSN},
	{name: "order by output alias", sql: `SELECT ssn AS s FROM patients ORDER BY s`, code: na, column: pSSN},
	{name: "order by in union", sql: `SELECT ssn FROM patients UNION SELECT patient_ssn FROM visits ORDER BY 1`, code: na, column: pSSN},
	{name: "group by randomized", sql: `SELECT count(*) FROM patients GROUP BY diagnosis`, code: na, column: pDiag, contains: "GROUP BY"},
	{name: "group by randomized position", sql: `SELECT dob, count(*) FROM patients GROUP BY 1`, code: na, column: pDOB},
	{name: "distinct randomized", sql: `SELECT DISTINCT diagnosis FROM patients`, code: na, column: pDiag, contains: "DISTINCT"},
	{name: "distinct on randomized", sql: `SELECT DISTINCT ON (diagnosis) id FROM patients`, code: na, column: pDiag},
	{name: "partition by randomized", sql: `SELECT rank() OVER (PARTITION BY note) FROM visits`, code: na, column: vNote},
	{name: "window order by", sql: `SELECT row_number() OVER (ORDER BY ssn) FROM patients`, code: na, column: pSSN},
	{name: "aggregate order by", sql: `SELECT string_agg(name, ',' ORDER BY ssn) FROM patients`, code: na, column: pSSN},
	{name: "count distinct randomized", sql: `SELECT count(DISTINCT diagnosis) FROM patients`, code: na, column: pDiag},
	{name: "sum", sql: `SELECT sum(badge) FROM staff`, code: na, column: sBadge, contains: "sum()"},
	{name: "max", sql: `SELECT max(ssn) FROM patients`, code: na, column: pSSN},
	{name: "having with function", sql: `SELECT 1 FROM patients GROUP BY ssn HAVING max(ssn) = 'x'`, code: na, column: pSSN},
	// Values flowing out.
	{name: "union with plain", sql: `SELECT ssn FROM patients UNION ALL SELECT name FROM patients`, code: na, column: pSSN, contains: "plain values"},
	{name: "union with literal", sql: `SELECT ssn FROM patients UNION ALL SELECT 'x'`, code: na, column: pSSN},
	{name: "union different keys", sql: `SELECT ssn FROM patients UNION ALL SELECT note FROM visits`, code: na, column: pSSN},
	{name: "union distinct randomized", sql: `SELECT diagnosis FROM patients UNION SELECT diagnosis FROM patients`, code: na, column: pDiag},
	{name: "except randomized", sql: `SELECT note FROM visits EXCEPT SELECT note FROM visits`, code: na, column: vNote},
	{name: "scalar subquery output", sql: `SELECT (SELECT ssn FROM patients LIMIT 1)`, code: na, column: pSSN, contains: "scalar subquery"},
	{name: "array subquery", sql: `SELECT ARRAY(SELECT ssn FROM patients)`, code: na, column: pSSN},
	{name: "whole-row reference", sql: `SELECT p FROM patients p`, code: na, contains: "whole-row"},
	{name: "whole-row function argument", sql: `SELECT row_to_json(p) FROM patients p`, code: na, contains: "whole-row"},
	{name: "whole-row star argument", sql: `SELECT count(p.*) FROM patients p`, code: na, contains: "whole-row"},
	{name: "field of whole row", sql: `SELECT (p).ssn FROM patients p`, code: na, contains: "whole-row"},
	{name: "select into copies ciphertext", sql: `SELECT ssn INTO newtable FROM patients`, code: na, column: pSSN},
	{name: "create table as copies ciphertext", sql: `CREATE TABLE t AS SELECT * FROM patients`, code: na, column: pSSN},
	{name: "create table as table", sql: `CREATE TEMP TABLE t AS TABLE visits`, code: na, column: vSSN},
	// Parameters.
	{name: "param encrypted and plain", sql: `SELECT * FROM patients WHERE ssn = $1 AND name = $1`, code: na, column: pSSN, contains: "$1"},
	{name: "param plain in limit", sql: `SELECT * FROM patients WHERE ssn = $1 LIMIT $1`, code: na, column: pSSN},
	{name: "param for two keys", sql: `SELECT * FROM patients, staff WHERE ssn = $1 AND badge = $1`, code: na, column: sBadge},
	// Writes.
	{name: "insert plain column into encrypted", sql: `INSERT INTO patients (ssn) SELECT name FROM patients`, code: na, column: pSSN},
	{name: "insert expression into encrypted", sql: `INSERT INTO patients (ssn) VALUES (lower('X'))`, code: na, column: pSSN},
	{name: "insert ciphertext into plain column", sql: `INSERT INTO other.patients (ssn) SELECT ssn FROM patients`, code: na, column: pSSN, contains: "plain column"},
	{name: "insert ciphertext into plain column of same table", sql: `INSERT INTO patients (name) SELECT ssn FROM patients`, code: na, column: pSSN},
	{name: "insert other key", sql: `INSERT INTO patients (ssn) SELECT badge FROM staff`, code: na, column: pSSN},
	{name: "insert randomized copy across columns", sql: `INSERT INTO patients (diagnosis) SELECT note FROM visits`, code: na, column: pDiag},
	{name: "insert unknown columns", sql: `INSERT INTO legacy VALUES ('x')`, code: na, contains: "column list"},
	{name: "insert select star of unknown", sql: `INSERT INTO patients SELECT * FROM legacy`, code: na},
	{name: "insert subscript on encrypted", sql: `INSERT INTO patients (ssn[1]) VALUES ('x')`, code: na, column: pSSN},
	{name: "on conflict randomized", sql: `INSERT INTO patients (diagnosis) VALUES ('x') ON CONFLICT (diagnosis) DO NOTHING`, code: na, column: pDiag},
	{name: "on conflict expression", sql: `INSERT INTO patients (ssn) VALUES ('x') ON CONFLICT (lower(ssn)) DO NOTHING`, code: na, column: pSSN},
	{name: "on conflict set from other column", sql: `INSERT INTO patients (ssn) VALUES ('x') ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.name`, code: na, column: pSSN},
	{name: "on conflict set randomized across", sql: `INSERT INTO patients (ssn) VALUES ('x') ON CONFLICT (id) DO UPDATE SET diagnosis = EXCLUDED.dob`, code: na, column: pDiag},
	{name: "update from plain column", sql: `UPDATE patients SET ssn = name`, code: na, column: pSSN},
	{name: "update ciphertext into plain", sql: `UPDATE patients SET name = ssn`, code: na, column: pSSN},
	{name: "update randomized across columns", sql: `UPDATE patients SET diagnosis = dob`, code: na, column: pDiag},
	{name: "update expression", sql: `UPDATE patients SET ssn = 'a' || 'b'`, code: na, column: pSSN},
	{name: "update where like", sql: `UPDATE patients SET name = 'x' WHERE ssn LIKE '1%'`, code: na, column: pSSN},
	{name: "update from visits with plain", sql: `UPDATE patients SET ssn = v.id FROM visits v`, code: na, column: pSSN},
	{name: "delete where randomized", sql: `DELETE FROM visits WHERE note = 'x'`, code: na, column: vNote},
	{name: "multi-statement with a refused statement", sql: `BEGIN; SELECT * FROM patients WHERE ssn = 'ok'; SELECT * FROM patients ORDER BY ssn; COMMIT`, code: na, column: pSSN},
	{name: "function in FROM is lateral", sql: `SELECT * FROM patients p, unnest(ARRAY[p.ssn]) u`, code: na, column: pSSN},
	{name: "lateral function on encrypted", sql: `SELECT * FROM patients p CROSS JOIN LATERAL lower(p.ssn) l WHERE l = 'x'`, code: na, column: pSSN},
	{name: "position over unknown star", sql: `SELECT * FROM legacy l, patients p ORDER BY 2`, code: na},
	// Names and shapes the analysis cannot check.
	{name: "aliases over unknown columns", sql: `SELECT * FROM legacy AS l(a, b)`, code: na},
	{name: "subquery aliases over unknown star", sql: `SELECT * FROM (SELECT * FROM legacy) AS t(a)`, code: na},
	{name: "recursive forward reference", sql: `WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT ssn FROM patients) SELECT * FROM a WHERE ssn = 'x'`, code: na, contains: "forward reference"},
	{name: "merge", sql: `MERGE INTO patients p USING visits v ON p.ssn = v.patient_ssn WHEN MATCHED THEN DELETE`, code: na, contains: "MERGE"},
	{name: "NUL byte", sql: "SELECT 1\x00; SELECT ssn FROM patients", code: CodeSyntaxError},
	{name: "unparsable mentioning encrypted relation", sql: `SELECT * FROM patients WHERE ssn = = 'x'`, code: CodeSyntaxError, contains: "patients"},
	{name: "unparsable quoted mention", sql: `INSERT INTO "PATIENTS" VALUES ('x' ,,`, code: CodeSyntaxError},
	{name: "unparsable unterminated string", sql: `INSERT INTO patients VALUES ('123-45`, code: CodeSyntaxError},
	// set_config.
	{name: "set_config role in where", sql: `SELECT 1 WHERE set_config('role', 'doctor', false) IS NOT NULL`, code: na, contains: "set_config"},
	{name: "set_config role with from", sql: `SELECT set_config('role', 'doctor', false) FROM generate_series(1, 0)`, code: na},
	{name: "set_config value not constant", sql: `SELECT set_config('search_path', current_user, false)`, code: na},
	{name: "set_config name not constant", sql: `SELECT set_config($1, 'x', false)`, code: na},
	{name: "set_config flag not constant", sql: `SELECT set_config('timezone', 'UTC', $1)`, code: na},
	{name: "set_config nested", sql: `SELECT upper(set_config('role', 'doctor', false))`, code: na},
	{name: "set_config in prepare", sql: `PREPARE p AS SELECT set_config('role', 'doctor', false)`, code: na},
	{name: "set_config in explain", sql: `EXPLAIN ANALYZE SELECT set_config('role', 'doctor', false)`, code: na},
	{name: "set time zone odd interval", sql: `SET TIME ZONE INTERVAL '1:30:15' HOUR TO MINUTE`, code: na},
	{name: "set time zone hex", sql: `SET TIME ZONE '0x10'`, code: na},
	// COPY.
	{name: "copy to server file", sql: `COPY patients TO '/tmp/p.csv'`, code: na, contains: "server file"},
	{name: "copy from program", sql: `COPY patients FROM PROGRAM 'cat /tmp/x'`, code: na},
	{name: "copy query", sql: `COPY (SELECT ssn FROM patients) TO STDOUT`, code: na, contains: "COPY (query)"},
	{name: "copy query with only plain columns of encrypted relation", sql: `COPY (SELECT name FROM patients WHERE ssn = 'x') TO STDOUT`, code: na},
	{name: "copy unknown columns", sql: `COPY legacy FROM STDIN`, code: na, contains: "column list"},
	{name: "copy force not null", sql: `COPY patients FROM STDIN (FORMAT csv, FORCE_NOT_NULL (ssn))`, code: na, column: pSSN},
	{name: "copy force quote star", sql: `COPY patients TO STDOUT (FORMAT csv, FORCE_QUOTE *)`, code: na},
	{name: "copy encoding", sql: `COPY patients FROM STDIN (ENCODING 'LATIN1')`, code: na, contains: "ENCODING"},
	{name: "copy default marker", sql: `COPY patients FROM STDIN (DEFAULT '\D')`, code: na},
	{name: "copy where on encrypted", sql: `COPY patients FROM STDIN WHERE ssn IS NULL`, code: na, column: pSSN},
	{name: "copy multibyte delimiter", sql: `COPY patients FROM STDIN (DELIMITER '§')`, code: na},
	// DDL and utilities.
	{name: "alter column default", sql: `ALTER TABLE patients ALTER COLUMN ssn SET DEFAULT 'x'`, code: na, column: pSSN},
	{name: "add check", sql: `ALTER TABLE patients ADD CHECK (ssn <> '')`, code: na, column: pSSN},
	{name: "alter type using", sql: `ALTER TABLE patients ALTER COLUMN name TYPE text USING convert_from(ssn, 'UTF8')`, code: na, column: pSSN},
	{name: "alter encrypted column type", sql: `ALTER TABLE patients ALTER COLUMN ssn TYPE text`, code: na, column: pSSN, contains: "type:bytea"},
	{name: "alter encrypted column to bytea using", sql: `ALTER TABLE patients ALTER COLUMN ssn TYPE bytea USING decode('00', 'hex')`, code: na, column: pSSN},
	{name: "alter encrypted column to varchar", sql: `ALTER TABLE patients ALTER COLUMN ssn TYPE varchar(20)`, code: na, column: pSSN},
	{name: "add generated column over encrypted", sql: `ALTER TABLE patients ADD COLUMN l int GENERATED ALWAYS AS (length(ssn)) STORED`, code: na, column: pSSN},
	{name: "add unique on randomized", sql: `ALTER TABLE patients ADD UNIQUE (diagnosis)`, code: na, column: pDiag},
	{name: "add foreign key on encrypted", sql: `ALTER TABLE visits ADD FOREIGN KEY (patient_ssn) REFERENCES patients (ssn)`, code: na, column: vSSN},
	{name: "attach partition", sql: `ALTER TABLE patients ATTACH PARTITION p2024 FOR VALUES IN (1)`, code: na},
	{name: "inherit", sql: `CREATE TABLE child () INHERITS (patients)`, code: na, contains: "inheriting"},
	{name: "partition of", sql: `CREATE TABLE p2 PARTITION OF public.patients FOR VALUES IN (2)`, code: na},
	{name: "index on expression", sql: `CREATE INDEX ON patients (lower(ssn))`, code: na, column: pSSN},
	{name: "index on randomized", sql: `CREATE INDEX ON patients (diagnosis)`, code: na, column: pDiag},
	{name: "index method", sql: `CREATE INDEX ON patients USING brin (ssn)`, code: na, column: pSSN},
	{name: "index predicate", sql: `CREATE INDEX ON patients (name) WHERE ssn IS NOT NULL`, code: na, column: pSSN},
	{name: "index opclass", sql: `CREATE INDEX ON patients (ssn bytea_ops)`, code: na, column: pSSN},
	{name: "function body", sql: `CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM patients WHERE ssn = '1' $$`, code: na, contains: "patients"},
	{name: "atomic function body", sql: `CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM patients; END`, code: na},
	{name: "do block", sql: `DO $$ BEGIN UPDATE patients SET ssn = '1'; END $$`, code: na, contains: "DO"},
	{name: "trigger", sql: `CREATE TRIGGER t BEFORE INSERT ON patients FOR EACH ROW EXECUTE FUNCTION f()`, code: na},
	{name: "row level policy", sql: `CREATE POLICY p ON patients USING (ssn = current_user)`, code: na},
	{name: "rule", sql: `CREATE RULE r AS ON INSERT TO other.t DO INSTEAD INSERT INTO patients (ssn) VALUES (NEW.x)`, code: na},
	{name: "statistics", sql: `CREATE STATISTICS s ON ssn, name FROM patients`, code: na},
	// PREPARE / EXECUTE.
	{name: "prepare refused body", sql: `PREPARE p AS SELECT * FROM patients WHERE ssn LIKE $1`, code: na, column: pSSN},
	{name: "execute expression for encrypted param", sql: `EXECUTE byssn(lower('X'))`, code: na, column: pSSN, contains: "constant or NULL"},
	{name: "execute param for encrypted param", sql: `EXECUTE byssn($1)`, code: na, column: pSSN},
	{name: "execute unknown statement with arguments", sql: `EXECUTE nosuch('x', 1)`, code: na, contains: "did not see prepared"},
}

func TestAnalyzeRefuses(t *testing.T) {
	for _, tc := range refuseCases {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv()
			env.Prepared = testPrepared
			if tc.env != nil {
				tc.env(env)
			}
			p, err := Analyze(tc.sql, env)
			if err == nil {
				got, _ := p.Rewrite(fakeEncrypt)
				t.Fatalf("accepted, want %s; rewritten: %s", tc.code, got)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.Code != tc.code {
				t.Errorf("code = %s, want %s (%s)", e.Code, tc.code, e.Message)
			}
			if tc.column != "" && (e.Column != tc.column || !strings.Contains(e.Message, tc.column)) {
				t.Errorf("column = %q in %q, want %q named", e.Column, e.Message, tc.column)
			}
			if tc.contains != "" && !strings.Contains(e.Message, tc.contains) {
				t.Errorf("message %q does not contain %q", e.Message, tc.contains)
			}
			assertNoLiteralLeak(t, tc.sql, e.Message)
		})
	}
}

// assertNoLiteralLeak checks that no string constant of the statement
// appears in the message (names of relations and columns may).
func assertNoLiteralLeak(t *testing.T, sql, msg string) {
	t.Helper()
	for _, lit := range []string{"123-45", "doctor", "flu", "plain ok", "none"} {
		if strings.Contains(sql, lit) && strings.Contains(msg, lit) {
			t.Errorf("message %q repeats the constant %q", msg, lit)
		}
	}
}

// testPrepared is the session's SQL-level prepared statements.
func testPrepared(name string) (*Prepared, bool) {
	switch name {
	case "byssn":
		return &Prepared{Name: name, Params: []*ParamRule{{Rule: ruleSSN}},
			Statement: &Statement{Kind: KindSelect, Searches: rulesOf(ruleSSN), Outputs: rulesOf(ruleDiagnosis)}}, true
	case "add":
		return &Prepared{Name: name, Params: []*ParamRule{nil, {Rule: ruleSSN, Write: true}, {Rule: ruleDiagnosis, Write: true}},
			Statement: &Statement{Kind: KindInsert, Writes: rulesOf(ruleSSN, ruleDiagnosis)}}, true
	}
	return nil, false
}

// TestSyntaxRefusalsCarryPosition: a syntax error pgcloak refuses in place
// of PostgreSQL keeps the position PostgreSQL 15 reports for the same text
// (1-based, in characters; figures read from psql).
func TestSyntaxRefusalsCarryPosition(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		risk LexRisk
		want int
	}{
		{sql: `SELECT * FROM patients WHERE ssn = = 'x'`, want: 36},
		{sql: `SELECT 'ééé' FROM patients WHERE ssn = = 'x'`, want: 40},
		{sql: `INSERT INTO patients VALUES ('123-45`, want: 30},
		{sql: `SELECT 'é', 1_000 FROM patients`, risk: RiskPre16Numbers, want: 13},
		// Tokenized before parsing (the numeric literal check): the lexer's error.
		{sql: `INSERT INTO patients VALUES ('123_45`, risk: RiskPre16Numbers, want: 30},
	} {
		env := testEnv()
		env.LexRisk = tc.risk
		_, err := Analyze(tc.sql, env)
		var refusal *Error
		if !errors.As(err, &refusal) || refusal.Code != CodeSyntaxError {
			t.Fatalf("%q: %v, want a 42601 refusal", tc.sql, err)
		}
		if refusal.Position != tc.want {
			t.Errorf("%q: position %d, want %d", tc.sql, refusal.Position, tc.want)
		}
	}
}
