package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

const migratePolicy = `policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: dates, kind: randomized}
  columns:
    - {table: public.people, column: ssn, key: ssn, type: text}
    - {table: public.people, column: born, key: dates, type: date}
  roles:
    - {role: postgres, read: [ssn, dates], write: [ssn, dates]}
`

// localConfig writes a config for pg with a fresh local keystore (keys
// cached for 1s) and policyYAML, loads it and creates its keys.
func localConfig(t *testing.T, pg *testenv.PG, policyYAML string) (*policy.Config, *store) {
	t.Helper()
	dir := t.TempDir()
	_, ks, err := keymap.NewLocalStoreInDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pgcloak.yaml")
	body := fmt.Sprintf("upstream: {address: %s}\nkeystore:\n  local: {path: %s, master_key_file: %s}\n  cache_ttl: 1s\n%s",
		pg.Address(), ks.Path, ks.MasterKeyFile, policyYAML)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(context.Background(), cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keymap.CreateMissing(context.Background(), st, cfg.Policy.Keys); err != nil {
		t.Fatal(err)
	}
	return cfg, st
}

// migrationFixture is a 100,000-row table with two columns to migrate and a
// plaintext copy to compare with.
func migrationFixture(t *testing.T, rows int) (*testenv.PG, *policy.Config, *store) {
	t.Helper()
	pg := testenv.Postgres(t)
	createPeople(t, pg, rows)
	cfg, st := localConfig(t, pg, migratePolicy)
	return pg, cfg, st
}

// createPeople creates people with rows rows of plaintext (ssn is id as
// nine digits, NULL every 97th row) and people_plain, a copy to compare
// with.
func createPeople(t *testing.T, pg *testenv.PG, rows int) {
	t.Helper()
	pg.ExecAdmin(t, fmt.Sprintf(`CREATE TABLE people (id int PRIMARY KEY, name text, ssn text, born date);
		INSERT INTO people SELECT g, 'n' || g, CASE WHEN g %% 97 = 0 THEN NULL ELSE lpad(g::text, 9, '0') END,
			DATE '1950-01-01' + (g %% 20000)
		FROM generate_series(1, %d) g;
		CREATE TABLE people_plain (LIKE people INCLUDING ALL);
		INSERT INTO people_plain SELECT * FROM people;`, rows))
}

// The tests' names for the actions.
const (
	actionEncrypt   = colmigrate.ActionEncrypt
	actionReencrypt = colmigrate.ActionReencrypt
	actionDecrypt   = colmigrate.ActionDecrypt
)

func runMigration(t *testing.T, ctx context.Context, pg *testenv.PG, cfg *policy.Config, st *store, action colmigrate.Action, column string, afterBatch func(int)) error {
	t.Helper()
	o := &migrateOptions{table: "public.people", column: column, dsn: pg.DSN(), batch: 1000, progress: "log", afterBatch: afterBatch}
	m, err := newMigration(ctx, cfg, st, action, o, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		return err
	}
	defer m.Close()
	return runMigrate(ctx, m, action, o, io.Discard)
}

// checkColumn compares every row of people.column with people_plain,
// decrypting with the policy's key when encrypted is true.
func checkColumn(t *testing.T, pg *testenv.PG, cfg *policy.Config, st *store, column string, encrypted bool) {
	t.Helper()
	ctx := context.Background()
	rule := policy.NewIndex(cfg.Policy).Column("public", "people", column)
	c, err := keymap.NewKeyring(st, time.Hour).Cipher(ctx, rule)
	if err != nil {
		t.Fatal(err)
	}
	codec := keymap.CodecFor(rule.Type)
	conn := pg.Connect(t)
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf(`SELECT p.id, p.%[1]s::text, q.%[1]s::text, pg_typeof(p.%[1]s)::text FROM people p JOIN people_plain q USING (id) ORDER BY id`, column)
	if encrypted {
		q = fmt.Sprintf(`SELECT p.id, encode(p.%[1]s, 'hex'), q.%[1]s::text, pg_typeof(p.%[1]s)::text FROM people p JOIN people_plain q USING (id) ORDER BY id`, column)
	}
	rows, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var got, want *string
		var typ string
		if err := rows.Scan(&id, &got, &want, &typ); err != nil {
			t.Fatal(err)
		}
		n++
		if (got == nil) != (want == nil) {
			t.Fatalf("row %d: NULL-ness differs", id)
		}
		if got == nil {
			continue
		}
		if !encrypted {
			if *got != *want {
				t.Fatalf("row %d: %q, want %q", id, *got, *want)
			}
			continue
		}
		if typ != "bytea" {
			t.Fatalf("column type %s", typ)
		}
		raw := decodeHex(t, *got)
		pt, err := c.Decrypt(raw)
		if err != nil {
			t.Fatalf("row %d does not decrypt: %v", id, err)
		}
		text, _ := codec.AppendText(nil, pt, &keymap.TextContext{Location: time.UTC})
		if string(text) != *want {
			t.Fatalf("row %d decrypts to %q, want %q", id, text, *want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no rows compared")
	}
}

func decodeHex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		if _, err := fmt.Sscanf(s[2*i:2*i+2], "%02x", &v); err != nil {
			t.Fatal(err)
		}
		b[i] = v
	}
	return b
}

// TestMigrateEncryptInterruptedThenResumed encrypts 100,000 rows, is cut off
// after a few batches, and completes when run again; then reencrypt after a
// rotation and decrypt bring the column back exactly.
func TestMigrateEncryptInterruptedThenResumed(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 100_000)
	ctx, cancel := context.WithCancel(context.Background())
	batches := 0
	err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "ssn", func(int) {
		if batches++; batches == 5 {
			cancel()
		}
	})
	if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	var done, left int
	conn := pg.Connect(t)
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE substring(ssn from 1 for 5) = $1),
		count(*) FILTER (WHERE ssn IS NOT NULL AND substring(ssn from 1 for 5) <> $1) FROM people`, keymap.CiphertextHeader()).Scan(&done, &left); err != nil {
		t.Fatal(err)
	}
	if done == 0 || left == 0 {
		t.Fatalf("after the interruption %d rows encrypted and %d left; want some of each", done, left)
	}
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	checkColumn(t, pg, cfg, st, "ssn", true)
	// Running it again changes nothing.
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	checkColumn(t, pg, cfg, st, "ssn", true)

	// Rotate, then reencrypt: every row moves to the new primary version.
	if err := st.Rotate(context.Background(), "ssn"); err != nil {
		t.Fatal(err)
	}
	if err := runMigration(t, context.Background(), pg, cfg, st, actionReencrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	infos, _ := st.List(context.Background())
	var primary uint32
	for _, k := range infos {
		if k.Name == "ssn" {
			primary = k.PrimaryID
		}
	}
	var old int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM people WHERE ssn IS NOT NULL AND substring(ssn from 7 for 4) <> $1`,
		[]byte{byte(primary >> 24), byte(primary >> 16), byte(primary >> 8), byte(primary)}).Scan(&old); err != nil {
		t.Fatal(err)
	}
	if old != 0 {
		t.Fatalf("%d rows still under an older key version", old)
	}
	checkColumn(t, pg, cfg, st, "ssn", true)

	// Decrypt: back to text with the original values.
	if err := runMigration(t, context.Background(), pg, cfg, st, actionDecrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	checkColumn(t, pg, cfg, st, "ssn", false)
}

func TestMigrateDateColumnRoundTrip(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 3000)
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "born", nil); err != nil {
		t.Fatal(err)
	}
	checkColumn(t, pg, cfg, st, "born", true)
	if err := runMigration(t, context.Background(), pg, cfg, st, actionDecrypt, "born", nil); err != nil {
		t.Fatal(err)
	}
	checkColumn(t, pg, cfg, st, "born", false)
	var state string
	if err := pg.Connect(t).QueryRow(context.Background(), `SELECT action || ':' || (finished IS NOT NULL)::text FROM pgcloak.column_migrations WHERE column_name = 'born'`).Scan(&state); err != nil || state != "decrypt:true" {
		t.Fatalf("migration state %q %v", state, err)
	}
}

func TestMigrateRefusesUnknownColumnAndTableWithoutKey(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 10)
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "name", nil); err == nil || !strings.Contains(err.Error(), "not a column of the policy") {
		t.Fatalf("plain column: %v", err)
	}
	pg.ExecAdmin(t, "ALTER TABLE people DROP CONSTRAINT people_pkey")
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "ssn", nil); err == nil || !strings.Contains(err.Error(), "no primary key") {
		t.Fatalf("table without primary key: %v", err)
	}
}

// TestMigrateByteaColumnRoundTrip: a column of logical type bytea holds raw
// bytes, not text: encrypt keeps every byte (backslashes, the bytes of
// "\x41"), running it again changes nothing, and decrypt gives them back.
func TestMigrateByteaColumnRoundTrip(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, `CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
		INSERT INTO blobs VALUES (1, '\x5c7831'), (2, '\x00ff5c'), (3, ''), (4, NULL), (5, '\x41');
		CREATE TABLE blobs_plain AS SELECT * FROM blobs;`)
	cfg, st := localConfig(t, pg, `policy:
  keys: [{name: blobs, kind: randomized}]
  columns: [{table: public.blobs, column: data, key: blobs, type: bytea}]
`)
	ctx := context.Background()
	runCut := func(action colmigrate.Action, cutAfter int) error {
		t.Helper()
		cut, cancel := context.WithCancel(ctx)
		defer cancel()
		batches := 0
		o := &migrateOptions{table: "public.blobs", column: "data", dsn: pg.DSN(), batch: 2, progress: "log", afterBatch: func(int) {
			if batches++; batches == cutAfter {
				cancel()
			}
		}}
		m, err := newMigration(cut, cfg, st, action, o, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return runMigrate(cut, m, action, o, io.Discard)
	}
	run := func(action colmigrate.Action) {
		t.Helper()
		if err := runCut(action, 0); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	c, err := keymap.NewKeyring(st, time.Hour).Cipher(ctx, policy.NewIndex(cfg.Policy).Column("public", "blobs", "data"))
	if err != nil {
		t.Fatal(err)
	}
	conn := pg.Connect(t)
	compare := func(encrypted bool) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT b.id, b.data, p.data FROM blobs b JOIN blobs_plain p USING (id) ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		type pair struct {
			ID        int
			Got, Want []byte
		}
		pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pair])
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			got := p.Got
			if encrypted && got != nil {
				if got, err = c.Decrypt(got); err != nil {
					t.Fatalf("row %d: %v", p.ID, err)
				}
			}
			if (got == nil) != (p.Want == nil) || !bytes.Equal(got, p.Want) {
				t.Errorf("row %d: %x, want %x (encrypted %v)", p.ID, got, p.Want, encrypted)
			}
		}
	}
	run(actionEncrypt)
	compare(true)
	run(actionEncrypt)
	compare(true)
	// An interrupted decrypt leaves text forms, which encrypt must not
	// encode again.
	if err := runCut(actionDecrypt, 1); err == nil {
		t.Fatal("decrypt was not interrupted")
	}
	run(actionEncrypt)
	compare(true)
	run(actionDecrypt)
	compare(false)
	run(actionDecrypt) // already done: changes nothing
	compare(false)
}

// TestMigrateStateChecks: each command checks what the column's recorded
// migration allows, so that no sequence of commands leaves rows wrong.
func TestMigrateStateChecks(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 3000)
	ctx := context.Background()
	interrupted := func(action colmigrate.Action) {
		t.Helper()
		cut, cancel := context.WithCancel(ctx)
		defer cancel()
		batches := 0
		err := runMigration(t, cut, pg, cfg, st, action, "ssn", func(int) {
			if batches++; batches == 1 {
				cancel()
			}
		})
		if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") {
			t.Fatalf("%s interrupted: %v", action, err)
		}
	}
	must := func(action colmigrate.Action) {
		t.Helper()
		if err := runMigration(t, ctx, pg, cfg, st, action, "ssn", nil); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	refused := func(action colmigrate.Action, want string) {
		t.Helper()
		err := runMigration(t, ctx, pg, cfg, st, action, "ssn", nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want an error saying %q", action, err, want)
		}
	}
	refused(actionReencrypt, "holds plaintext (text): run pgcloak encrypt first")
	refused(actionDecrypt, "it holds no ciphertext to decrypt")
	interrupted(actionEncrypt)
	refused(actionReencrypt, "has an unfinished pgcloak encrypt")
	must(actionEncrypt)
	checkColumn(t, pg, cfg, st, "ssn", true)
	interrupted(actionDecrypt)
	refused(actionReencrypt, "has an unfinished pgcloak decrypt")
	must(actionEncrypt) // back from a half-done decrypt
	checkColumn(t, pg, cfg, st, "ssn", true)
	must(actionDecrypt)
	checkColumn(t, pg, cfg, st, "ssn", false)
	must(actionDecrypt) // already done
	checkColumn(t, pg, cfg, st, "ssn", false)
	refused(actionReencrypt, "holds plaintext")
	must(actionEncrypt) // again after a decrypt
	checkColumn(t, pg, cfg, st, "ssn", true)
}

// TestDecryptWaitsForOlderTransactions: decrypt does not give the column
// its type back while a transaction that began before its finishing phase
// is open (at REPEATABLE READ it would still see the migration as before).
func TestDecryptWaitsForOlderTransactions(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 500)
	ctx := context.Background()
	if err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	old := pg.Connect(t)
	if _, err := old.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runMigration(t, ctx, pg, cfg, st, actionDecrypt, "ssn", nil) }()
	select {
	case err := <-done:
		t.Fatalf("decrypt ended while an older transaction was open: %v", err)
	case <-time.After(2 * time.Second):
	}
	if _, err := old.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("decrypt did not end after the older transaction did")
	}
	checkColumn(t, pg, cfg, st, "ssn", false)
}

// TestMigrateRefusesEncryptedPrimaryKey: rows are named by their primary
// key in progress and errors, so a key that includes a policy column (its
// plaintext) is refused.
func TestMigrateRefusesEncryptedPrimaryKey(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, `CREATE TABLE codes (code text PRIMARY KEY, note text); INSERT INTO codes VALUES ('C-1', 'n')`)
	cfg, st := localConfig(t, pg, `policy:
  keys: [{name: codes, kind: deterministic}]
  columns: [{table: public.codes, column: code, key: codes, type: text}, {table: public.codes, column: note, key: codes, type: text}]
`)
	o := &migrateOptions{table: "public.codes", column: "note", dsn: pg.DSN(), batch: 10, progress: "log"}
	_, err := newMigration(context.Background(), cfg, st, actionEncrypt, o, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "includes policy column code") {
		t.Fatalf("encrypt of a table keyed by a policy column: %v", err)
	}
}

// A pgcloak schema someone else made is not reused: the proxies would not
// believe the states recorded there (issue 7, finding 4).
func TestMigrateRefusesPgcloakSchemaOfAnotherRole(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 10)
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE mallory LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.ExecAdmin(t, "CREATE SCHEMA pgcloak AUTHORIZATION mallory")
	err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "ssn", nil)
	if err == nil || !strings.Contains(err.Error(), "must be a table and a schema owned by") {
		t.Fatalf("encrypt in mallory's pgcloak schema: %v", err)
	}
	var typ string
	if err := pg.Connect(t).QueryRow(context.Background(), "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'ssn'").Scan(&typ); err != nil || typ == "bytea" {
		t.Fatalf("the column was changed anyway: %q %v", typ, err)
	}
	pg.ExecAdmin(t, "ALTER SCHEMA pgcloak OWNER TO postgres; ALTER TABLE pgcloak.column_migrations OWNER TO postgres")
	if err := runMigration(t, context.Background(), pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatalf("encrypt once the schema is the superuser's: %v", err)
	}
}
