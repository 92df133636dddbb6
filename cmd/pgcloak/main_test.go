package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		// Started by startProcess: this test binary is pgcloak.
		main()
		os.Exit(0)
	}
	os.Exit(testenv.Run(m))
}

// runCLI runs the root command with args and returns its output.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

const cliPolicy = `upstream:
  address: %s
keystore:
  local: {path: %s, master_key_file: %s}
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
  roles:
    - {role: postgres, read: [ssn, clinical], write: [ssn, clinical]}
`

// writeConfig writes a config for pg with a fresh master key.
func writeConfig(t *testing.T, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	master := filepath.Join(dir, "master.key")
	key, err := keymap.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(master, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pgcloak.yaml")
	body := fmt.Sprintf(cliPolicy, upstream, filepath.Join(dir, "keys.json"), master)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigStrictAndEnvOverride(t *testing.T) {
	path := writeConfig(t, "127.0.0.1:5432")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:6432" {
		t.Fatalf("default listen = %q", cfg.Server.Listen)
	}
	t.Setenv("PGCLOAK_SERVER_LISTEN", "127.0.0.1:7432")
	t.Setenv("PGCLOAK_SERVER_MAX_MESSAGE_BYTES", "2048")
	t.Setenv("PGCLOAK_UPSTREAM_TLS_MODE", "require")
	cfg, err = loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:7432" || cfg.Server.MaxMessageBytes != 2048 || cfg.Upstream.TLS.Mode != "require" {
		t.Fatalf("env overrides not applied: %+v %+v", cfg.Server, cfg.Upstream)
	}
	if len(cfg.Policy.Columns) != 2 || cfg.Policy.Columns[0].Line == 0 {
		t.Fatalf("policy lost or without line numbers: %+v", cfg.Policy.Columns)
	}
	t.Setenv("PGCLOAK_UPSTREAM_TLS_MODE", "bogus")
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "upstream.tls.mode") {
		t.Fatalf("invalid env value: err = %v", err)
	}
}

func TestConfigAuditFromFileAndEnv(t *testing.T) {
	path := writeConfig(t, "127.0.0.1:5432")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := policy.Defaults().Audit; cfg.Audit != want {
		t.Fatalf("audit = %+v, want the defaults %+v", cfg.Audit, want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = append([]byte("audit:\n  output: /var/log/pgcloak/audit.log\n  buffer: 16\n"), data...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGCLOAK_AUDIT_OUTPUT", "syslog+udp://127.0.0.1:514")
	t.Setenv("PGCLOAK_AUDIT_ON_FULL", "drop")
	t.Setenv("PGCLOAK_AUDIT_MAX_SIZE_MB", "5")
	cfg, err = loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Audit{Output: "syslog+udp://127.0.0.1:514", MaxSizeMB: 5, MaxBackups: 10, OnFull: "drop", Buffer: 16}
	if cfg.Audit != want {
		t.Fatalf("audit = %+v, want %+v", cfg.Audit, want)
	}
	t.Setenv("PGCLOAK_AUDIT_ON_FULL", "spill")
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "audit.on_full") {
		t.Fatalf("invalid env value: err = %v", err)
	}
}

func TestPolicyCheck(t *testing.T) {
	pg := testenv.Postgres(t)
	path := writeConfig(t, pg.Address())
	dsn := pg.DSN()

	out, err := runCLI(t, nil, "policy", "check", "--config", path, "--offline")
	if err != nil || !strings.Contains(out, "config OK") {
		t.Fatalf("offline check: %v\n%s", err, out)
	}
	// Nothing exists yet: keys and table missing.
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err == nil {
		t.Fatalf("check passed without keys or table:\n%s", out)
	}
	for _, want := range []string{`key "ssn" does not exist`, "table public.patients does not exist"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out, err := runCLI(t, nil, "keys", "create", "--all", "--config", path); err != nil || !strings.Contains(out, "created ssn") {
		t.Fatalf("keys create --all: %v\n%s", err, out)
	}
	if out, err := runCLI(t, nil, "keys", "create", "--all", "--config", path); err != nil || !strings.Contains(out, "exists already") {
		t.Fatalf("second keys create --all: %v\n%s", err, out)
	}
	out, err = runCLI(t, nil, "keys", "list", "--config", path)
	if err != nil || !strings.Contains(out, "clinical  randomized") || !strings.Contains(out, "ssn       deterministic") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	// A wrongly typed column is named.
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id int, ssn bytea, diagnosis text)")
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err == nil || !strings.Contains(out, "column public.patients.diagnosis is text; encrypted columns must be bytea") {
		t.Fatalf("check with a text column: %v\n%s", err, out)
	}
	pg.ExecAdmin(t, "ALTER TABLE public.patients ALTER COLUMN diagnosis TYPE bytea USING diagnosis::bytea")
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err == nil || !strings.Contains(out, "the database guards are not installed") {
		t.Fatalf("check without the database guards: %v\n%s", err, out)
	}
	if out, err := runCLI(t, nil, "policy", "apply", "--config", path, "--dsn", dsn); err != nil || !strings.Contains(out, "database guards installed") {
		t.Fatalf("policy apply: %v\n%s", err, out)
	}
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err != nil || !strings.Contains(out, "policy OK") {
		t.Fatalf("check on a matching, guarded schema: %v\n%s", err, out)
	}
	// Migration state someone else could have forged is named.
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE mallory LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.ExecAdmin(t, "ALTER SCHEMA pgcloak OWNER TO mallory")
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err == nil || !strings.Contains(out, "pgcloak.column_migrations is ignored by the proxy") {
		t.Fatalf("check with a foreign pgcloak schema: %v\n%s", err, out)
	}
	pg.ExecAdmin(t, "ALTER SCHEMA pgcloak OWNER TO CURRENT_USER")
	if _, err := runCLI(t, nil, "keys", "destroy", "ssn", "--config", path); err == nil {
		t.Fatal("destroy without --yes succeeded")
	}
	if out, err := runCLI(t, nil, "keys", "disable", "clinical", "--config", path); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	out, err = runCLI(t, nil, "policy", "check", "--config", path, "--dsn", dsn)
	if err == nil || !strings.Contains(out, `key "clinical" is disabled`) {
		t.Fatalf("check with a disabled key: %v\n%s", err, out)
	}
}

func TestPolicyCheckNamesLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, []byte("server:\n  listen: x\n  max_mesage_bytes: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, nil, "policy", "check", "--config", path, "--offline")
	if err == nil || !strings.Contains(err.Error(), `line 3: unknown field "max_mesage_bytes" in server`) {
		t.Fatalf("misspelt field: %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, nil, "version")
	if err != nil || !strings.HasPrefix(out, "pgcloak ") || !strings.Contains(out, "go: go1.") {
		t.Fatalf("version: %v\n%s", err, out)
	}
}

// TestDemo runs the demo as a user would, checks what the two roles see
// and what PostgreSQL stores, then stops it and checks nothing is left.
func TestDemo(t *testing.T) {
	if _, err := testenv.FindBinDir(context.Background()); err != nil {
		testenv.Unavailable(t, "PostgreSQL server binaries: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, demoOptions{listen: "127.0.0.1:0", log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &out, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("demo ended: %v\n%s", err, out.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("demo did not become ready")
	}
	qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
	defer qcancel()
	var pe *pgconn.PgError
	see := func(role string) (ssn string, diag *string) {
		conn, err := pgx.Connect(qctx, fmt.Sprintf("postgres://%s@%s/demo?sslmode=disable", role, addr))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		defer conn.Close(qctx)
		if err := conn.QueryRow(qctx, "SELECT ssn, diagnosis FROM patients WHERE name = 'Alice Martin'").Scan(&ssn, &diag); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		return ssn, diag
	}
	if ssn, diag := see("doctor"); ssn != "123-45-6789" || diag == nil || *diag != "type 2 diabetes" {
		t.Fatalf("doctor sees %q %v", ssn, diag)
	}
	if ssn, diag := see("billing"); ssn != "123-45-6789" || diag != nil {
		t.Fatalf("billing sees %q %v", ssn, diag)
	}
	text := out.String()
	if !strings.Contains(text, "psql \"postgres://doctor@"+addr) || !strings.Contains(text, "Ctrl-C") {
		t.Fatalf("demo help lacks the psql commands:\n%s", text)
	}
	if !strings.Contains(text, "The audit trail is off") || !strings.Contains(text, "PGCLOAK_AUDIT_OUTPUT=stdout pgcloak demo") {
		t.Fatalf("demo help does not show how to see the audit trail:\n%s", text)
	}
	// The range query the help prints runs on the ordered column: doctor
	// gets the rows in order, billing (no dob key) is refused.
	rangeQuery := text[strings.Index(text, "SELECT name, born FROM"):]
	rangeQuery = rangeQuery[:strings.IndexByte(rangeQuery, '"')]
	for _, role := range []string{"doctor", "billing"} {
		conn, err := pgx.Connect(qctx, fmt.Sprintf("postgres://%s@%s/demo?sslmode=disable", role, addr))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		rows, err := conn.Query(qctx, rangeQuery)
		var got []string
		if err == nil {
			for rows.Next() {
				var name string
				var born time.Time
				if err := rows.Scan(&name, &born); err != nil {
					t.Fatalf("%s: %v", role, err)
				}
				got = append(got, name+" "+born.Format("2006-01-02"))
			}
			err = rows.Err()
		}
		conn.Close(qctx)
		switch role {
		case "doctor":
			if err != nil || strings.Join(got, ", ") != "Chen Wei 1994-02-03, Bob Okafor 1987-11-30" {
				t.Fatalf("doctor's range query %q: %v %q", rangeQuery, err, got)
			}
		default:
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Fatalf("billing's range query: %v %q, want 42501", err, got)
			}
		}
	}
	// The guards are installed: the plaintext insert the help shows is
	// refused by PostgreSQL itself.
	directDSN := text[strings.Index(text, "postgres://postgres@"):]
	directDSN = directDSN[:strings.IndexByte(directDSN, '"')]
	dconn, err := pgx.Connect(qctx, directDSN)
	if err != nil {
		t.Fatalf("direct connection to the demo's PostgreSQL: %v", err)
	}
	_, err = dconn.Exec(qctx, "INSERT INTO patients (name, ssn) VALUES ('Eve', 'plain')")
	dconn.Close(qctx)
	if !errors.As(err, &pe) || pe.Code != "23514" {
		t.Fatalf("plaintext straight into the demo's patients.ssn: %v, want 23514", err)
	}
	dir := text[strings.Index(text, "config ")+len("config "):]
	dir = filepath.Dir(filepath.Dir(strings.TrimSpace(dir[:strings.IndexByte(dir, '\n')])))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stop: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("demo did not stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind (stat: %v)", dir, err)
	}
}

// TestServe runs `pgcloak serve` as the CLI does and uses it: a write is
// encrypted at rest, read back in plaintext, and a statement that cannot
// be parsed is refused when it names an encrypted table but passes through
// (for PostgreSQL's own syntax error) when it does not.
func TestServe(t *testing.T) {
	pg, path := patientsWithKeys(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("PGCLOAK_SERVER_LISTEN", addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		cmd := newRootCommand()
		cmd.SetArgs([]string{"serve", "--config", path, "--log-level", "error"})
		done <- cmd.ExecuteContext(ctx)
	}()
	dsn := fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, pg.Database)
	var conn *pgx.Conn
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = pgx.Connect(ctx, dsn); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never accepted a connection: %v", err)
		}
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "Ann", "SERVE-SSN-1", "SERVE-DIAG-1"); err != nil {
		t.Fatal(err)
	}
	var ssn, diag string
	if err := conn.QueryRow(ctx, "SELECT ssn, diagnosis FROM patients WHERE ssn = $1", "SERVE-SSN-1").Scan(&ssn, &diag); err != nil || ssn != "SERVE-SSN-1" || diag != "SERVE-DIAG-1" {
		t.Fatalf("read back %q %q %v", ssn, diag, err)
	}
	var raw []byte
	if err := pg.Connect(t).QueryRow(ctx, "SELECT ssn FROM patients").Scan(&raw); err != nil || bytes.Contains(raw, []byte("SERVE-SSN")) {
		t.Fatalf("at rest: %q %v", raw, err)
	}
	_, err = conn.Exec(ctx, "INSERT INTO patients (ssn VALUES ('SERVE-SSN-2'")
	if pgErrCode(err) != "42601" || !strings.Contains(err.Error(), "pgcloak: ") {
		t.Fatalf("unparsable statement naming an encrypted table: %v", err)
	}
	_, err = conn.Exec(ctx, "SELEC 1")
	if pgErrCode(err) != "42601" || strings.Contains(err.Error(), "pgcloak: ") {
		t.Fatalf("unparsable plain statement should reach PostgreSQL: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(new(int)); err != nil {
		t.Fatalf("session after refusals: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
}

func pgErrCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestBadLogLevel(t *testing.T) {
	path := writeConfig(t, "127.0.0.1:5432")
	_, err := runCLI(t, nil, "serve", "--config", path, "--log-level", "loud")
	if err == nil || !strings.Contains(err.Error(), `--log-level "loud"`) {
		t.Fatalf("serve with a bad log level: %v", err)
	}
}

func TestMetricsListenTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := writeConfig(t, "127.0.0.1:5432")
	t.Setenv("PGCLOAK_SERVER_LISTEN", "127.0.0.1:0")
	t.Setenv("PGCLOAK_SERVER_METRICS_LISTEN", ln.Addr().String())
	_, err = runCLI(t, nil, "serve", "--config", path)
	if err == nil || !strings.Contains(err.Error(), "server.metrics_listen") {
		t.Fatalf("serve with the metrics address taken: %v", err)
	}
}
