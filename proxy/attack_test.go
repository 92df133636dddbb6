package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
)

// Attack tests: an ordinary login role, mallory, with no grants in the
// policy but the table privileges of every application role and a schema of
// her own, tries to get around the policy through the proxy. Each test
// asserts, bypassing the proxy, that no plaintext reached PostgreSQL, and
// through the proxy that mallory saw NULL or got an error.

const attacker = "mallory"

// atkPolicy is testPolicy where mallory, with no key, may run server-side
// code: the strongest ordinary attacker (see TestAttackServerSideCode for
// roles that may not).
const atkPolicy = testPolicy + "    - {role: mallory, read: [], server_side_code: allow}\n"

// atkSchema is testSchema plus mallory's own schema.
const atkSchema = testSchema + `
CREATE SCHEMA mallory AUTHORIZATION mallory;
`

// atkHarness is a proxy under testPolicy with mallory ready to attack and
// one seeded row (written by doctor) to steal.
func atkHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, atkPolicy, atkSchema)
	sxSeed(t, h)
	return h
}

// atkRead returns PostgreSQL's current_user and the seeded row's ssn as the
// proxy shows it, in one statement.
func atkRead(ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode) (user string, ssn *string, err error) {
	err = conn.QueryRow(ctx, "SELECT current_user, ssn FROM patients WHERE name = 'Seed'", mode).Scan(&user, &ssn)
	return user, ssn, err
}

// atkAssertNoPlaintext reads every policy column directly: each non-NULL
// value must be a pgcloak ciphertext, and none of plaintexts may be in
// PostgreSQL's statement log.
func atkAssertNoPlaintext(t *testing.T, h *harness, plaintexts ...string) {
	t.Helper()
	ctx := ctxT(t)
	db := h.direct()
	for _, q := range []string{
		"SELECT ssn FROM public.patients", "SELECT diagnosis FROM public.patients", "SELECT dob FROM public.patients",
		"SELECT patient_ssn FROM public.visits", "SELECT note FROM public.visits",
	} {
		rows, err := db.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var v []byte
			if err := rows.Scan(&v); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if v != nil && !keymap.IsCiphertext(v) {
				t.Errorf("%s: PostgreSQL holds a value that is not a ciphertext: %q", q, v)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	marker := fmt.Sprintf("atk-marker-%d", time.Now().UnixNano())
	if _, err := db.Exec(ctx, "SELECT $1::text", marker); err != nil {
		t.Fatal(err)
	}
	log := h.pg.AwaitStatement(t, marker)
	for _, p := range plaintexts {
		if strings.Contains(log, p) {
			t.Errorf("PostgreSQL's statement log holds the plaintext %q: %s", p, atkLines(log, p))
		}
	}
}

// atkAssertNotStolen checks that mallory's read of the seeded row showed
// NULL (her grants) or failed, and never the plaintext.
func atkAssertNotStolen(t *testing.T, step string, user string, ssn *string, err error) {
	t.Helper()
	if err != nil {
		return
	}
	if ssn != nil {
		t.Fatalf("%s: mallory (PostgreSQL's current_user %q) read ssn %q, want NULL", step, user, *ssn)
	}
	if user != attacker {
		t.Fatalf("%s: PostgreSQL's current_user is %q, want %q", step, user, attacker)
	}
}

// Finding 2: a set_config that PostgreSQL resolves to another function
// than pg_catalog's changes nothing in PostgreSQL, so the proxy must not
// apply the role it names.
func TestAttackRoleClaimedBySetConfig(t *testing.T) {
	h := atkHarness(t)
	fakes := []struct {
		name  string
		setup []string
		claim string
	}{
		{
			name: "own schema first",
			setup: []string{
				"CREATE FUNCTION mallory.set_config(text, text, boolean) RETURNS text LANGUAGE sql AS 'SELECT $2'",
				"SET search_path = mallory, pg_catalog, public",
			},
			claim: "SELECT set_config('role', 'doctor', false)",
		},
		{
			name: "overload winning for unknown literals, default search_path",
			setup: []string{
				"CREATE FUNCTION mallory.set_config(text, text, text) RETURNS text LANGUAGE sql AS 'SELECT $2'",
			},
			claim: "SELECT set_config('role', 'doctor', 'false')",
		},
		{
			name: "overload, local claim inside a transaction",
			setup: []string{
				"CREATE FUNCTION mallory.set_config(text, text, text) RETURNS text LANGUAGE sql AS 'SELECT $2'",
				"BEGIN",
			},
			claim: "SELECT set_config('role', 'doctor', 'true')",
		},
		{
			name: "search_path set by set_config itself",
			setup: []string{
				"CREATE FUNCTION mallory.set_config(text, text, boolean) RETURNS text LANGUAGE sql AS 'SELECT $2'",
				"SELECT pg_catalog.set_config('search_path', 'mallory, pg_catalog, public', false)",
			},
			claim: "SELECT set_config('session_authorization', 'doctor', false)",
		},
	}
	for _, f := range fakes {
		for _, m := range sxModes {
			t.Run(f.name+"/"+m.name, func(t *testing.T) {
				ctx := ctxT(t)
				conn := h.connect(attacker)
				for _, s := range f.setup {
					if strings.HasPrefix(s, "CREATE FUNCTION") {
						s = strings.Replace(s, "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
					}
					sxMustExecMode(t, ctx, conn, m, s)
				}
				sxMustExecMode(t, ctx, conn, m, f.claim)
				user, ssn, err := atkRead(ctx, conn, m.mode)
				if err != nil {
					t.Fatalf("read after the claim: %v", err)
				}
				atkAssertNotStolen(t, "after "+f.claim, user, ssn, err)
				// A write as the claimed role is refused for mallory.
				_, err = conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('mallory-row', 'ATK-ROLE-SSN-1')", m.mode)
				wantCode(t, err, "42501")
				if strings.Contains(f.setup[len(f.setup)-1], "BEGIN") {
					sxMustExecMode(t, ctx, conn, m, "ROLLBACK")
				}
				// A real SET ROLE to a role mallory is not a member of
				// fails, and still nothing is read.
				wantCode(t, sxExecMode(ctx, conn, m, "SET ROLE doctor"), "42501")
				user, ssn, err = atkRead(ctx, conn, m.mode)
				atkAssertNotStolen(t, "after a failed SET ROLE", user, ssn, err)
			})
		}
	}
	atkAssertNoPlaintext(t, h, "ATK-ROLE-SSN-1", sxSeedSSN)
}

// A claimed role cannot be used before PostgreSQL confirms it: a read in
// the same query string, or in the same pipeline, is refused, whether the
// claim is true or not.
func TestAttackRoleClaimUsedBeforeConfirmation(t *testing.T) {
	h := atkHarness(t)
	ctx := ctxT(t)
	conn := h.connect(attacker)
	sxExec(t, ctx, conn, "CREATE FUNCTION mallory.set_config(text, text, text) RETURNS text LANGUAGE sql AS 'SELECT $2'")

	// One query string.
	_, err := conn.Exec(ctx, "SELECT set_config('role', 'doctor', 'false'); SELECT ssn FROM patients WHERE name = 'Seed'")
	wantCode(t, err, "0A000")

	// One pipeline (a pgx batch is one Sync).
	b := &pgx.Batch{}
	b.Queue("SELECT set_config('role', 'doctor', 'false')")
	b.Queue("SELECT ssn FROM patients WHERE name = 'Seed'")
	br := conn.SendBatch(ctx, b)
	_, err1 := br.Exec()
	var ssn *string
	err2 := br.QueryRow().Scan(&ssn)
	br.Close()
	if err1 != nil {
		t.Fatalf("the claim itself: %v", err1)
	}
	if err2 == nil && ssn != nil {
		t.Fatalf("read in the claim's pipeline returned %q", *ssn)
	}
	wantCode(t, err2, "0A000")

	// A true claim by doctor (a member of billing) is confirmed, and then
	// applies; in the same string it is refused too.
	doc := h.connect("doctor")
	_, err = doc.Exec(ctx, "SELECT set_config('role', 'billing', false); SELECT diagnosis FROM patients WHERE name = 'Seed'")
	wantCode(t, err, "0A000")
	sxExec(t, ctx, doc, "SELECT set_config('role', 'billing', false)")
	var diag *string
	var user string
	if err := doc.QueryRow(ctx, "SELECT current_user, diagnosis FROM patients WHERE name = 'Seed'").Scan(&user, &diag); err != nil {
		t.Fatal(err)
	}
	if user != "billing" || diag != nil {
		t.Fatalf("after a true claim: current_user %q, diagnosis %v; want billing and NULL", user, diag)
	}
	atkAssertNoPlaintext(t, h, sxSeedSSN)
}

// A login role whose default role (ALTER ROLE … SET role) is another gets
// that role's grants from the first statement, as PostgreSQL reports it.
func TestSessionDefaultRoleFromPostgreSQL(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	sxSeed(t, h)
	h.pg.ExecAdmin(t, `ALTER ROLE doctor IN DATABASE "`+h.pg.Database+`" SET role = 'billing'`)
	t.Cleanup(func() { h.pg.ExecAdmin(t, `ALTER ROLE doctor IN DATABASE "`+h.pg.Database+`" RESET role`) })
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sxAssertRole(t, ctx, conn, m, "billing", "login with a default role")
			sxMustExecMode(t, ctx, conn, m, "RESET ROLE")
			sxAssertRole(t, ctx, conn, m, "billing", "RESET ROLE goes back to the default")
			sxMustExecMode(t, ctx, conn, m, "SET ROLE NONE")
			sxAssertRole(t, ctx, conn, m, "doctor", "SET ROLE NONE")
		})
	}
}

// atkProtoAs opens a raw protocol session as role.
func atkProtoAs(t *testing.T, h *harness, role string) *protoClient {
	t.Helper()
	return protoConnect(t, h, role)
}

// atkWantRefusedOrFailed checks that a request's answer holds an error and
// ends at ReadyForQuery.
func atkWantRefusedOrFailed(t *testing.T, what string, got []string) {
	t.Helper()
	for _, tok := range got {
		if strings.HasPrefix(tok, "E:") {
			return
		}
	}
	t.Fatalf("%s: want an error, got %q", what, got)
}

// Finding 1, encodings: in a client-only encoding a backslash can be the
// second byte of a character, where it escapes nothing, so an E'…' literal
// ends earlier for PostgreSQL than for a UTF-8 lexer. Writer doctor has
// the write grant: the attack stores a plaintext SSN.
func TestAttackLexingClientEncoding(t *testing.T) {
	h := atkHarness(t)
	// lead is a valid UTF-8 character that, read in the encoding, ends
	// with the first byte of a two-byte character whose second byte is
	// 0x5C: ゃ is E3 82 83 (E3 82, then 83 5C), 奥 is E5 A5 A5 (E5 A5,
	// then A5 5C).
	encodings := []struct{ name, lead string }{
		{"SJIS", "ゃ"}, {"SHIFT_JIS_2004", "ゃ"}, {"BIG5", "奥"}, {"GBK", "ゃ"}, {"GB18030", "ゃ"},
	}
	for i, enc := range encodings {
		t.Run(enc.name, func(t *testing.T) {
			secret := fmt.Sprintf("ATK-ENC-%d", i)
			// For a UTF-8 lexer the literal runs to the last quote; for
			// PostgreSQL it ends after the two-byte character.
			simple := "SELECT E'" + enc.lead + "\\'; INSERT INTO patients (name, ssn) VALUES ($$atk-enc$$, $$" + secret + "-s$$); --'"
			ext := "INSERT INTO patients (name, ssn) SELECT E'" + enc.lead + "\\', $$" + secret + "-e$$ --', NULL"
			c := atkProtoAs(t, h, "doctor")
			wantTokens(t, "set encoding", c.query("SET client_encoding = '"+enc.name+"'"), "C:SET", "Z:I")
			atkWantRefusedOrFailed(t, "simple query", c.query(simple))
			c.send(&pgproto3.Parse{Query: ext}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			atkWantRefusedOrFailed(t, "extended query", c.recvReady())
			// The encoding changed in flight: pipelined behind the SET,
			// the proxy cannot know it yet.
			c2 := atkProtoAs(t, h, "doctor")
			c2.send(&pgproto3.Query{String: "SET client_encoding = '" + enc.name + "'"}, &pgproto3.Query{String: simple})
			wantTokens(t, "set encoding (pipelined)", c2.recvReady(), "C:SET", "Z:I")
			atkWantRefusedOrFailed(t, "simple query pipelined", c2.recvReady())
			// Changed by a function, which no SQL text shows.
			c3 := atkProtoAs(t, h, "doctor")
			c3.send(
				&pgproto3.Query{String: "SELECT pg_catalog.set_config('client_encoding', '" + enc.name + "', false) FROM (SELECT 1) s"},
				&pgproto3.Query{String: simple})
			c3.recvReady()
			atkWantRefusedOrFailed(t, "simple query behind a function", c3.recvReady())
			atkAssertNoPlaintext(t, h, secret)
		})
	}
}

// Finding 1, standard_conforming_strings: with it off, \' in a '…' literal
// is an escaped quote, so the literal ends later for PostgreSQL than for the
// analysis.
func TestAttackLexingStandardConformingStrings(t *testing.T) {
	h := atkHarness(t)
	// On: one string literal, the statement is a SELECT. Off: the
	// literal ends after x\'', and the INSERT runs.
	const secret = "ATK-SCS-SSN"
	attackWith := func(ssn string) string {
		return "SELECT 'x\\''; INSERT INTO patients (name, ssn) VALUES ($$atk-scs$$, $$" + ssn + "$$) --'"
	}
	attack := attackWith(secret)
	variants := []struct {
		name string
		off  []pgproto3.FrontendMessage // turns the setting off, sent in the attack's pipeline
	}{
		{"SET", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SET standard_conforming_strings = off"}}},
		{"set_config in FROM", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false) FROM (SELECT 1) s"}}},
		{"SET LOCAL in a transaction", []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; SET LOCAL standard_conforming_strings = off"}}},
		{"extended protocol, no Sync", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SET standard_conforming_strings = off"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := atkProtoAs(t, h, "doctor")
			c.send(append(v.off, &pgproto3.Query{String: attack})...)
			c.recvReady()
			atkWantRefusedOrFailed(t, "pipelined attack", c.recvReady())
			c.query("ROLLBACK")
			atkAssertNoPlaintext(t, h, secret)
		})
	}
	// Known to be off: refused too.
	off := atkProtoAs(t, h, "doctor")
	wantTokens(t, "scs off", off.query("SET standard_conforming_strings = off"), "C:SET", "Z:I")
	atkWantRefusedOrFailed(t, "attack with the setting known off", off.query(attack))
	// The same statement with the setting known on is harmless: a SELECT
	// of one string.
	c := atkProtoAs(t, h, "doctor")
	got := c.query(attackWith("HARMLESS"))
	if len(got) < 2 || !strings.HasPrefix(got[len(got)-2], "C:SELECT") {
		t.Fatalf("with standard_conforming_strings on: %q", got)
	}
	atkAssertNoPlaintext(t, h, secret)
}

// atkLines are the lines of log holding s.
func atkLines(log, s string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// atkOperators are, in mallory's schema, an = on oids that is never true
// and a || that returns nothing: with her schema first on search_path, any
// unqualified use in the proxy's catalog query would see no relation.
const atkOperators = `
CREATE FUNCTION mallory.never(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR mallory.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = mallory.never);
CREATE FUNCTION mallory.nothing(text, text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT NULL::text';
CREATE OPERATOR mallory.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory.nothing);
CREATE FUNCTION mallory.nothing(name, text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT NULL::text';
CREATE OPERATOR mallory.|| (LEFTARG = name, RIGHTARG = text, FUNCTION = mallory.nothing);
CREATE FUNCTION mallory.starts_with(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION mallory.pg_get_viewdef(oid) RETURNS text LANGUAGE sql AS 'SELECT $$SELECT 1$$';
`

// Finding 3b: the catalog query runs in the client's session; mallory's
// operators and functions, first on her search_path, must not change what
// it finds, for her session or for the others that share the snapshot.
func TestAttackPoisonedCatalog(t *testing.T) {
	h := atkHarness(t)
	h.pg.ExecAdmin(t, `CREATE VIEW public.patients_v AS SELECT id, name, ssn FROM public.patients;
GRANT ALL ON public.patients_v TO PUBLIC;`)
	ctx := ctxT(t)
	mal := h.connect(attacker)
	for _, stmt := range strings.Split(strings.TrimSpace(atkOperators), ";\n") {
		sxExec(t, ctx, mal, stmt)
	}
	mal.Close(ctx)
	// Her default search_path: the login's setup query loads the catalog
	// under it (the proxy has no snapshot of this database yet).
	h.pg.ExecAdmin(t, `ALTER ROLE mallory IN DATABASE "`+h.pg.Database+`" SET search_path = mallory, pg_catalog, public`)
	t.Cleanup(func() { h.pg.ExecAdmin(t, `ALTER ROLE mallory IN DATABASE "`+h.pg.Database+`" RESET search_path`) })

	h2 := newHarnessOn(t, h, atkPolicy) // a proxy with no snapshot yet
	mal = h2.connect(attacker)
	// DDL makes her session load the catalog again, in the session.
	sxExec(t, ctx, mal, "CREATE TABLE mallory.scratch (x int)")
	_, err := mal.Exec(ctx, "INSERT INTO patients_v (name, ssn) VALUES ('atk-view-m', 'ATK-CAT-SSN-1')")
	wantCode(t, err, "42501")

	doc := h2.connect("doctor")
	sxExec(t, ctx, doc, "INSERT INTO patients_v (name, ssn) VALUES ('atk-view-d', 'ATK-CAT-SSN-2')")
	var ssn string
	if err := doc.QueryRow(ctx, "SELECT ssn FROM patients_v WHERE name = 'atk-view-d'").Scan(&ssn); err != nil || ssn != "ATK-CAT-SSN-2" {
		t.Fatalf("doctor reads back %q, %v", ssn, err)
	}
	atkAssertNoPlaintext(t, h, "ATK-CAT-SSN-1", "ATK-CAT-SSN-2")
}

// Finding 4: a pgcloak.column_migrations that anyone but the admin role
// (or a superuser) could have made or may write is not believed.
func TestAttackForgedMigrationState(t *testing.T) {
	forgeries := []struct {
		name  string
		setup []string // as superuser, directly
	}{
		{"view in a schema mallory made", []string{
			`GRANT CREATE ON DATABASE "%s" TO mallory`,
			`SET ROLE mallory`,
			`CREATE SCHEMA pgcloak`,
			`CREATE VIEW pgcloak.column_migrations AS SELECT 'public'::name AS schema_name, 'patients'::name AS table_name, c::name AS column_name, 'decrypt'::text AS action, 'k'::text AS key_name, now() AS started, NULL::timestamptz AS finished FROM unnest(ARRAY['ssn', 'diagnosis', 'dob']) c`,
			`GRANT USAGE ON SCHEMA pgcloak TO PUBLIC`,
			`GRANT SELECT ON pgcloak.column_migrations TO PUBLIC`,
			`RESET ROLE`,
		}},
		{"superuser's table in mallory's schema", []string{
			`CREATE SCHEMA pgcloak AUTHORIZATION mallory`,
			`CREATE TABLE pgcloak.column_migrations (schema_name name, table_name name, column_name name, action text, key_name text, started timestamptz, finished timestamptz)`,
			`INSERT INTO pgcloak.column_migrations SELECT 'public', 'patients', c, 'decrypt', 'k', now(), NULL FROM unnest(ARRAY['ssn', 'diagnosis', 'dob']) c`,
			`GRANT USAGE ON SCHEMA pgcloak TO PUBLIC`,
			`GRANT SELECT ON pgcloak.column_migrations TO PUBLIC`,
		}},
		{"superuser's table others may write", []string{
			`CREATE SCHEMA pgcloak`,
			`CREATE TABLE pgcloak.column_migrations (schema_name name, table_name name, column_name name, action text, key_name text, started timestamptz, finished timestamptz)`,
			`INSERT INTO pgcloak.column_migrations SELECT 'public', 'patients', c, 'decrypt', 'k', now(), NULL FROM unnest(ARRAY['ssn', 'diagnosis', 'dob']) c`,
			`GRANT USAGE ON SCHEMA pgcloak TO PUBLIC`,
			`GRANT SELECT, UPDATE (action) ON pgcloak.column_migrations TO PUBLIC`,
		}},
	}
	for i, f := range forgeries {
		t.Run(f.name, func(t *testing.T) {
			h := atkHarness(t)
			for _, s := range f.setup {
				if strings.Contains(s, "%s") {
					s = fmt.Sprintf(s, h.pg.Database)
				}
				h.pg.ExecAdmin(t, s)
			}
			h = newHarnessOn(t, h, atkPolicy) // loads the catalog with the forgery
			ctx := ctxT(t)
			doc := h.connect("doctor")
			secret := fmt.Sprintf("ATK-MIG-SSN-%d", i)
			search := fmt.Sprintf("ATK-MIG-SEARCH-%d", i)
			sxExec(t, ctx, doc, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "atk-mig", secret, secret+"-diag")
			sxExec(t, ctx, doc, "INSERT INTO patients (name, ssn) VALUES ('atk-mig-lit', '"+secret+"-lit')")
			rows, err := doc.Query(ctx, "SELECT name FROM patients WHERE ssn = $1 OR ssn = '"+search+"-lit'", search)
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if !strings.Contains(h.logBuf.String(), "pgcloak.column_migrations is ignored") {
				t.Error("the proxy did not warn that it ignores the forged table")
			}
			atkAssertNoPlaintext(t, h, secret, search)
		})
	}
}

// Finding 7: code the proxy cannot see (DO, function and procedure bodies,
// CALL) is refused for roles the policy does not allow it, whatever names
// its text spells; doctor, who may write every key, tries to store
// plaintext and to replay another row's ciphertext with it.
func TestAttackServerSideCode(t *testing.T) {
	h := atkHarness(t)
	const secret = "ATK-CODE-SSN"
	hidden := "EXECUTE 'INSERT INTO pat' || 'ients (name, ssn) VALUES (''atk-code'', ''" + secret + "'')'"
	replay := "EXECUTE 'UPDATE pat' || 'ients SET ssn = (SELECT ssn FROM pat' || 'ients ORDER BY id LIMIT 1) WHERE name = ''x'''"
	attacks := []string{
		"DO $$ BEGIN " + hidden + "; END $$",
		"DO LANGUAGE plpgsql $x$ BEGIN " + replay + "; END $x$",
		"CREATE FUNCTION atk_f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN " + hidden + "; END $$",
		"CREATE OR REPLACE FUNCTION atk_g() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$",
		"CREATE PROCEDURE atk_p() LANGUAGE plpgsql AS $$ BEGIN " + hidden + "; END $$",
		"CREATE FUNCTION atk_s() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
		"SELECT 1; DO $$ BEGIN " + hidden + "; END $$",
	}
	for _, m := range sxModes {
		conn := h.connect("doctor")
		for _, a := range attacks {
			if !m.simple() && strings.HasPrefix(a, "SELECT 1;") {
				continue
			}
			err := sxExecMode(ctxT(t), conn, m, a)
			if pe := wantCode(t, err, "42501"); !strings.Contains(pe.Message, "server-side code") {
				t.Fatalf("%s (%s): %s", a, m.name, pe.Message)
			}
		}
	}
	// A procedure the DBA made, called with CALL: refused too, as its
	// arguments could be plaintext it stores.
	h.pg.ExecAdmin(t, "CREATE PROCEDURE public.add_patient(n text, s text) LANGUAGE sql AS $$ INSERT INTO patients (name, ssn) VALUES (n, s::bytea) $$")
	_, err := h.connect("doctor").Exec(ctxT(t), "CALL add_patient('atk-call', '"+secret+"-call')")
	wantCode(t, err, "42501")
	atkAssertNoPlaintext(t, h, secret)

	// A role the policy allows runs it.
	sxExec(t, ctxT(t), h.connect(attacker), "DO $$ BEGIN PERFORM 1; END $$")
}

// Finding 7: a statement prepared by server-side code was never seen by
// the proxy, so a Bind to it would pass its parameters unencrypted.
func TestAttackBindToStatementPreparedServerSide(t *testing.T) {
	h := atkHarness(t)
	h.pg.ExecAdmin(t, `CREATE FUNCTION public.prep() RETURNS void LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'PREPARE srv(text) AS INSERT INTO public.patients (name, ssn) VALUES (''atk-srv'', $1::bytea)'; END $$`)
	c := atkProtoAs(t, h, "doctor")
	wantTokens(t, "prepare server-side", c.query("SELECT prep()"), "Row:prep/2278", "D:", "C:SELECT 1", "Z:I")
	const secret = "ATK-SRV-SSN"
	c.send(&pgproto3.Bind{PreparedStatement: "srv", Parameters: [][]byte{[]byte(secret)}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "bind to it", c.recvReady(), "E:26000", "Z:I")
	// SQL EXECUTE with an argument is refused as well.
	atkWantRefusedOrFailed(t, "EXECUTE", c.query("EXECUTE srv('"+secret+"-sql')"))
	atkAssertNoPlaintext(t, h, secret)
}

// partPolicy covers a partitioned table (two levels of partitions) and an
// inheritance parent, whose partitions and children it does not name.
const partPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
  columns:
    - {table: public.events, column: ssn, key: ssn, type: text}
    - {table: public.notes, column: secret, key: clinical, type: text}
  roles:
    - {role: doctor, read: [ssn, clinical], write: [ssn, clinical]}
`

const partSchema = `
CREATE TABLE public.events (id int NOT NULL, ssn bytea) PARTITION BY RANGE (id);
CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM (1000) TO (2000) PARTITION BY RANGE (id);
CREATE TABLE public.events_2a PARTITION OF public.events_2 FOR VALUES FROM (1000) TO (1500);
CREATE TABLE public.notes (id int, secret bytea);
CREATE TABLE public.notes_child (extra text) INHERITS (public.notes);
CREATE TABLE public.loose (id int NOT NULL, ssn bytea);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
`

// Finding 6: a partition or child holds rows of its policy table and gets
// its rules, whichever name a statement writes through or reads from.
func TestAttackPartitionsAndChildren(t *testing.T) {
	h := newHarness(t, partPolicy, partSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	writes := []string{
		"INSERT INTO events_1 (id, ssn) VALUES (1, 'ATK-PART-1')",
		"INSERT INTO public.events_2a (id, ssn) VALUES (1001, 'ATK-PART-2')",
		"INSERT INTO events_2 (id, ssn) VALUES (1002, 'ATK-PART-3')",
		"INSERT INTO events (id, ssn) VALUES (2, 'ATK-PART-4')",
		"INSERT INTO notes_child (id, secret, extra) VALUES (1, 'ATK-CHILD-1', 'x')",
		"UPDATE events_1 SET ssn = 'ATK-PART-5' WHERE id = 1",
	}
	for _, w := range writes {
		sxExec(t, ctx, doc, w)
	}
	// COPY into a partition.
	if _, err := doc.PgConn().CopyFrom(ctx, strings.NewReader("3\tATK-PART-6\n"), "COPY events_1 (id, ssn) FROM STDIN"); err != nil {
		t.Fatalf("COPY into a partition: %v", err)
	}
	// Read back through the parent and through the partition.
	for _, q := range []string{
		"SELECT ssn FROM events WHERE id = 1", "SELECT ssn FROM events_1 WHERE id = 1",
		"SELECT ssn FROM events WHERE ssn = 'ATK-PART-5'", "SELECT ssn FROM events_1 WHERE ssn = 'ATK-PART-5'",
	} {
		var ssn string
		if err := doc.QueryRow(ctx, q).Scan(&ssn); err != nil || ssn != "ATK-PART-5" {
			t.Fatalf("%s: %q %v", q, ssn, err)
		}
	}
	var secret string
	if err := doc.QueryRow(ctx, "SELECT secret FROM notes WHERE id = 1").Scan(&secret); err != nil || secret != "ATK-CHILD-1" {
		t.Fatalf("child row read through its parent: %q %v", secret, err)
	}
	// A role without grants may not write through a partition either.
	_, err := h.connect("billing").Exec(ctx, "INSERT INTO events_1 (id, ssn) VALUES (5, 'ATK-PART-7')")
	wantCode(t, err, "42501")
	// Attaching a table of plaintext rows as a partition, or as a child,
	// is refused.
	h.pg.ExecAdmin(t, "INSERT INTO public.loose VALUES (1500, 'ATK-LOOSE')")
	atkWantCodes(t, doc, "0A000",
		"ALTER TABLE events ATTACH PARTITION loose FOR VALUES FROM (1500) TO (1600)",
		"ALTER TABLE loose INHERIT notes",
		"CREATE TABLE events_3 PARTITION OF events FOR VALUES FROM (2000) TO (3000)")
	db := h.direct()
	for _, q := range []string{"SELECT ssn FROM public.events", "SELECT secret FROM public.notes"} {
		rows, err := db.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v []byte
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != nil && !keymap.IsCiphertext(v) {
				t.Errorf("%s: PostgreSQL holds %q", q, v)
			}
		}
		rows.Close()
	}
}

// Finding 5: renaming or moving a policy table, one of its columns or its
// schema would make its columns plain to the proxy; all are refused, in
// both protocols, and writes afterwards are still encrypted.
func TestAttackNamesThatMove(t *testing.T) {
	h := atkHarness(t)
	h.pg.ExecAdmin(t, "ALTER TABLE public.patients OWNER TO doctor; ALTER SCHEMA public OWNER TO doctor")
	moves := []string{
		"ALTER TABLE patients RENAME COLUMN ssn TO ssn_moved",
		"ALTER TABLE public.patients RENAME name TO ssn_name",
		"ALTER TABLE patients RENAME TO patients_moved",
		"ALTER TABLE IF EXISTS patients SET SCHEMA mallory",
		"ALTER SCHEMA public RENAME TO public_moved",
		"ALTER TABLE \"patients\" RENAME TO p",
		"SET search_path = mallory; ALTER TABLE patients RENAME TO p",
	}
	for _, m := range sxModes {
		doc := h.connect("doctor")
		for _, mv := range moves {
			if !m.simple() && strings.Contains(mv, ";") {
				continue
			}
			wantCode(t, sxExecMode(ctxT(t), doc, m, mv), "0A000")
		}
	}
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "INSERT INTO patients (name, ssn) VALUES ('atk-moved', 'ATK-MOVE-SSN')")
	atkAssertNoPlaintext(t, h, "ATK-MOVE-SSN")
}

// Finding 1, review variants: a literal that ends elsewhere for PostgreSQL
// hides an EXECUTE of a statement prepared earlier (the visible text names
// nothing encrypted), and SHIFT_JIS_2004 reads 0x81 0x5F as a backslash.
func TestAttackLexingHiddenExecuteAndConvertedBackslash(t *testing.T) {
	h := atkHarness(t)
	const secret = "ATK-HIDDEN-SSN"
	for i, setting := range []string{"SET standard_conforming_strings = off", "SET client_encoding = 'SJIS'"} {
		c := atkProtoAs(t, h, "doctor")
		wantTokens(t, "prepare", c.query("PREPARE p(text) AS INSERT INTO patients (name, ssn) VALUES ('atk-hidden', $1)"), "C:PREPARE", "Z:I")
		wantTokens(t, setting, c.query(setting), "C:SET", "Z:I")
		hidden := "SELECT 'x\\''; EXECUTE p($$" + secret + "$$); --'"
		if i == 1 {
			hidden = "SELECT E'ゃ\\'; EXECUTE p($$" + secret + "$$); --'"
		}
		atkWantRefusedOrFailed(t, "hidden EXECUTE after "+setting, c.query(hidden))
	}
	c := atkProtoAs(t, h, "doctor")
	wantTokens(t, "encoding", c.query("SET client_encoding = 'SHIFT_JIS_2004'"), "C:SET", "Z:I")
	atkWantRefusedOrFailed(t, "converted backslash",
		c.query("SELECT E'め_\\'; INSERT INTO patients (name, ssn) VALUES ($$x$$, $$"+secret+"-2$$); --'"))
	atkAssertNoPlaintext(t, h, secret)
}

// The ciphertext checks of pgcloak policy apply accept every value the
// proxy writes, whichever path it takes, and refuse plaintext written
// around the proxy.
func TestCiphertextChecksAcceptProxyWrites(t *testing.T) {
	var checks strings.Builder
	for _, c := range [][2]string{{"patients", "ssn"}, {"patients", "diagnosis"}, {"patients", "dob"}, {"visits", "patient_ssn"}, {"visits", "note"}} {
		fmt.Fprintf(&checks, "ALTER TABLE public.%s ADD CONSTRAINT %s CHECK (%s);\n", c[0], dbguard.ConstraintName(c[1]),
			dbguard.CiphertextCheck(c[1], keymap.CiphertextPrefix(), keymap.MinCiphertextLen))
	}
	h := newHarness(t, testPolicy, testSchema+checks.String())
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('lit', '111-11-1111', 'flu', '2000-01-02'), ('nulls', NULL, NULL, NULL)", pgx.QueryExecModeSimpleProtocol)
	sxExec(t, ctx, doc, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)", "param", "222-22-2222", "cold", time.Date(1999, 3, 4, 0, 0, 0, 0, time.UTC))
	sxExec(t, ctx, doc, "UPDATE patients SET diagnosis = $1 WHERE name = 'lit'", "")
	sxExec(t, ctx, doc, "INSERT INTO visits (patient_ssn, note) SELECT ssn, NULL FROM patients WHERE name = 'param'")
	if _, err := doc.PgConn().CopyFrom(ctx, strings.NewReader("copy\t333-33-3333\tcough\t2001-02-03\n"), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN"); err != nil {
		t.Fatalf("COPY: %v", err)
	}
	var n int
	if err := doc.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn = '333-33-3333'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read back: %d %v", n, err)
	}
	_, err := h.direct().Exec(ctx, "INSERT INTO public.patients (name, ssn) VALUES ('around', 'plain'::bytea)")
	wantCode(t, err, "23514")
}

// Finding 3a: a view created through another session is known to every
// session before its next statement, not a catalog TTL later; inside a
// transaction that began before, statements on relations are refused.
func TestAttackViewFromAnotherSession(t *testing.T) {
	h := atkHarness(t) // the default catalog TTL: 30 s
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "SELECT count(*) FROM patients") // doctor's snapshot is loaded
	inTx := atkOpenTx(t, h)

	mal := h.connect(attacker)
	sxExec(t, ctx, mal, "GRANT USAGE ON SCHEMA mallory TO doctor")
	sxExec(t, ctx, mal, "BEGIN")
	sxExec(t, ctx, mal, "CREATE VIEW mallory.pv AS SELECT id, name, ssn FROM public.patients")
	sxExec(t, ctx, mal, "GRANT ALL ON mallory.pv TO doctor")
	// Not committed yet: doctor cannot use it (PostgreSQL does not see it).
	_, err := doc.Exec(ctx, "INSERT INTO mallory.pv (name, ssn) VALUES ('atk-pv-0', 'ATK-PV-SSN-0')")
	if err == nil {
		t.Fatal("insert through an uncommitted view succeeded")
	}
	sxExec(t, ctx, mal, "COMMIT")
	sxExec(t, ctx, doc, "INSERT INTO mallory.pv (name, ssn) VALUES ('atk-pv-1', 'ATK-PV-SSN-1')")
	sxExec(t, ctx, doc, "INSERT INTO mallory.pv (name, ssn) VALUES ($1, $2)", "atk-pv-2", "ATK-PV-SSN-2")
	var ssn string
	if err := doc.QueryRow(ctx, "SELECT ssn FROM mallory.pv WHERE ssn = 'ATK-PV-SSN-1'").Scan(&ssn); err != nil || ssn != "ATK-PV-SSN-1" {
		t.Fatalf("read back through the view: %q %v", ssn, err)
	}
	_, err = inTx.Exec(ctx, "INSERT INTO mallory.pv (name, ssn) VALUES ('atk-pv-3', 'ATK-PV-SSN-3')")
	wantCode(t, err, "40001")
	sxExec(t, ctx, inTx, "ROLLBACK")
	sxExec(t, ctx, inTx, "INSERT INTO mallory.pv (name, ssn) VALUES ('atk-pv-4', 'ATK-PV-SSN-4')")
	atkAssertNoPlaintext(t, h, "ATK-PV-SSN-1", "ATK-PV-SSN-2", "ATK-PV-SSN-3", "ATK-PV-SSN-4")
}

// atkInstallGuards installs the database guards' event trigger as pgcloak
// policy apply does (the checks themselves are not needed here).
func atkInstallGuards(t *testing.T, h *harness) {
	t.Helper()
	h.pg.ExecAdmin(t, "CREATE SCHEMA IF NOT EXISTS pgcloak; "+dbguard.GuardsDDL)
	h.pg.ExecAdmin(t, dbguard.GuardFunctionDDL(""))
	h.pg.ExecAdmin(t, dbguard.EventTriggerDDL)
}

// atkWaitKnown waits until the proxy shows column col of relation rel as
// text, i.e. its catalog knows the relation carries ciphertext.
func atkWaitKnown(t *testing.T, conn *pgx.Conn, rel, col string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows, err := conn.Query(ctxT(t), "SELECT "+col+" FROM "+rel+" LIMIT 0", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		fields := rows.FieldDescriptions()
		rows.Close()
		if err := rows.Err(); err != nil || len(fields) != 1 {
			t.Fatalf("SELECT %s FROM %s: %v", col, rel, err)
		}
		if fields[0].DataTypeOID == 25 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy does not know %s.%s carries ciphertext", rel, col)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Finding 3a, DDL made straight in PostgreSQL (or through another proxy):
// the guard function notifies every proxy session when it commits, so a
// new view over an encrypted table is known without waiting for the
// catalog to expire (30 s), also after the client's UNLISTEN *.
func TestAttackViewMadeAroundTheProxy(t *testing.T) {
	h := atkHarness(t)
	atkInstallGuards(t, h)
	h = newHarnessOn(t, h, atkPolicy) // doctor's will be its only session
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "SELECT count(*) FROM patients")
	sxExec(t, ctx, doc, "UNLISTEN *")
	sxExec(t, ctx, doc, "SELECT 1") // listens again
	h.pg.ExecAdmin(t, "CREATE VIEW public.patients_direct AS SELECT id, name, ssn FROM public.patients; GRANT ALL ON public.patients_direct TO PUBLIC")
	atkWaitKnown(t, doc, "patients_direct", "ssn")
	sxExec(t, ctx, doc, "INSERT INTO patients_direct (name, ssn) VALUES ('atk-direct', 'ATK-DIRECT-SSN')")
	// A notification on the proxy's channel is not the client's.
	sxExec(t, ctx, doc, "LISTEN pgcloak_catalog")
	h.pg.ExecAdmin(t, "NOTIFY pgcloak_catalog")
	sxExec(t, ctx, doc, "SELECT 1")
	atkAssertNoPlaintext(t, h, "ATK-DIRECT-SSN")
}

// DDL that cannot change what another session's catalog holds (a temporary
// table, a table named like no encrypted relation) leaves that session's
// transaction alone (pgx's own test suite runs such DDL in parallel).
func TestUnrelatedDDLLeavesOtherTransactionsAlone(t *testing.T) {
	h := atkHarness(t)
	ctx := ctxT(t)
	inTx := atkOpenTx(t, h)
	other := h.connect(attacker)
	sxExec(t, ctx, other, "CREATE TEMP TABLE scratch (x int)")
	sxExec(t, ctx, other, "CREATE TABLE mallory.unrelated (x int)")
	sxExec(t, ctx, inTx, "SELECT count(*) FROM patients")
	sxExec(t, ctx, inTx, "COMMIT")
}

// set_config of the role with a parameter (PostgREST's way): the role is
// claimed, confirmed by PostgreSQL, and its grants then apply.
func TestSetConfigRoleParameter(t *testing.T) {
	h := atkHarness(t)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "BEGIN")
	sxExec(t, ctx, doc, "SELECT set_config('role', $1, true)", "billing")
	var user string
	var diag *string
	if err := doc.QueryRow(ctx, "SELECT current_user, diagnosis FROM patients WHERE name = 'Seed'").Scan(&user, &diag); err != nil {
		t.Fatal(err)
	}
	if user != "billing" || diag != nil {
		t.Fatalf("current_user %q, diagnosis %v; want billing and NULL", user, diag)
	}
	sxExec(t, ctx, doc, "COMMIT")
	sxExec(t, ctx, doc, "SELECT set_config('TimeZone', $1, false)", "Asia/Tokyo")
}

// Review round 2: UPDATE pg_settings changed search_path unseen, and
// utility statements (CREATE TRIGGER, RULE, POLICY), which are not pinned,
// then reached the encrypted table the proxy thought was another.
func TestAttackUnseenSearchPathAndUnpinnedUtilities(t *testing.T) {
	h := atkHarness(t)
	h.pg.ExecAdmin(t, "ALTER TABLE public.patients OWNER TO doctor")
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, doc, "SET search_path = other, public")
	_, err := doc.Exec(ctx, "UPDATE pg_settings SET setting = 'public' WHERE name = 'search_path'")
	wantCode(t, err, "0A000")
	atkWantCodes(t, doc, "0A000",
		"CREATE POLICY atk_p ON patients USING (ssn IS DISTINCT FROM 'ATK-POLICY-PLAIN')",
		"CREATE RULE atk_r AS ON UPDATE TO patients WHERE NEW.ssn = 'ATK-RULE-PLAIN' DO INSTEAD NOTHING",
		"CREATE TRIGGER atk_t BEFORE UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()")
	atkAssertNoPlaintext(t, h, "ATK-POLICY-PLAIN", "ATK-RULE-PLAIN")
}

// atkOpenTx opens a transaction as doctor that has used the catalog.
func atkOpenTx(t *testing.T, h *harness) *pgx.Conn {
	t.Helper()
	ctx := ctxT(t)
	c := h.connect("doctor")
	sxExec(t, ctx, c, "BEGIN")
	sxExec(t, ctx, c, "SELECT count(*) FROM patients")
	return c
}

// atkWantCodes runs each statement on conn and expects SQLSTATE code.
func atkWantCodes(t *testing.T, conn *pgx.Conn, code string, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		_, err := conn.Exec(ctxT(t), sql)
		wantCode(t, err, code)
	}
}
