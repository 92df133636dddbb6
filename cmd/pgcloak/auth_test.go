package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/scramauth"
	"github.com/pgcloak/pgcloak/testenv"
)

// dsnAs is pg's connection string with another user.
func dsnAs(t *testing.T, pg *testenv.PG, user string) string {
	t.Helper()
	u, err := url.Parse(pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

func TestAuthInstallLetsOnlyTheAuthRoleReadVerifiers(t *testing.T) {
	pg := testenv.Postgres(t)
	path := writeConfig(t, pg.Address())
	for _, r := range []string{"pgcloak_authq", "authq_user", "authq_other"} {
		pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE `+r+` LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	}
	pg.ExecAdmin(t, `SET password_encryption = 'scram-sha-256'; ALTER ROLE authq_user PASSWORD 'secret'`)

	out, err := runCLI(t, nil, "auth", "install", "--config", path, "--role", "pgcloak_authq", "--print")
	if err != nil || !strings.Contains(out, "SECURITY DEFINER") || !strings.Contains(out, `TO "pgcloak_authq"`) {
		t.Fatalf("--print: %v\n%s", err, out)
	}
	if _, err := runCLI(t, nil, "auth", "install", "--config", path, "--role", "pgcloak_authq", "--dsn", dsnAs(t, pg, "authq_other")); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Fatalf("as a non-superuser: %v", err)
	}
	if _, err := runCLI(t, nil, "auth", "install", "--config", path); err == nil || !strings.Contains(err.Error(), "no auth role") {
		t.Fatalf("without a role: %v", err)
	}
	for range 2 { // idempotent
		out, err = runCLI(t, nil, "auth", "install", "--config", path, "--role", "pgcloak_authq", "--dsn", pg.DSN())
		if err != nil || !strings.Contains(out, "installed pgcloak_scram.verifier") {
			t.Fatalf("install: %v\n%s", err, out)
		}
	}

	// A schema of that name owned by another role: refused, so that its
	// owner cannot replace the function.
	pg.ExecAdmin(t, `DROP SCHEMA pgcloak_scram CASCADE; CREATE SCHEMA pgcloak_scram AUTHORIZATION authq_other`)
	if _, err := runCLI(t, nil, "auth", "install", "--config", path, "--role", "pgcloak_authq", "--dsn", pg.DSN()); err == nil || !strings.Contains(err.Error(), "not a superuser owns it") {
		t.Fatalf("installing into another role's schema: %v", err)
	}
	pg.ExecAdmin(t, `DROP SCHEMA pgcloak_scram CASCADE`)
	if _, err := runCLI(t, nil, "auth", "install", "--config", path, "--role", "pgcloak_authq", "--dsn", pg.DSN()); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	lookup := func(as, role string) (*string, error) {
		conn, err := pgx.Connect(ctx, dsnAs(t, pg, as))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v *string
		err = conn.QueryRow(ctx, "SELECT pgcloak_scram.verifier($1)", role).Scan(&v)
		return v, err
	}
	if v, err := lookup("pgcloak_authq", "authq_user"); err != nil || v == nil || !strings.HasPrefix(*v, "SCRAM-SHA-256$") {
		t.Fatalf("the auth role reading a login role's verifier: %v, %v", v, err)
	}
	for _, role := range []string{pg.Superuser, "authq_other", "no_such_role"} {
		if v, err := lookup("pgcloak_authq", role); err != nil || v != nil {
			t.Errorf("verifier of %s (superuser, no password, missing): %v, %v; want NULL", role, v, err)
		}
	}
	if _, err := lookup("authq_other", "authq_user"); pgErrCode(err) != "42501" {
		t.Fatalf("another role calling the function: %v, want 42501", err)
	}
}

// TestAuthVerifierMatchesWhatPostgreSQLStores: the ALTER ROLE that
// pgcloak auth verifier prints makes PostgreSQL store the very verifier of
// the file line, and the password is the one that verifies.
func TestAuthVerifierMatchesWhatPostgreSQLStores(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE "authq ""v"""; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	cmd := newRootCommand()
	var out, errb bytes.Buffer
	cmd.SetIn(strings.NewReader("pass wörd\n"))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs([]string{"auth", "verifier", `authq "v"`})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(out.String())
	alter := strings.TrimSpace(errb.String()[strings.Index(errb.String(), "ALTER ROLE"):])
	pg.ExecAdmin(t, alter)
	var stored string
	if err := pg.Connect(t).QueryRow(context.Background(), `SELECT rolpassword FROM pg_authid WHERE rolname = 'authq "v"'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if line != `"authq ""v""" "`+stored+`"` {
		t.Fatalf("file line %s, PostgreSQL stores %s", line, stored)
	}
	v, err := scramauth.ParseVerifier(stored)
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := scramauth.NewVerifier("pass wörd"); w.Equal(v) {
		t.Fatal("a fresh verifier reused the salt")
	}
	cmd = newRootCommand()
	cmd.SetIn(strings.NewReader(""))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs([]string{"auth", "verifier", "x"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("an empty password gave a verifier")
	}
}
