package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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
		if err != nil || !strings.Contains(out, "installed pgcloak.scram_verifier") {
			t.Fatalf("install: %v\n%s", err, out)
		}
	}

	ctx := context.Background()
	lookup := func(as, role string) (*string, error) {
		conn, err := pgx.Connect(ctx, dsnAs(t, pg, as))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v *string
		err = conn.QueryRow(ctx, "SELECT pgcloak.scram_verifier($1)", role).Scan(&v)
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
