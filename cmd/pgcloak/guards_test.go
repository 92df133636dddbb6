package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
)

// TestPolicyApplyGuards: apply installs the guards idempotently; PostgreSQL
// then refuses plaintext in an encrypted column and moves of policy names
// from any role but a superuser or the admin role, whatever path the
// statement takes; policy check fails when a guard is missing or altered.
func TestPolicyApplyGuards(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 50)
	ctx := context.Background()
	if err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	conn := pg.Connect(t)
	var out bytes.Buffer
	if err := applyGuards(ctx, conn, cfg.Policy, &out); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	for _, want := range []string{"public.people.ssn: check added", "public.people.born: date in PostgreSQL", "database guards installed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("apply output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := applyGuards(ctx, conn, cfg.Policy, &out); err != nil || !strings.Contains(out.String(), "public.people.ssn: check in place") {
		t.Fatalf("second apply: %v\n%s", err, out.String())
	}
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 0 {
		t.Fatalf("policy check after apply: %q", problems)
	}

	// An ordinary role owning the table, straight to PostgreSQL.
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE mallory LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.ExecAdmin(t, "ALTER TABLE people OWNER TO mallory")
	// "" must pass, "*" must fail somehow, else the SQLSTATE.
	steps := []struct{ sql, code string }{
		{"INSERT INTO people (id, ssn) VALUES (100001, 'plain-ssn'::bytea)", "23514"},
		{"UPDATE people SET ssn = 'x'::bytea WHERE id = 1", "23514"},
		{"ALTER TABLE people RENAME COLUMN ssn TO ssn_moved", "42501"},
		{"ALTER TABLE people RENAME COLUMN born TO born_moved", "42501"},
		{"ALTER TABLE people RENAME TO people_moved", "42501"},
		{"ALTER TABLE people SET SCHEMA pg_temp", "*"},
		{"ALTER TABLE people DROP CONSTRAINT pgcloak_ciphertext_ssn", "42501"},
		{"ALTER TABLE people ALTER COLUMN ssn TYPE text USING NULL", "*"},
		{"ALTER TABLE people DROP COLUMN ssn", "42501"},
		{"ALTER INDEX people RENAME TO people_idx", "42501"},
		{"ALTER TABLE people RENAME CONSTRAINT pgcloak_ciphertext_ssn TO loose", "42501"},
		{"ALTER TABLE people DROP COLUMN ssn, ADD COLUMN ssn bytea, ADD CONSTRAINT pgcloak_ciphertext_ssn CHECK (" + dbguard.CiphertextCheck("ssn", keymap.CiphertextPrefix(), keymap.MinCiphertextLen) + ")", "42501"},
		{"ALTER TABLE people ADD CONSTRAINT other_check CHECK (true)", ""},
		{"ALTER TABLE people DROP CONSTRAINT other_check", ""},
	}
	for _, s := range steps {
		_, err := conn.Exec(ctx, "SET ROLE mallory; "+s.sql)
		conn.Exec(ctx, "RESET ROLE")
		var pe *pgconn.PgError
		switch {
		case s.code == "" && err != nil:
			t.Errorf("%s: %v", s.sql, err)
		case s.code == "*" && err == nil:
			t.Errorf("%s: not refused", s.sql)
		case s.code != "" && s.code != "*" && (!errors.As(err, &pe) || pe.Code != s.code):
			t.Errorf("%s: want %s, got %v", s.sql, s.code, err)
		}
	}
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 0 {
		t.Fatalf("policy check after the refused changes: %q", problems)
	}
	// A superuser may change them; policy check then says so, and apply
	// repairs it.
	pg.ExecAdmin(t, "ALTER TABLE people DROP CONSTRAINT pgcloak_ciphertext_ssn")
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 1 || !strings.Contains(problems[0], "missing or was changed") {
		t.Fatalf("policy check without the check: %q", problems)
	}
	if err := applyGuards(ctx, conn, cfg.Policy, &out); err != nil {
		t.Fatal(err)
	}
	pg.ExecAdmin(t, "ALTER EVENT TRIGGER pgcloak_guard DISABLE")
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 1 || !strings.Contains(problems[0], "not installed") {
		t.Fatalf("policy check with the event trigger disabled: %q", problems)
	}
}

// TestMigrationsWithGuards: encrypt, reencrypt and decrypt keep working on
// a guarded database, dropping and restoring the column's check.
func TestMigrationsWithGuards(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 300)
	ctx := context.Background()
	conn := pg.Connect(t)
	var out bytes.Buffer
	if err := applyGuards(ctx, conn, cfg.Policy, &out); err != nil {
		t.Fatalf("apply before encrypt: %v", err)
	}
	if err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	checkColumn(t, pg, cfg, st, "ssn", true)
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 0 {
		t.Fatalf("after encrypt: %q", problems)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO people (id, ssn) VALUES (100001, 'plain'::bytea)"); err == nil {
		t.Fatal("the check was not restored after encrypt")
	}
	if err := runMigration(t, ctx, pg, cfg, st, actionReencrypt, "ssn", nil); err != nil {
		t.Fatalf("reencrypt: %v", err)
	}
	if err := runMigration(t, ctx, pg, cfg, st, actionDecrypt, "ssn", nil); err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	checkColumn(t, pg, cfg, st, "ssn", false)
	if problems := checkGuards(ctx, conn, cfg.Policy); len(problems) != 0 {
		t.Fatalf("after decrypt: %q", problems)
	}
}
