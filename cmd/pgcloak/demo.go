package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/internal/pglocal"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// demoPolicy is the demo's config; the keystore path is filled in.
const demoPolicy = `server:
  listen: %s
upstream:
  address: %s
keystore:
  provider: local
  local: {path: %s, master_key_file: %s}
policy:
  keys:
    - {name: ssn,      kind: deterministic}
    - {name: clinical, kind: randomized}
    - {name: dob,      kind: ordered}
  columns:
    - {table: public.patients, column: ssn,       key: ssn,      type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
    - {table: public.patients, column: born,      key: dob,      type: date}
  roles:
    - {role: doctor,  read: [ssn, clinical, dob], write: [ssn, clinical, dob]}
    - {role: billing, read: [ssn], on_denied: "null"}
# The plaintext-access audit trail: off here. "stdout" (or a file path)
# writes one JSON line per statement on an encrypted column, never a value;
# try PGCLOAK_AUDIT_OUTPUT=stdout pgcloak demo.
audit:
  output: ""
`

const demoSchema = `
CREATE ROLE doctor LOGIN;
CREATE ROLE billing LOGIN;
CREATE TABLE public.patients (
  id        serial PRIMARY KEY,
  name      text NOT NULL,
  ssn       bytea,
  diagnosis bytea,
  born      bytea
);
CREATE INDEX patients_born ON public.patients (born);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.patients TO doctor;
GRANT USAGE ON SEQUENCE public.patients_id_seq TO doctor;
GRANT SELECT ON public.patients TO billing;
`

var demoRows = [][]string{
	{"Alice Martin", "123-45-6789", "type 2 diabetes", "1961-04-12"},
	{"Bob Okafor", "987-65-4321", "hypertension", "1987-11-30"},
	{"Chen Wei", "555-12-3456", "asthma", "1994-02-03"},
}

type demoOptions struct {
	listen string
	log    *slog.Logger
}

func newDemoCommand(g *globalFlags) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a throwaway PostgreSQL, keystore and proxy with a sample schema; prints what to try",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log, err := g.logger()
			if err != nil {
				return err
			}
			return runDemo(ctx, demoOptions{listen: listen, log: log}, cmd.OutOrStdout(), nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6432", "address for the demo proxy")
	return cmd
}

// runDemo runs the demo until ctx ends, then removes everything it made.
// ready, if set, receives the proxy's address once the demo is usable.
func runDemo(ctx context.Context, opts demoOptions, out io.Writer, ready chan<- string) error {
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("demo proxy cannot listen on %s (try --listen 127.0.0.1:0): %w", opts.listen, err)
	}
	defer ln.Close()
	fmt.Fprintln(out, "Starting a throwaway PostgreSQL…")
	pg, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer pg.Stop()

	cfgPath, err := writeDemoFiles(pg, ln.Addr().String())
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	if err := setupDemoDatabase(ctx, pg, cfg.Policy); err != nil {
		return err
	}
	store, err := keymap.OpenLocalStore(cfg.Keystore.Local, os.Getenv)
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := keymap.CreateMissing(ctx, store, cfg.Policy.Keys); err != nil {
		return err
	}
	trail, err := audit.Open(cfg.Audit, opts.log)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer trail.Close()
	srv, err := proxy.NewServer(proxy.Config{
		Server:   cfg.Server,
		Upstream: cfg.Upstream,
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keymap.NewKeyring(store, cacheTTL(cfg)),
		Logger:   opts.log,
		Audit:    trail,
	})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer srv.Close()

	proxyAddr := ln.Addr().(*net.TCPAddr)
	if err := insertDemoRows(ctx, proxyAddr); err != nil {
		return fmt.Errorf("inserting sample rows through the proxy: %w", err)
	}
	printDemoHelp(out, proxyAddr, pg, cfgPath, trail.Enabled())
	if ready != nil {
		ready <- proxyAddr.String()
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	fmt.Fprintln(out, "\nStopping: proxy, PostgreSQL, keys — all removed.")
	return nil
}

// writeDemoFiles writes the master key and config into the server's
// directory, which Stop removes.
func writeDemoFiles(pg *pglocal.Server, listen string) (string, error) {
	dir := filepath.Join(pg.Dir, "pgcloak")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	_, ks, err := keymap.NewLocalStoreInDir(dir)
	if err != nil {
		return "", err
	}
	cfgPath := filepath.Join(dir, "pgcloak.yaml")
	upstream := net.JoinHostPort(pg.Host, fmt.Sprint(pg.Port))
	body := fmt.Sprintf(demoPolicy, listen, upstream, ks.Path, ks.MasterKeyFile)
	return cfgPath, os.WriteFile(cfgPath, []byte(body), 0o600)
}

// setupDemoDatabase creates the sample schema and installs the database
// guards on it, as `pgcloak policy apply` would.
func setupDemoDatabase(ctx context.Context, pg *pglocal.Server, pol policy.Policy) error {
	admin, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE demo"); err != nil {
		return err
	}
	db, err := pgx.Connect(ctx, pg.DSN("demo"))
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, demoSchema); err != nil {
		return err
	}
	return applyGuards(ctx, db, pol, io.Discard)
}

func insertDemoRows(ctx context.Context, addr *net.TCPAddr) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://doctor@%s/demo?sslmode=disable", addr))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, r := range demoRows {
		if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis, born) VALUES ($1, $2, $3, $4::date)", r[0], r[1], r[2], r[3]); err != nil {
			return err
		}
	}
	return nil
}

func printDemoHelp(out io.Writer, addr *net.TCPAddr, pg *pglocal.Server, cfgPath string, audited bool) {
	p := fmt.Sprintf("psql \"postgres://%%s@%s/demo?sslmode=disable\"", addr)
	direct := fmt.Sprintf("psql \"postgres://postgres@%s:%d/demo?sslmode=disable\"", pg.Host, pg.Port)
	fmt.Fprintf(out, `
pgcloak demo is running: proxy on %s, PostgreSQL on %s:%d, config %s

patients.ssn is encrypted under a deterministic key, patients.diagnosis under a
randomized one, patients.born (a date) under an ordered one, whose ciphertexts
sort like the dates. The role doctor may read all three; billing only ssn.

As doctor (sees every column):
  %s -c "SELECT * FROM patients"
As billing (no key for diagnosis, so it sees NULL there):
  %s -c "SELECT * FROM patients"
What PostgreSQL itself stores (bypassing pgcloak: only ciphertext):
  %s -c "SELECT * FROM patients"
PostgreSQL itself refuses plaintext there (the guards of pgcloak policy apply):
  %s -c "INSERT INTO patients (name, ssn) VALUES ('Eve', 'plain')"

Things to try as doctor:
  %s -c "INSERT INTO patients (name, ssn, diagnosis) VALUES ('Dana Ruiz', '222-33-4444', 'migraine')"
  %s -c "SELECT name FROM patients WHERE ssn = '123-45-6789'"          # equality: works
  %s -c "SELECT name, born FROM patients WHERE born >= '1980-01-01' ORDER BY born DESC"   # ordered: range and sort
  %s -c "SELECT name FROM patients WHERE diagnosis = 'asthma'"         # randomized: refused (0A000)
  %s -c "SELECT name FROM patients WHERE ssn LIKE '123%%'"              # LIKE: refused (0A000)
  %s -c "\copy patients (name, ssn, diagnosis) TO STDOUT CSV"

%s
Press Ctrl-C to stop; everything the demo made is removed.
`, addr, pg.Host, pg.Port, cfgPath,
		fmt.Sprintf(p, "doctor"), fmt.Sprintf(p, "billing"), direct, direct,
		fmt.Sprintf(p, "doctor"), fmt.Sprintf(p, "doctor"), fmt.Sprintf(p, "doctor"), fmt.Sprintf(p, "doctor"),
		fmt.Sprintf(p, "doctor"), fmt.Sprintf(p, "doctor"), auditHelp(audited))
}

// auditHelp says where the audit trail is, or how to see it.
func auditHelp(audited bool) string {
	if audited {
		return "\nThe audit trail is on: one JSON line per statement on an encrypted column,\nwith who, which columns and how many rows, never a value.\n"
	}
	return "\nThe audit trail is off (audit.output in the config); to see it, run the demo\nas PGCLOAK_AUDIT_OUTPUT=stdout pgcloak demo.\n"
}
