package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// A column's life under pgcloak's migrations, as the proxy sees it through
// its catalog: of its own type before encrypt (writes refused), plain once
// encrypt is recorded, mixed (ciphertexts and text forms) while encrypt or
// decrypt runs, then encrypted, then of its own type again.

const migPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: dates, kind: randomized}
  columns:
    - {table: public.people, column: ssn, key: ssn, type: text}
    - {table: public.people, column: seen, key: dates, type: timestamptz}
  roles:
    - {role: doctor, read: [ssn, dates], write: [ssn, dates]}
    - {role: auditor, read: [], on_denied: mask}
    - {role: archivist, read: [], on_denied: ciphertext}
    - {role: billing, read: [ssn], write: [ssn]}
`

const migSchema = `
CREATE TABLE public.people (id int PRIMARY KEY, name text NOT NULL, ssn text, seen timestamptz);
GRANT ALL ON public.people TO PUBLIC;
INSERT INTO public.people VALUES (1, 'p1', 'S-1', '2020-01-02 03:04:05+00'), (2, 'p2', 'S-2', NULL), (3, 'p3', NULL, '1999-12-31 23:30:00+00');
`

// migTable creates pgcloak.column_migrations as the migrations do.
const migTable = "\n" + colmigrate.DDL + "\n"

// person is a row as the application sees it.
type person struct {
	Name string
	SSN  *string
	Seen *time.Time
}

func str(s string) *string { return &s }

func ts(s string) *time.Time {
	t, err := time.Parse("2006-01-02 15:04:05-07", s)
	if err != nil {
		panic(err)
	}
	return &t
}

func samePeople(a, b []person) bool {
	return slices.EqualFunc(a, b, func(x, y person) bool {
		return x.Name == y.Name && (x.SSN == nil) == (y.SSN == nil) && (x.SSN == nil || *x.SSN == *y.SSN) &&
			(x.Seen == nil) == (y.Seen == nil) && (x.Seen == nil || x.Seen.Equal(*y.Seen))
	})
}

func readPeople(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode) []person {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT name, ssn, seen FROM people ORDER BY id", mode)
	if err != nil {
		t.Fatalf("read (%v): %v", mode, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[person])
	if err != nil {
		t.Fatalf("read (%v): %v", mode, err)
	}
	return got
}

// eventually retries fn until it succeeds: the proxy notices a migration
// when it next reloads its catalog.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestColumnStatesThroughMigrations(t *testing.T) {
	var kr *keymap.Keyring
	h := newHarness(t, migPolicy, migSchema, func(c *proxy.Config) {
		c.CatalogTTL = 50 * time.Millisecond
		kr = c.Keyring
	})
	ctx := ctxT(t)
	conn := h.connect("doctor")
	// Values are read and written in another zone than the text forms'.
	if _, err := conn.Exec(ctx, "SET TimeZone = 'America/New_York'"); err != nil {
		t.Fatal(err)
	}
	direct := h.direct()
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheDescribe}
	want := []person{
		{"p1", str("S-1"), ts("2020-01-02 03:04:05+00")},
		{"p2", str("S-2"), nil},
		{"p3", nil, ts("1999-12-31 23:30:00+00")},
	}
	checkReads := func(phase string) {
		t.Helper()
		for _, m := range modes {
			if got := readPeople(t, ctx, conn, m); !samePeople(got, want) {
				t.Fatalf("%s (%v): read %+v, want %+v", phase, m, got, want)
			}
		}
	}
	search := func(phase, sql string, args []any, wantNames ...string) {
		t.Helper()
		for _, m := range modes {
			got := names(t, ctx, conn, m, sql, args...)
			if !slices.Equal(got, wantNames) {
				t.Errorf("%s (%v): %s %v: got %v, want %v", phase, m, sql, args, got, wantNames)
			}
		}
	}
	atRest := func(id int) []byte {
		t.Helper()
		var v []byte
		if err := direct.QueryRow(ctx, "SELECT ssn FROM public.people WHERE id = $1", pgx.QueryExecModeExec, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	// 1. In the policy but still text, no migration: reads pass, writes
	// and searches are refused.
	checkReads("unconverted")
	for _, sql := range []string{
		"INSERT INTO people (id, name, ssn) VALUES (9, 'x', 'S-9')",
		"SELECT name FROM people WHERE ssn = 'S-1'",
		"UPDATE people SET seen = $1 WHERE id = 1",
	} {
		_, err := conn.Exec(ctx, sql, pgx.QueryExecModeExec, time.Now())
		if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "in PostgreSQL; run pgcloak encrypt") {
			t.Errorf("unconverted: %s: %v", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO people (id, name) VALUES (4, 'p4')"); err != nil {
		t.Fatalf("a write that leaves the policy columns alone: %v", err)
	}
	want = append(want, person{"p4", nil, nil})

	// 2. encrypt records itself and turns the column into bytea holding
	// text forms in one transaction (as pgcloak encrypt does): mixed.
	h.pg.ExecAdmin(t, migTable+`
SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY';
BEGIN;
INSERT INTO pgcloak.column_migrations VALUES
  ('public', 'people', 'ssn', 'encrypt', 'ssn', now(), NULL),
  ('public', 'people', 'seen', 'encrypt', 'dates', now(), NULL);
ALTER TABLE public.people ALTER COLUMN ssn TYPE bytea USING pg_catalog.convert_to(ssn::text, 'UTF8'),
  ALTER COLUMN seen TYPE bytea USING pg_catalog.convert_to(seen::text, 'UTF8');
COMMIT;`)
	// Reads work at once, before the proxy reloads its catalog: the
	// result says bytea.
	checkReads("mixed, catalog not reloaded")
	// Until the proxy reloads its catalog it still refuses the write.
	eventually(t, "mixed write", func() error {
		_, err := conn.Exec(ctx, "INSERT INTO people (id, name, ssn, seen) VALUES (5, 'p5', $1, $2)", "S-5", *ts("2022-02-02 02:02:02+00"))
		if err != nil && sqlstate(err) != "0A000" {
			t.Fatalf("a write while the proxy has not seen the migration: %v", err)
		}
		return err
	})
	if _, err := conn.Exec(ctx, "UPDATE people SET ssn = 'S-4', seen = '2021-06-01 12:00:00+02' WHERE id = 4"); err != nil {
		t.Fatal(err)
	}
	want[3] = person{"p4", str("S-4"), ts("2021-06-01 10:00:00+00")}
	want = append(want, person{"p5", str("S-5"), ts("2022-02-02 02:02:02+00")})
	if _, err := conn.Exec(ctx, "INSERT INTO people (id, name, ssn) VALUES (6, 'p6', 'S-6')", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	want = append(want, person{"p6", str("S-6"), nil})
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("7\tp7\tS-7\t2023-03-03 03:03:03+00\n"), "COPY people (id, name, ssn, seen) FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	want = append(want, person{"p7", str("S-7"), ts("2023-03-03 03:03:03+00")})
	for _, id := range []int{4, 5, 6, 7} {
		var seen []byte
		if err := direct.QueryRow(ctx, "SELECT seen FROM public.people WHERE id = $1", pgx.QueryExecModeExec, id).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if !keymap.IsCiphertext(atRest(id)) || (seen != nil && !keymap.IsCiphertext(seen)) {
			t.Fatalf("mixed (encrypt): row %d stored without encryption", id)
		}
	}
	if string(atRest(1)) != "S-1" {
		t.Fatalf("row 1 at rest: %q", atRest(1))
	}
	checkReads("mixed encrypt")
	// Searches find text forms and ciphertexts.
	search("mixed encrypt", "SELECT name FROM people WHERE ssn = 'S-1' OR ssn = $1", []any{"S-5"}, "p1", "p5")
	search("mixed encrypt", "SELECT name FROM people WHERE ssn IN ($1, 'S-6', 'S-4')", []any{"S-2"}, "p2", "p4", "p6")
	search("mixed encrypt", "SELECT name FROM people WHERE ssn <> 'S-1' AND ssn NOT IN ($1)", []any{"S-7"}, "p2", "p4", "p5", "p6")
	search("mixed encrypt", "SELECT name FROM people WHERE ssn IS NOT DISTINCT FROM $1", []any{"S-2"}, "p2")
	// So do the elements of an array parameter (extended protocol only).
	arraySearch := func(phase string, arr []string, wantNames ...string) {
		t.Helper()
		if got := names(t, ctx, conn, pgx.QueryExecModeCacheDescribe, "SELECT name FROM people WHERE ssn = ANY($1)", arr); !slices.Equal(got, wantNames) {
			t.Errorf("%s: ssn = ANY(%v): got %v, want %v", phase, arr, got, wantNames)
		}
	}
	arraySearch("mixed encrypt", []string{"S-1", "S-5", "S-x"}, "p1", "p5")
	// Roles without the key see what they would of a ciphertext, and
	// never a stored plaintext.
	for role, check := range map[string]func(name string, v []byte, null bool) bool{
		"auditor": func(_ string, v []byte, _ bool) bool { return string(v) == "********" },
		"archivist": func(name string, v []byte, null bool) bool {
			if name == "p4" || name == "p5" || name == "p6" || name == "p7" {
				return !null && bytes.HasPrefix(v, []byte(`\x`))
			}
			return null
		},
	} {
		c := h.connect(role)
		res := c.PgConn().ExecParams(ctx, "SELECT name, ssn FROM people WHERE ssn IS NOT NULL ORDER BY id", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("%s: %v", role, res.Err)
		}
		for _, r := range res.Rows {
			if !check(string(r[0]), r[1], r[1] == nil) {
				t.Errorf("%s sees %q for %s", role, r[1], r[0])
			}
		}
	}
	// COPY TO shows both kinds.
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY people (name, ssn) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "p1\tS-1\n") || !strings.Contains(got, "p5\tS-5\n") {
		t.Errorf("COPY TO: %q", got)
	}
	// A text-form row updated through the proxy becomes ciphertext.
	if tag, err := conn.Exec(ctx, "UPDATE people SET ssn = 'S-2b' WHERE ssn = $1", "S-2"); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("update of a text-form row: %v, %v", err, tag)
	}
	want[1].SSN = str("S-2b")
	if !keymap.IsCiphertext(atRest(2)) {
		t.Fatal("updated row stored without encryption")
	}

	// 4. The sweep converts the rest and encrypt finishes: encrypted.
	rules := map[string]*policy.ColumnRule{"ssn": h.idx.Column("public", "people", "ssn"), "seen": h.idx.Column("public", "people", "seen")}
	sweep(t, ctx, direct, kr, rules, func(c *keymap.ColumnCipher, rule *policy.ColumnRule, v []byte) ([]byte, error) {
		if keymap.IsCiphertext(v) {
			return v, nil
		}
		pt, err := keymap.CodecFor(rule.Type).Canonical(keymap.TextFormat, v, &keymap.TextContext{Location: time.UTC})
		if err != nil {
			return nil, err
		}
		return c.Encrypt(pt)
	})
	h.pg.ExecAdmin(t, `UPDATE pgcloak.column_migrations SET finished = now()`)
	checkReads("encrypted")
	eventually(t, "encrypted", func() error {
		// A non-ciphertext value now fails to read (no migration).
		if _, err := direct.Exec(ctx, "UPDATE public.people SET ssn = 'junk' WHERE id = 4"); err != nil {
			return err
		}

		_, err := conn.Exec(ctx, "SELECT ssn FROM people WHERE id = 4")
		if sqlstate(err) != "XX001" {
			return errors.New("a stored plaintext still reads")
		}
		return nil
	})
	h.pg.ExecAdmin(t, "UPDATE public.people SET ssn = (SELECT ssn FROM public.people WHERE id = 5) WHERE id = 4")
	want[3].SSN = str("S-5")
	search("encrypted", "SELECT name FROM people WHERE ssn = $1", []any{"S-5"}, "p4", "p5")

	// 5. decrypt recorded: writes store text forms, reads and searches
	// take both.
	h.pg.ExecAdmin(t, `UPDATE pgcloak.column_migrations SET action = 'decrypt', finished = NULL, started = now()`)
	eventually(t, "mixed decrypt write", func() error {
		if _, err := conn.Exec(ctx, "INSERT INTO people (id, name, ssn, seen) VALUES (8, 'p8', $1, $2)", "S-8", *ts("2024-04-04 04:04:04+00")); err != nil {
			return err
		}
		if v := atRest(8); string(v) != "S-8" {
			direct.Exec(ctx, "DELETE FROM public.people WHERE id = 8")
			return errors.New("write stored a ciphertext")
		}
		return nil
	})
	want = append(want, person{"p8", str("S-8"), ts("2024-04-04 04:04:04+00")})
	var seen []byte
	if err := direct.QueryRow(ctx, "SELECT seen FROM public.people WHERE id = 8", pgx.QueryExecModeExec).Scan(&seen); err != nil || string(seen) != "2024-04-04 04:04:04+00" {
		t.Fatalf("timestamptz stored as %q, %v; want its text form in UTC", seen, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE people SET ssn = 'S-6b' WHERE ssn = 'S-6'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	want[5].SSN = str("S-6b")
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("p9,S-9,\n"), "COPY people (name, ssn, seen) FROM STDIN WITH (FORMAT csv)"); err == nil {
		t.Fatal("COPY without id succeeded") // id has no default
	}
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("9,p9,S-9,\n"), "COPY people (id, name, ssn, seen) FROM STDIN WITH (FORMAT csv)"); err != nil {
		t.Fatal(err)
	}
	want = append(want, person{"p9", str("S-9"), nil})
	for _, id := range []int{6, 9} {
		if v := atRest(id); keymap.IsCiphertext(v) {
			t.Errorf("mixed (decrypt): row %d stored as ciphertext", id)
		}
	}
	checkReads("mixed decrypt")
	search("mixed decrypt", "SELECT name FROM people WHERE ssn IN ($1, 'S-8', 'S-6b')", []any{"S-7"}, "p6", "p7", "p8")
	arraySearch("mixed decrypt", []string{"S-7", "S-8", "S-6b", "S-x"}, "p6", "p7", "p8")

	// 6. decrypt finishing: writes and searches are refused before the
	// column gets its type back, so no proxy can race the ALTER.
	h.pg.ExecAdmin(t, `UPDATE pgcloak.column_migrations SET action = 'decrypt-finishing'`)
	eventually(t, "decrypt finishing", func() error {
		_, err := conn.Exec(ctx, "UPDATE people SET ssn = 'S-10' WHERE false")
		if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "pgcloak decrypt") {
			return errors.New("a write while decrypt finishes is not refused")
		}
		return nil
	})
	checkReads("decrypt finishing")
	if _, err := conn.Exec(ctx, "SELECT name FROM people WHERE ssn IN ($1, 'S-8')", "S-7"); sqlstate(err) != "0A000" {
		t.Fatalf("a search while decrypt finishes: %v", err)
	}

	// 7. The sweep writes text forms, the column gets its type back and
	// decrypt finishes: reads pass, writes are refused.
	sweep(t, ctx, direct, kr, rules, func(c *keymap.ColumnCipher, rule *policy.ColumnRule, v []byte) ([]byte, error) {
		if !keymap.IsCiphertext(v) {
			return v, nil
		}
		pt, err := c.Decrypt(v)
		if err != nil {
			return nil, err
		}
		return keymap.CodecFor(rule.Type).AppendText(nil, pt, &keymap.TextContext{Location: time.UTC})
	})
	h.pg.ExecAdmin(t, `BEGIN; ALTER TABLE public.people ALTER COLUMN ssn TYPE text USING pg_catalog.convert_from(ssn, 'UTF8'),
  ALTER COLUMN seen TYPE timestamptz USING pg_catalog.convert_from(seen, 'UTF8')::timestamptz;
UPDATE pgcloak.column_migrations SET action = 'decrypt', finished = now(); COMMIT;`)
	checkReads("decrypted")
	eventually(t, "decrypted", func() error {
		_, err := conn.Exec(ctx, "UPDATE people SET ssn = 'S-10' WHERE false")
		if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "run pgcloak encrypt") {
			return errors.New("a write to a decrypted column is not refused")
		}
		return nil
	})
	var plain string
	if err := direct.QueryRow(ctx, "SELECT string_agg(ssn, ',' ORDER BY id) FROM public.people", pgx.QueryExecModeExec).Scan(&plain); err != nil || plain != "S-1,S-2b,S-5,S-5,S-6b,S-7,S-8,S-9" {
		t.Fatalf("decrypted column holds %q, %v", plain, err)
	}
	checkReads("decrypted")
}

// sweep rewrites every non-NULL value of the rules' columns with convert.
func sweep(t *testing.T, ctx context.Context, direct *pgx.Conn, kr *keymap.Keyring, rules map[string]*policy.ColumnRule,
	convert func(*keymap.ColumnCipher, *policy.ColumnRule, []byte) ([]byte, error)) {
	t.Helper()
	for col, rule := range rules {
		c, err := kr.Cipher(ctx, rule)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := direct.Query(ctx, "SELECT id, "+col+" FROM public.people WHERE "+col+" IS NOT NULL", pgx.QueryExecModeExec)
		if err != nil {
			t.Fatal(err)
		}
		type idVal struct {
			ID  int
			Val []byte
		}
		vals, err := pgx.CollectRows(rows, pgx.RowToStructByPos[idVal])
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			nv, err := convert(c, rule, v.Val)
			if err != nil {
				t.Fatalf("row %d: %v", v.ID, err)
			}
			if _, err := direct.Exec(ctx, "UPDATE public.people SET "+col+" = $1 WHERE id = $2", pgx.QueryExecModeExec, nv, v.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMigrationsTableUnreadable: a role that may not read
// pgcloak.column_migrations cannot tell a column being migrated from an
// encrypted one: its writes and searches on policy columns are refused
// (reads still work), and the snapshot it loaded is not shared with roles
// that may read the table.
func TestMigrationsTableUnreadable(t *testing.T) {
	h := newHarness(t, migPolicy, strings.ReplaceAll(migSchema, "ssn text", "ssn bytea")+`
UPDATE public.people SET ssn = NULL;
ALTER TABLE public.people ALTER COLUMN seen TYPE bytea USING NULL;`, func(c *proxy.Config) {
		c.CatalogTTL = 100 * time.Millisecond
	})
	h.pg.ExecAdmin(t, `CREATE SCHEMA pgcloak; CREATE TABLE pgcloak.column_migrations (schema_name name, table_name name, column_name name, action text, key_name text, started timestamptz, finished timestamptz);
GRANT USAGE ON SCHEMA pgcloak TO doctor; GRANT SELECT ON pgcloak.column_migrations TO doctor;`)
	time.Sleep(200 * time.Millisecond) // snapshots from before the table expire
	ctx := ctxT(t)
	billing := h.connect("billing") // loads the first snapshot, without migrations
	_, err := billing.Exec(ctx, "SELECT name FROM people WHERE ssn = $1", "S-1")
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "pgcloak.column_migrations is not readable") {
		t.Fatalf("a search by a role that cannot read the migrations: %v", err)
	}
	if _, err := billing.Exec(ctx, "UPDATE people SET ssn = $1 WHERE id = 2", "S-2"); sqlstate(err) != "0A000" {
		t.Fatalf("a write by a role that cannot read the migrations: %v", err)
	}
	if got := names(t, ctx, billing, pgx.QueryExecModeCacheDescribe, "SELECT name FROM people WHERE id = $1", 1); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("a read: %v", got)
	}
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "UPDATE people SET ssn = $1 WHERE id = 1", "S-1"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeCacheDescribe, "SELECT name FROM people WHERE ssn = $1", "S-1"); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("search: %v", got)
	}
	if !strings.Contains(h.logBuf.String(), "pgcloak.column_migrations is not readable") {
		t.Error("no warning about the unreadable migrations table")
	}
}

// TestCatalogReloadInsideRepeatableRead: a catalog reloaded inside a
// REPEATABLE READ transaction shows the migration state of the
// transaction's snapshot; it is reloaded when the transaction ends, so
// decrypt's finishing phase is seen right after.
func TestCatalogReloadInsideRepeatableRead(t *testing.T) {
	h := newHarness(t, migPolicy, strings.ReplaceAll(migSchema, "ssn text", "ssn bytea")+`
UPDATE public.people SET ssn = NULL;
ALTER TABLE public.people ALTER COLUMN seen TYPE bytea USING NULL;`+migTable+`
INSERT INTO pgcloak.column_migrations VALUES ('public', 'people', 'ssn', 'decrypt', 'ssn', now(), NULL);`, func(c *proxy.Config) {
		c.CatalogTTL = 200 * time.Millisecond
	})
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	h.pg.ExecAdmin(t, `UPDATE pgcloak.column_migrations SET action = 'decrypt-finishing'`)
	time.Sleep(300 * time.Millisecond) // the snapshot expires
	// Reloaded inside the transaction: still mixed decrypt there.
	if _, err := conn.Exec(ctx, "SELECT name FROM people WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "UPDATE people SET ssn = $1 WHERE id = 1", "S-1")
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "pgcloak decrypt") {
		t.Fatalf("a write right after the transaction: %v", err)
	}
}

// TestCatalogReloadWhilePipelining: a client that always has a batch in
// flight still gets its catalog reloaded (the reload waits for an idle
// moment): decrypt's finishing phase reaches it.
func TestCatalogReloadWhilePipelining(t *testing.T) {
	h := newHarness(t, migPolicy, strings.ReplaceAll(migSchema, "ssn text", "ssn bytea")+`
UPDATE public.people SET ssn = NULL;
ALTER TABLE public.people ALTER COLUMN seen TYPE bytea USING NULL;`+migTable+`
INSERT INTO pgcloak.column_migrations VALUES ('public', 'people', 'ssn', 'decrypt', 'ssn', now(), NULL);`, func(c *proxy.Config) {
		c.CatalogTTL = 100 * time.Millisecond
	})
	ctx := ctxT(t)
	conn := h.connect("doctor")
	p := conn.PgConn().StartPipeline(ctx)
	defer p.Close()
	send := func() {
		p.SendQueryParams("SELECT pg_catalog.pg_sleep(0.02)", nil, nil, nil, nil)
		p.SendQueryParams("UPDATE people SET ssn = $1 WHERE false", [][]byte{[]byte("S-9")}, nil, nil, nil)
		p.SendPipelineSync()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// read returns the error of the oldest batch in flight, if any.
	read := func() error {
		var batchErr error
		for {
			res, err := p.GetResults()
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				if batchErr == nil {
					batchErr = err
				}
				continue
			}
			if err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				if _, err := r.Close(); err != nil && batchErr == nil {
					batchErr = err
				}
			case *pgconn.PipelineSync:
				return batchErr
			}
		}
	}
	send()
	start := time.Now()
	recorded := false
	for {
		send() // the next batch goes before the previous one is read
		err := read()
		if err != nil {
			if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "pgcloak decrypt") {
				t.Fatalf("update: %v", err)
			}
			break // refused: the finishing phase reached the session
		}
		if !recorded && time.Since(start) > 300*time.Millisecond {
			h.pg.ExecAdmin(t, `UPDATE pgcloak.column_migrations SET action = 'decrypt-finishing'`)
			recorded = true
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the session never saw decrypt's finishing phase")
		}
	}
	read()
}

// TestWritesAcrossColumnStates: during a decrypt of patients.ssn, a value
// written to it and to visits.patient_ssn (same key) in one statement is
// stored as ciphertext, and copying patients.ssn (which holds text forms)
// into visits.patient_ssn is refused: visits.patient_ssn never holds a
// plaintext.
func TestWritesAcrossColumnStates(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+migTable+`
INSERT INTO pgcloak.column_migrations VALUES ('public','patients','ssn','decrypt','ssn',now(),NULL);`)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('x', 'S-LEAK')"); err != nil {
		t.Fatal(err)
	}
	var v []byte
	if err := h.direct().QueryRow(ctx, "SELECT ssn FROM public.patients WHERE name = 'x'").Scan(&v); err != nil || string(v) != "S-LEAK" {
		t.Fatalf("a write during decrypt stored %q, %v; want its text form", v, err)
	}
	for _, sql := range []string{
		"INSERT INTO visits (patient_ssn) SELECT $1 FROM patients WHERE ssn = $1",
		"WITH a AS (INSERT INTO patients (name, ssn) VALUES ('y', $1)) INSERT INTO visits (patient_ssn) VALUES ($1)",
	} {
		for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			val := "S-LEAK"
			if strings.HasPrefix(sql, "WITH") {
				val = fmt.Sprintf("S-2-%d", i) // patients.ssn is unique
			}
			if _, err := conn.Exec(ctx, sql, mode, val); err != nil {
				t.Fatalf("%s (%v): %v", sql, mode, err)
			}
		}
	}
	_, err := conn.Exec(ctx, "INSERT INTO visits (patient_ssn) SELECT ssn FROM patients WHERE name = 'x'")
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "cannot be copied") {
		t.Errorf("copy of a column being decrypted: %v", err)
	}
	rows, err := h.direct().Query(ctx, "SELECT patient_ssn FROM public.visits")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil || len(vals) != 4 {
		t.Fatalf("visits: %d rows, %v", len(vals), err)
	}
	for _, v := range vals {
		if !keymap.IsCiphertext(v) {
			t.Errorf("visits.patient_ssn holds %q", v)
		}
	}
	if got := names(t, ctx, conn, pgx.QueryExecModeSimpleProtocol, "SELECT name FROM patients WHERE ssn IN ('S-LEAK', 'S-2-0', 'S-2-1')"); fmt.Sprint(got) != "[x y y]" {
		t.Errorf("search during decrypt: %v", got)
	}
}
