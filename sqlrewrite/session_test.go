package sqlrewrite

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// sessionCase is a statement whose interest is its kind and effects.
type sessionCase struct {
	name      string
	sql       string
	kind      Kind
	effects   []Effect
	tx        TxOp
	savepoint string
}

var sessionCases = []sessionCase{
	{name: "set role", sql: `SET ROLE doctor`, kind: KindSet, effects: []Effect{{Setting: SettingRole, Values: []string{"doctor"}}}},
	{name: "set role quoted", sql: `SET ROLE "Dr Who"`, kind: KindSet, effects: []Effect{{Setting: SettingRole, Values: []string{"Dr Who"}}}},
	{name: "set role none", sql: `SET ROLE NONE`, kind: KindSet, effects: []Effect{{Setting: SettingRole, Values: []string{""}}}},
	{name: "set local role", sql: `SET LOCAL ROLE billing`, kind: KindSet, effects: []Effect{{Setting: SettingRole, Values: []string{"billing"}, Local: true}}},
	{name: "reset role", sql: `RESET ROLE`, kind: KindSet, effects: []Effect{{Setting: SettingRole, Reset: true}}},
	{name: "set session authorization", sql: `SET SESSION AUTHORIZATION alice`, kind: KindSet,
		effects: []Effect{{Setting: SettingSessionAuthorization, Values: []string{"alice"}}}},
	{name: "set session authorization default", sql: `SET SESSION AUTHORIZATION DEFAULT`, kind: KindSet,
		effects: []Effect{{Setting: SettingSessionAuthorization, Reset: true}}},
	{name: "reset session authorization", sql: `RESET SESSION AUTHORIZATION`, kind: KindSet,
		effects: []Effect{{Setting: SettingSessionAuthorization, Reset: true}}},
	{name: "search_path list", sql: `SET search_path TO a, "B", public`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"a", "B", "public"}}}},
	{name: "search_path string is one schema", sql: `SET search_path = 'a, b'`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"a, b"}}}},
	{name: "search_path user", sql: `SET search_path = "$user", public`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"$user", "public"}}}},
	{name: "search_path default", sql: `SET search_path = DEFAULT`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Reset: true}}},
	{name: "search_path session", sql: `SET SESSION search_path TO archive`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"archive"}}}},
	{name: "search_path local", sql: `SET LOCAL search_path TO archive`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"archive"}, Local: true}}},
	{name: "search_path quoted name case-insensitive", sql: `SET "Search_Path" TO x`, kind: KindSet,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"x"}}}},
	{name: "reset search_path", sql: `RESET search_path`, kind: KindSet, effects: []Effect{{Setting: SettingSearchPath, Reset: true}}},
	{name: "time zone name", sql: `SET TIME ZONE 'Europe/Paris'`, kind: KindSet,
		effects: []Effect{{Setting: SettingTimeZone, Values: []string{"Europe/Paris"}}}},
	{name: "timezone setting", sql: `SET timezone = 'UTC'`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Values: []string{"UTC"}}}},
	{name: "time zone local", sql: `SET TIME ZONE LOCAL`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Reset: true}}},
	{name: "time zone default", sql: `SET TIME ZONE DEFAULT`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Reset: true}}},
	{name: "time zone hours", sql: `SET TIME ZONE -7`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Values: []string{"<-07>+07"}}}},
	{name: "time zone fractional hours", sql: `SET LOCAL TIME ZONE 5.5`, kind: KindSet,
		effects: []Effect{{Setting: SettingTimeZone, Values: []string{"<+05:30>-05:30"}, Local: true}}},
	{name: "time zone numeric string", sql: `SET timezone TO '3'`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Values: []string{"<+03>-03"}}}},
	{name: "time zone interval", sql: `SET TIME ZONE INTERVAL '-08:00' HOUR TO MINUTE`, kind: KindSet,
		effects: []Effect{{Setting: SettingTimeZone, Values: []string{"<-08>+08"}}}},
	{name: "posix time zone", sql: `SET TIME ZONE '+05:30'`, kind: KindSet, effects: []Effect{{Setting: SettingTimeZone, Values: []string{"+05:30"}}}},
	{name: "reset all", sql: `RESET ALL`, kind: KindSet, effects: []Effect{{Setting: SettingAll}}},
	{name: "untracked setting", sql: `SET statement_timeout = '5s'`, kind: KindSet},
	{name: "set transaction", sql: `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`, kind: KindSet},
	{name: "show", sql: `SHOW search_path`, kind: KindOther},
	{name: "discard all", sql: `DISCARD ALL`, kind: KindSet, effects: []Effect{{Setting: SettingDiscardAll}}},
	{name: "discard plans", sql: `DISCARD PLANS`, kind: KindOther},
	{name: "set_config search_path", sql: `SELECT set_config('search_path', 'a, "B",public', false)`, kind: KindSelect,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"a", "B", "public"}, Claimed: true}}},
	{name: "set_config role local", sql: `SELECT pg_catalog.set_config('role', 'doctor', true)`, kind: KindSelect,
		effects: []Effect{{Setting: SettingRole, Values: []string{"doctor"}, Local: true, Claimed: true}}},
	{name: "set_config role none", sql: `SELECT set_config('ROLE', 'none', 'f')`, kind: KindSelect,
		effects: []Effect{{Setting: SettingRole, Values: []string{""}, Claimed: true}}},
	{name: "set_config timezone numeric", sql: `SELECT set_config('TimeZone', '-2', false) AS tz`, kind: KindSelect,
		effects: []Effect{{Setting: SettingTimeZone, Values: []string{"<-02>+02"}, Claimed: true}}},
	{name: "set_config two effects", sql: `SELECT set_config('search_path', 'x', false), set_config('timezone', 'UTC', true)`, kind: KindSelect,
		effects: []Effect{{Setting: SettingSearchPath, Values: []string{"x"}, Claimed: true}, {Setting: SettingTimeZone, Values: []string{"UTC"}, Local: true, Claimed: true}}},
	{name: "set_config untracked", sql: `SELECT set_config('work_mem', '64MB', false) FROM t`, kind: KindSelect},
	{name: "begin", sql: `BEGIN`, kind: KindTransaction, tx: TxBegin},
	{name: "start transaction", sql: `START TRANSACTION ISOLATION LEVEL REPEATABLE READ`, kind: KindTransaction, tx: TxBegin},
	{name: "commit", sql: `COMMIT`, kind: KindTransaction, tx: TxCommit},
	{name: "end", sql: `END`, kind: KindTransaction, tx: TxCommit},
	{name: "rollback", sql: `ROLLBACK`, kind: KindTransaction, tx: TxRollback},
	{name: "abort", sql: `ABORT`, kind: KindTransaction, tx: TxRollback},
	{name: "savepoint", sql: `SAVEPOINT s1`, kind: KindTransaction, tx: TxSavepoint, savepoint: "s1"},
	{name: "release savepoint", sql: `RELEASE SAVEPOINT s1`, kind: KindTransaction, tx: TxRelease, savepoint: "s1"},
	{name: "release", sql: `RELEASE "S 2"`, kind: KindTransaction, tx: TxRelease, savepoint: "S 2"},
	{name: "rollback to savepoint", sql: `ROLLBACK TO SAVEPOINT s1`, kind: KindTransaction, tx: TxRollbackTo, savepoint: "s1"},
	{name: "rollback to", sql: `ROLLBACK TO s1`, kind: KindTransaction, tx: TxRollbackTo, savepoint: "s1"},
	{name: "prepare transaction", sql: `PREPARE TRANSACTION 'gid'`, kind: KindTransaction, tx: TxPrepare},
	{name: "commit prepared", sql: `COMMIT PREPARED 'gid'`, kind: KindOther},
	{name: "rollback prepared", sql: `ROLLBACK PREPARED 'gid'`, kind: KindOther},
}

func TestSessionStatements(t *testing.T) {
	for _, tc := range sessionCases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustAnalyze(t, tc.sql, testEnv())
			if len(p.Statements) != 1 {
				t.Fatalf("%d statements", len(p.Statements))
			}
			st := p.Statements[0]
			if st.Kind != tc.kind {
				t.Errorf("kind = %d, want %d", st.Kind, tc.kind)
			}
			if !reflect.DeepEqual(st.Effects, tc.effects) {
				t.Errorf("effects = %+v, want %+v", st.Effects, tc.effects)
			}
			if st.Tx != tc.tx || st.Savepoint != tc.savepoint {
				t.Errorf("tx = %d %q, want %d %q", st.Tx, st.Savepoint, tc.tx, tc.savepoint)
			}
			if len(p.Edits) != 0 {
				t.Errorf("unexpected edits %+v", p.Edits)
			}
		})
	}
}

func TestTransactionChainAndDiscard(t *testing.T) {
	p := mustAnalyze(t, `COMMIT AND CHAIN; ROLLBACK AND NO CHAIN; DISCARD TEMP; DISCARD ALL`, testEnv())
	if p.Statements[0].Tx != TxCommit || p.Statements[1].Tx != TxRollback {
		t.Errorf("transaction ops wrong: %+v %+v", p.Statements[0], p.Statements[1])
	}
	if p.Statements[2].Kind != KindOther || len(p.Statements[2].Effects) != 0 {
		t.Errorf("DISCARD TEMP: %+v", p.Statements[2])
	}
	if st := p.Statements[3]; st.Kind != KindSet || len(st.Effects) != 1 || st.Effects[0].Setting != SettingDiscardAll {
		t.Errorf("DISCARD ALL: %+v", st)
	}
}

func TestParseSearchPath(t *testing.T) {
	for in, want := range map[string][]string{
		``:                         {},
		`public`:                   {"public"},
		` a , B,"C d" ,  "e""f" `:  {"a", "b", "C d", `e"f`},
		`"$user", public`:          {"$user", "public"},
		`MySchema,"MySchema"`:      {"myschema", "MySchema"},
		`a,,b`:                     {"a", "b"},
		`x y, z`:                   {"x", "z"},
		`"unterminated, still one`: {"unterminated, still one"},
	} {
		if got := ParseSearchPath(in); !reflect.DeepEqual(got, want) {
			t.Errorf("ParseSearchPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// planCase checks a whole plan with a function.
type planCase struct {
	name  string
	sql   string
	env   func(*Env)
	want  string // rewritten SQL; "" means unchanged
	check func(t *testing.T, p *Plan)
}

func kinds(p *Plan) []Kind {
	var out []Kind
	for _, s := range p.Statements {
		out = append(out, s.Kind)
	}
	return out
}

func expectKinds(want ...Kind) func(*testing.T, *Plan) {
	return func(t *testing.T, p *Plan) {
		t.Helper()
		if got := kinds(p); !reflect.DeepEqual(got, want) {
			t.Errorf("kinds = %v, want %v", got, want)
		}
	}
}

var planCases = []planCase{
	{name: "multi-statement ranges", sql: "BEGIN;\n  INSERT INTO patients (ssn) VALUES ('a') ;  SELECT 1;COMMIT",
		want: "BEGIN;\n  INSERT INTO \"public\".patients (ssn) VALUES ('<encw:public.patients.ssn:a>') ;  SELECT 1;COMMIT",
		check: func(t *testing.T, p *Plan) {
			expectKinds(KindTransaction, KindInsert, KindSelect, KindTransaction)(t, p)
			var texts []string
			for _, s := range p.Statements {
				texts = append(texts, p.SQL[s.Start:s.End])
			}
			want := []string{"BEGIN", "INSERT INTO patients (ssn) VALUES ('a')", "SELECT 1", "COMMIT"}
			if !reflect.DeepEqual(texts, want) {
				t.Errorf("statement texts = %q, want %q", texts, want)
			}
			if ruleNames(p.Statements[1].Writes) != pSSN || len(p.Statements[2].Writes) != 0 {
				t.Errorf("writes attributed to the wrong statement")
			}
		}},
	{name: "multi-statement params and edits", sql: `SELECT 1 FROM patients WHERE ssn = 'a'; UPDATE visits SET note = 'n' WHERE patient_ssn = 'b'`,
		want:  `SELECT 1 FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>'])); UPDATE "public".visits SET note = '<encw:public.visits.note:n>' WHERE (patient_ssn = ANY(ARRAY['<cands:public.visits.patient_ssn:b>']))`,
		check: expectKinds(KindSelect, KindUpdate)},
	{name: "empty", sql: ``, check: expectKinds()},
	{name: "only a comment", sql: `-- nothing here`, check: expectKinds()},
	{name: "unparsable without encrypted names", sql: `SELEC 1 FROM t`, check: func(t *testing.T, p *Plan) {
		expectKinds(KindOther)(t, p)
		if p.Statements[0].End != len(p.SQL) {
			t.Errorf("range %d-%d", p.Statements[0].Start, p.Statements[0].End)
		}
	}},
	{name: "unparsable unterminated without encrypted names", sql: `SELECT 1; SELECT 'abc`, check: expectKinds(KindOther)},
	// PREPARE / EXECUTE / DEALLOCATE.
	{name: "prepare with types", sql: `PREPARE q (int, text, varchar(10), date) AS SELECT name FROM patients WHERE id = $1 AND ssn = $2 AND ssn <> $3::text AND diagnosis IS NULL`,
		want: `PREPARE q (int, bytea, bytea, date) AS SELECT name FROM "public".patients WHERE id = $1 AND (ssn = ANY(ARRAY[$5, $6, $7, $8, $9, $10, $11, $12]::bytea[])) AND (ssn <> ALL(ARRAY[$13, $14, $15, $16, $17, $18, $19, $20]::bytea[])) AND diagnosis IS NULL`,
		check: func(t *testing.T, p *Plan) {
			expectKinds(KindPrepare)(t, p)
			pr := p.Statements[0].Prepare
			if pr == nil || pr.Name != "q" || pr.ClientParams != 4 ||
				paramNames(pr.Params) != "$1=-,$2="+pSSN+"/r,$3="+pSSN+"/r,$4=-,$5..$12="+pSSN+"/c$2,$13..$20="+pSSN+"/c$3" {
				t.Fatalf("prepared = %+v", pr)
			}
			if pr.Statement.Kind != KindSelect || ruleNames(pr.Statement.Searches) != pSSN {
				t.Errorf("prepared statement = %+v", pr.Statement)
			}
			if len(p.Params) != 0 {
				t.Errorf("PREPARE's $n are not bind parameters: %s", paramNames(p.Params))
			}
		}},
	{name: "prepare insert with literal", sql: `PREPARE ins AS INSERT INTO patients (ssn, diagnosis) VALUES ($1, 'fixed')`,
		want: `PREPARE ins AS INSERT INTO "public".patients (ssn, diagnosis) VALUES ($1, '<encw:public.patients.diagnosis:fixed>')`,
		check: func(t *testing.T, p *Plan) {
			pr := p.Statements[0].Prepare
			if paramNames(pr.Params) != "$1="+pSSN+"/w" || ruleNames(pr.Statement.Writes) != pDiag+","+pSSN {
				t.Errorf("prepared = %s %s", paramNames(pr.Params), ruleNames(pr.Statement.Writes))
			}
		}},
	{name: "execute constants", sql: `EXECUTE add(1, 'ssn-1', E'flu\n')`,
		env:  func(e *Env) { e.Prepared = testPrepared },
		want: `EXECUTE add(1, '<encw:public.patients.ssn:ssn-1>', '<encw:public.patients.diagnosis:flu` + "\n" + `>')`,
		check: func(t *testing.T, p *Plan) {
			st := p.Statements[0]
			if st.Kind != KindExecute || st.Execute != "add" || ruleNames(st.Writes) != pDiag+","+pSSN {
				t.Errorf("execute = %+v", st)
			}
		}},
	{name: "execute null and outputs", sql: `EXECUTE byssn(NULL)`, env: func(e *Env) { e.Prepared = testPrepared },
		check: func(t *testing.T, p *Plan) {
			st := p.Statements[0]
			if ruleNames(st.Outputs) != pDiag || ruleNames(st.Searches) != pSSN {
				t.Errorf("execute = %+v", st)
			}
		}},
	{name: "execute search literal", sql: `EXECUTE byssn('x')`, env: func(e *Env) { e.Prepared = testPrepared },
		want: `EXECUTE byssn('<enc:public.patients.ssn:x>')`},
	{name: "execute unknown without arguments passes", sql: `EXECUTE nosuch`, env: func(e *Env) { e.Prepared = testPrepared },
		check: expectKinds(KindExecute)},
	{name: "deallocate", sql: `DEALLOCATE q; DEALLOCATE PREPARE q; DEALLOCATE ALL`, check: func(t *testing.T, p *Plan) {
		expectKinds(KindDeallocate, KindDeallocate, KindDeallocate)(t, p)
		if p.Statements[0].Deallocate != "q" || p.Statements[1].Deallocate != "q" || p.Statements[2].Deallocate != "" {
			t.Errorf("deallocate names wrong")
		}
	}},
	// COPY.
	{name: "copy from stdin csv header", sql: `COPY patients FROM STDIN WITH CSV HEADER`,
		want:  `COPY "public".patients ("id", "name", "ssn", "diagnosis", "dob") FROM STDIN WITH CSV HEADER`,
		check: expectCopy(true, []string{"id", "name", "ssn", "diagnosis", "dob"}, CopyFormat{Kind: "csv", Delimiter: ',', Quote: '"', Escape: '"', Header: true})},
	{name: "copy to stdout binary", sql: `COPY public.patients TO STDOUT BINARY`,
		want:  `COPY public.patients ("id", "name", "ssn", "diagnosis", "dob") TO STDOUT BINARY`,
		check: expectCopy(false, []string{"id", "name", "ssn", "diagnosis", "dob"}, CopyFormat{Kind: "binary"})},
	{name: "copy columns and options", sql: `COPY "public".patients (id, ssn) FROM STDIN (FORMAT csv, DELIMITER ';', NULL 'NIL', HEADER MATCH, QUOTE '''', ESCAPE '\', FREEZE, FORCE_NOT_NULL (id))`,
		check: expectCopy(true, []string{"id", "ssn"}, CopyFormat{Kind: "csv", Delimiter: ';', Null: "NIL", Header: true, Quote: '\'', Escape: '\\'})},
	{name: "copy text defaults", sql: `COPY "public".visits (note) TO STDOUT`,
		check: expectCopy(false, []string{"note"}, CopyFormat{Kind: "text", Delimiter: '\t', Null: `\N`})},
	{name: "copy old syntax", sql: `COPY "public".visits (note) FROM STDIN DELIMITER '|' NULL AS '' CSV QUOTE AS '"'`,
		check: expectCopy(true, []string{"note"}, CopyFormat{Kind: "csv", Delimiter: '|', Quote: '"', Escape: '"'})},
	{name: "copy header off", sql: `COPY "public".visits (note) TO STDOUT (FORMAT text, HEADER false)`,
		check: expectCopy(false, []string{"note"}, CopyFormat{Kind: "text", Delimiter: '\t', Null: `\N`})},
	{name: "copy where on plain column", sql: `COPY "public".visits (id, note) FROM STDIN WHERE id > 5`,
		check: expectCopy(true, []string{"id", "note"}, CopyFormat{Kind: "text", Delimiter: '\t', Null: `\N`})},
	{name: "copy plain relation", sql: `COPY other.patients FROM STDIN`, check: func(t *testing.T, p *Plan) {
		expectKinds(KindCopy)(t, p)
		if p.Statements[0].Copy != nil {
			t.Error("plan for a plain relation")
		}
	}},
	{name: "copy plain relation to file", sql: `COPY other.patients TO '/tmp/x'`, check: expectKinds(KindOther)},
	{name: "copy plain query", sql: `COPY (SELECT 1) TO STDOUT`, check: expectKinds(KindCopy)},
	{name: "copy of a qualified temp table", sql: `COPY pg_temp.patients TO '/tmp/x'`, check: expectKinds(KindOther)},
	// DDL and utilities.
	{name: "create temp table", sql: `CREATE TEMP TABLE patients (id int, ssn text)`, check: expectKinds(KindDDL)},
	{name: "create temp view and select into temp", sql: `CREATE TEMPORARY VIEW v AS SELECT 1; SELECT 1 AS a INTO TEMP t2; CREATE TABLE pg_temp.t3 (a int)`,
		check: expectKinds(KindDDL, KindDDL, KindDDL)},
	{name: "drop tables", sql: `DROP TABLE patients, pg_temp.x, other.patients`, check: expectKinds(KindDDL)},
	{name: "rename plain table", sql: `ALTER TABLE other.patients RENAME TO p2`, check: expectKinds(KindDDL)},
	{name: "drop encrypted table", sql: `DROP TABLE patients CASCADE`, check: expectKinds(KindDDL)},
	{name: "rename view column", sql: `ALTER TABLE patient_names RENAME COLUMN ssn TO ssn2`, check: expectKinds(KindDDL)},
	{name: "truncate grant lock vacuum", sql: `TRUNCATE patients; GRANT SELECT (ssn) ON patients TO doctor; LOCK TABLE patients IN SHARE MODE; VACUUM ANALYZE patients (ssn)`,
		check: expectKinds(KindOther, KindOther, KindOther, KindOther)},
	{name: "comment cluster reindex", sql: `COMMENT ON COLUMN patients.ssn IS 'social security number'; CLUSTER patients USING pk; REINDEX TABLE patients`,
		check: expectKinds(KindOther, KindOther, KindOther)},
	{name: "alter table harmless", sql: `ALTER TABLE "public".patients ADD COLUMN notes text DEFAULT 'none', ALTER COLUMN ssn SET NOT NULL, OWNER TO admin, ALTER COLUMN ssn DROP DEFAULT`,
		check: expectKinds(KindDDL)},
	{name: "alter table unique on deterministic", sql: `ALTER TABLE "public".patients ADD CONSTRAINT u UNIQUE (ssn), ADD CHECK (id > 0)`, check: expectKinds(KindDDL)},
	{name: "add encrypted column", sql: `ALTER TABLE "public".visits ADD COLUMN patient_ssn bytea NOT NULL`, check: expectKinds(KindDDL)},
	{name: "create index on deterministic", sql: `CREATE UNIQUE INDEX ON "public".patients (ssn); CREATE INDEX ON "public".patients USING hash ((ssn)); CREATE INDEX ON "public".patients (name, ssn DESC) INCLUDE (diagnosis) WHERE id > 5`,
		check: expectKinds(KindOther, KindOther, KindOther)},
	{name: "create table like", sql: `CREATE TABLE copy (LIKE patients INCLUDING ALL)`, check: expectKinds(KindDDL)},
	{name: "create table referencing plain", sql: `CREATE TABLE notes (id int REFERENCES patients (id))`, check: expectKinds(KindDDL)},
	{name: "create view with join", sql: `CREATE VIEW flagged AS SELECT p.id, p.ssn FROM patients p JOIN visits v ON v.patient_ssn = p.ssn`,
		want: `CREATE VIEW flagged AS SELECT p.id, p.ssn FROM "public".patients p JOIN "public".visits v ON v.patient_ssn = p.ssn`,
		check: func(t *testing.T, p *Plan) {
			expectKinds(KindDDL)(t, p)
			if len(p.Statements[0].Outputs) != 0 {
				t.Errorf("view statement = %+v", p.Statements[0])
			}
		}},
	{name: "create materialized view", sql: `CREATE MATERIALIZED VIEW mv AS SELECT ssn FROM "public".patients`, check: expectKinds(KindDDL)},
	{name: "create table as plain", sql: `CREATE TABLE names AS SELECT name FROM "public".patients WHERE ssn = $1`,
		want: `CREATE TABLE names AS SELECT name FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`,
		check: func(t *testing.T, p *Plan) {
			expectKinds(KindDDL)(t, p)
			if paramNames(p.Params) != "$1="+pSSN+"/r,$2..$9="+pSSN+"/c$1" || p.ClientParams != 1 {
				t.Errorf("params %s", paramNames(p.Params))
			}
		}},
	{name: "explain", sql: `EXPLAIN (ANALYZE, COSTS OFF) UPDATE patients SET ssn = 'x' WHERE ssn = 'y'`,
		want: `EXPLAIN (ANALYZE, COSTS OFF) UPDATE "public".patients SET ssn = '<encw:public.patients.ssn:x>' WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:y>']))`,
		check: func(t *testing.T, p *Plan) {
			st := p.Statements[0]
			if st.Kind != KindOther || ruleNames(st.Writes) != pSSN || len(st.Outputs) != 0 {
				t.Errorf("explain = %+v", st)
			}
		}},
	{name: "declare cursor", sql: `DECLARE c CURSOR FOR SELECT ssn FROM patients WHERE ssn = 'x'`,
		want: `DECLARE c CURSOR FOR SELECT ssn FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`,
		check: func(t *testing.T, p *Plan) {
			if ruleNames(p.Statements[0].Outputs) != pSSN {
				t.Errorf("cursor outputs %s", ruleNames(p.Statements[0].Outputs))
			}
		}},
	{name: "function without encrypted names", sql: `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; DO $$ BEGIN PERFORM 1; END $$`,
		check: expectKinds(KindOther, KindOther)},
	{name: "call", sql: `CALL proc('x')`, check: expectKinds(KindOther)},
	{name: "listen notify", sql: `LISTEN ch; NOTIFY ch, 'patients'`, check: expectKinds(KindOther, KindOther)},
}

func expectCopy(from bool, cols []string, f CopyFormat) func(*testing.T, *Plan) {
	return func(t *testing.T, p *Plan) {
		t.Helper()
		st := p.Statements[0]
		if st.Kind != KindCopy || st.Copy == nil {
			t.Fatalf("copy statement = %+v", st)
		}
		c := st.Copy
		if c.From != from || !reflect.DeepEqual(c.Columns, cols) || c.Format != f {
			t.Errorf("copy plan = from %v %v %+v, want from %v %v %+v", c.From, c.Columns, c.Format, from, cols, f)
		}
		if len(c.Rules) != len(c.Columns) {
			t.Fatalf("rules %d for %d columns", len(c.Rules), len(c.Columns))
		}
		for i, col := range c.Columns {
			if r := c.Relation.Encrypted[col]; r != c.Rules[i] {
				t.Errorf("rule of %s = %v", col, c.Rules[i])
			}
		}
		var encrypted []string
		for _, r := range c.Rules {
			if r != nil {
				encrypted = append(encrypted, r.Name())
			}
		}
		got := ruleNames(st.Outputs)
		if from {
			got = ruleNames(st.Writes)
		}
		sort.Strings(encrypted)
		if got != strings.Join(encrypted, ",") {
			t.Errorf("grants list %q, want the copied encrypted columns %q", got, encrypted)
		}
	}
}

func TestPlans(t *testing.T) {
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv()
			if tc.env != nil {
				tc.env(env)
			}
			p := mustAnalyze(t, tc.sql, env)
			got := mustRewrite(t, p)
			want := tc.want
			if want == "" {
				want = tc.sql
			}
			if got != want {
				t.Errorf("rewrite\n got: %s\nwant: %s", got, want)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestNilEnvironment(t *testing.T) {
	for _, env := range []*Env{nil, {}} {
		p, err := Analyze(`SELECT * FROM patients WHERE ssn LIKE 'x'; EXECUTE q`, env)
		if err != nil || len(p.Edits) != 0 || p.Touches() {
			t.Errorf("env %+v: %v %+v", env, err, p)
		}
	}
}

func TestTouches(t *testing.T) {
	for sql, want := range map[string]bool{
		`SELECT 1`:                              false,
		`SELECT id FROM patients`:               false,
		`SELECT ssn FROM patients`:              true,
		`SELECT 1 FROM patients WHERE ssn = $1`: true,
		`COPY visits (id) TO STDOUT`:            true,
	} {
		if got := mustAnalyze(t, sql, testEnv()).Touches(); got != want {
			t.Errorf("Touches(%q) = %v, want %v", sql, got, want)
		}
	}
}

// TestRewriteSeparatesWords checks that a replacement never runs into an
// adjacent word: 'x'AND is valid SQL, '\x…'::byteaAND is not.
func TestRewriteSeparatesWords(t *testing.T) {
	p := mustAnalyze(t, `UPDATE patients SET ssn='x'WHERE id=1`, testEnv())
	got, err := p.Rewrite(func(*Literal) (string, error) { return `'\x00'::bytea`, nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := `UPDATE "public".patients SET ssn='\x00'::bytea WHERE id=1`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
