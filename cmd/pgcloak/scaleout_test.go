package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

// scaleOutConfig runs pgcloak as a replica would: keys and grants in
// Vault, logged in with AppRole.
const scaleOutConfig = `upstream:
  address: %s
keystore:
  provider: vault
  cache_ttl: 300ms
  vault:
    address: %s
    ca_file: %s
    auth: approle
    approle: {role_id: %s, secret_id_env: PGCLOAK_TEST_SECRET_ID}
    kv_mount: %s
    transit_mount: %s
    kek: %s
    grants_path: pgcloak/grants
    grants_interval: 300ms
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
`

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// readSSN reads a patient's ssn through conn (nil when withheld).
func readSSN(t *testing.T, conn *pgx.Conn, name string) *string {
	t.Helper()
	var ssn *string
	if err := conn.QueryRow(context.Background(), "SELECT ssn FROM patients WHERE name = $1", name).Scan(&ssn); err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return ssn
}

// TestTwoProcessesAgreeAfterVaultChanges runs two pgcloak processes on the
// same Vault and database, as two replicas: sessions on both at once, a
// grant revoked in Vault, a key rotated by the CLI and a policy reloaded
// take effect on both. Then every metric pgcloak exports has moved.
func TestTwoProcessesAgreeAfterVaultChanges(t *testing.T) {
	v := testenv.Vault(t)
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id serial, name text UNIQUE, ssn bytea, diagnosis bytea)")
	dir := t.TempDir()
	root := filepath.Join(dir, "root.yaml")
	if err := os.WriteFile(root, fmt.Appendf(nil, vaultCLIConfig, pg.Address(), v.Addr, v.CACertFile, v.KVMount, v.TransitMount, v.KEK), 0o600); err != nil {
		t.Fatal(err)
	}
	rootEnv := map[string]string{"PGCLOAK_TEST_VAULT_TOKEN": v.Token}
	if out, err := runCLI(t, rootEnv, "keys", "create", "--all", "--config", root); err != nil {
		t.Fatalf("keys create: %v\n%s", err, out)
	}
	cfg, err := loadConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGCLOAK_TEST_VAULT_TOKEN", v.Token)
	store, err := keymap.OpenVaultStore(context.Background(), cfg.Keystore.Vault, os.Getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	grants := []policy.Role{{Role: "postgres", Read: []string{"ssn", "clinical"}, Write: []string{"ssn", "clinical"}}}
	ctx := context.Background()
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	pol := `path "` + v.KVMount + `/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "` + v.TransitMount + `/encrypt/` + v.KEK + `" { capabilities = ["update"] }
path "` + v.TransitMount + `/decrypt/` + v.KEK + `" { capabilities = ["update"] }`
	// A short token TTL: the processes renew their logins meanwhile.
	roleID, secretID := v.AppRole(t, "pgcloak-"+v.KVMount, pol, 3*time.Second)

	up := newRelay(t, pg.Address())
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, scaleOutConfig, pg.Address(), v.Addr, v.CACertFile, roleID, v.KVMount, v.TransitMount, v.KEK), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PGCLOAK_TEST_SECRET_ID=" + secretID}
	// Process a's audit trail goes to a stdout no one reads, with room
	// for one record: once the pipe is full, records are dropped.
	stalled, stalledW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	a := startProcessTo(t, stalledW, path, append(env, "PGCLOAK_UPSTREAM_ADDRESS="+up.addr,
		"PGCLOAK_AUDIT_OUTPUT=stdout", "PGCLOAK_AUDIT_ON_FULL=drop", "PGCLOAK_AUDIT_BUFFER=1"))
	stalledW.Close()
	// Process b's trail goes to a full disk: every write fails.
	b := startProcess(t, path, append(env, "PGCLOAK_AUDIT_OUTPUT=/dev/full"))
	// Process c serves no session: it holds no key.
	c := startProcess(t, path, env)
	ca, cb := a.connect(ctx, "postgres", pg.Database), b.connect(ctx, "postgres", pg.Database)
	if got := a.metric("pgcloak_sessions_active"); got != 1 {
		t.Fatalf("sessions_active = %v with one session open", got)
	}

	// Sessions on both at once: each reads what the other wrote.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, p := range []*process{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.addr, pg.Database))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for j := range 200 {
				if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)",
					fmt.Sprintf("p%d-%d", i, j), fmt.Sprintf("SCALE-SSN-%d-%d", i, j), "SCALE-DIAG"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conn *pgx.Conn
		name string
		want string
	}{{ca, "p1-7", "SCALE-SSN-1-7"}, {cb, "p0-7", "SCALE-SSN-0-7"}} {
		if got := readSSN(t, c.conn, c.name); got == nil || *got != c.want {
			t.Fatalf("%s read through the other process: %v", c.name, got)
		}
	}

	// A grant revoked in Vault: both withhold ssn.
	grants[0].Read = []string{"clinical"}
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*pgx.Conn{ca, cb} {
		eventually(t, "the revocation in Vault applies", func() bool { return readSSN(t, conn, "p0-1") == nil })
	}
	grants[0].Read = []string{"ssn", "clinical"}
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*pgx.Conn{ca, cb} {
		eventually(t, "the grant restored in Vault applies", func() bool { return readSSN(t, conn, "p0-1") != nil })
	}

	// A key rotated by the CLI: both encrypt under the new version, and
	// each reads the other's values and the old ones.
	if out, err := runCLI(t, rootEnv, "keys", "rotate", "clinical", "--config", root); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}
	direct := pg.Connect(t)
	keyOf := func(name string) uint32 {
		var raw []byte
		if err := direct.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = $1", name).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		id, ok := keymap.KeyID(raw)
		if !ok {
			t.Fatalf("%s: not a ciphertext: %x", name, raw)
		}
		return id
	}
	old := keyOf("p0-0")
	for i, conn := range []*pgx.Conn{ca, cb} {
		eventually(t, "the rotated key is used", func() bool {
			name := fmt.Sprintf("rot-%d-%d", i, time.Now().UnixNano())
			if _, err := conn.Exec(ctx, "INSERT INTO patients (name, diagnosis) VALUES ($1, 'ROTATED')", name); err != nil {
				t.Fatal(err)
			}
			return keyOf(name) != old
		})
	}
	var diags int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM patients WHERE diagnosis IS NOT NULL").Scan(&diags); err != nil {
		t.Fatal(err)
	}
	rows, err := ca.Query(ctx, "SELECT diagnosis FROM patients")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		seen++
	}
	if err := rows.Err(); err != nil || seen != diags {
		t.Fatalf("reading old and new versions through a: %d of %d, %v", seen, diags, err)
	}

	// A policy change reloaded into both: diagnosis leaves the policy's
	// grants by a role rule in the file (grants in Vault stay), then
	// ssn's column is dropped from the policy.
	data := strings.Replace(string(mustRead(t, path)), "    - {table: public.patients, column: ssn, key: ssn, type: text}\n", "", 1)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*process{a, b} {
		p.signal(syscall.SIGHUP)
		p.waitLog("policy reloaded", 1)
	}
	for _, conn := range []*pgx.Conn{ca, cb} {
		var raw []byte
		// No longer a policy column: its bytea passes as it is stored.
		if err := conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE name = 'p0-1'").Scan(&raw); err != nil || !keymap.IsCiphertext(raw) {
			t.Fatalf("ssn after it left the policy: %x %v", raw, err)
		}
	}

	// Faults the metrics must show: PostgreSQL unreachable for a, Vault
	// down while a key must be fetched again, a value that does not
	// decrypt.
	up.stop()
	a.waitReady(503)
	up.start()
	a.waitReady(200)
	ca = a.connect(ctx, "postgres", pg.Database) // the relay's stop ended the old one
	v.Stop(t)
	time.Sleep(400 * time.Millisecond) // past cache_ttl
	if _, err := ca.Exec(ctx, "SELECT diagnosis FROM patients WHERE name = 'p0-1'"); err != nil {
		t.Logf("read with Vault down: %v", err)
	}
	if got := a.metric("pgcloak_keystore_up"); got != 0 {
		t.Errorf("keystore_up = %v with Vault down, want 0", got)
	}
	// Ready while Vault is down if every key of the policy is in memory.
	if rep := a.waitReady(200); rep["keystore"] != "ok" {
		t.Errorf("/readyz of a process holding its keys, Vault down: %v", rep)
	}
	if rep := c.waitReady(503); !strings.Contains(fmt.Sprint(rep["keystore"]), "keys not cached") {
		t.Errorf("/readyz of a process holding no key, Vault down: %v", rep)
	}
	v.Start(t)
	time.Sleep(4 * time.Second) // a token renewal at least
	eventually(t, "keys are fetched again after Vault's return", func() bool {
		time.Sleep(400 * time.Millisecond) // past cache_ttl
		var d string
		return ca.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'p0-1'").Scan(&d) == nil && a.metric("pgcloak_keystore_up") == 1
	})
	if _, err := direct.Exec(ctx, "INSERT INTO patients (name, diagnosis) VALUES ('broken', $1)", append(keymap.CiphertextPrefix(), 1, 2, 3, 4, 5, 6, 7, 8, 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Exec(ctx, "SELECT diagnosis FROM patients WHERE name = 'broken'"); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("a value that does not decrypt: %v", err)
	}
	if _, err := ca.Exec(ctx, "SELECT name FROM patients WHERE diagnosis LIKE 'x%'"); pgErrCode(err) != "0A000" {
		t.Fatalf("LIKE: %v", err)
	}
	ca.Close(ctx)
	if got := b.metric("pgcloak_audit_write_errors_total"); got <= 0 {
		t.Errorf("audit_write_errors_total = %v with the trail on a full disk", got)
	}

	exposition := func() string { _, body := a.get("/metrics"); return body }()
	unmoved := []string{}
	for _, name := range metrics.Names() {
		probe := name
		if strings.HasSuffix(name, "_seconds") {
			probe = name + "_count"
		}
		switch name {
		case "pgcloak_login_failures_total":
			// Only with server.auth.method scram; its own tests cover it.
			continue
		case "pgcloak_sessions_active", "pgcloak_keystore_up", "pgcloak_audit_write_errors_total":
			continue // gauges and b's: checked above
		}
		if sampleSum(exposition, probe) <= 0 {
			unmoved = append(unmoved, name)
		}
	}
	if len(unmoved) > 0 {
		t.Errorf("metrics that did not move under the workload: %v\n%s", unmoved, grepMetrics(exposition))
	}
	for _, want := range [][]string{
		{"pgcloak_sessions_ended_total", `outcome="closed"`},
		{"pgcloak_statements_total", `outcome="rewritten"`},
		{"pgcloak_statements_total", `outcome="refused"`},
		{"pgcloak_statements_refused_total", `sqlstate="0A000"`},
		{"pgcloak_values_total", `operation="encrypted"`, `key="clinical"`},
		{"pgcloak_values_total", `operation="decrypted"`, `key="ssn"`},
		{"pgcloak_values_total", `operation="denied"`, `key="ssn"`},
		{"pgcloak_proxy_latency_seconds_count", `direction="to_server"`},
		{"pgcloak_proxy_latency_seconds_count", `direction="to_client"`},
		{"pgcloak_bytes_total", `direction="from_client"`},
		{"pgcloak_bytes_total", `direction="to_client"`},
		{"pgcloak_bytes_total", `direction="to_server"`},
		{"pgcloak_bytes_total", `direction="from_server"`},
		{"pgcloak_keystore_calls_total", `outcome="ok"`},
		{"pgcloak_keystore_calls_total", `outcome="error"`},
		{"pgcloak_key_cache_hits_total", `key="clinical"`},
		{"pgcloak_vault_token_renewals_total", `outcome="ok"`},
		{"pgcloak_grants_reloads_total", `outcome="ok"`},
		{"pgcloak_policy_reloads_total", `outcome="ok"`},
		{"pgcloak_catalog_reloads_total", `outcome="ok"`},
	} {
		if sampleSum(exposition, want[0], want[1:]...) <= 0 {
			t.Errorf("%s%v did not move", want[0], want[1:])
		}
	}
}

// grepMetrics is the pgcloak lines of an exposition, for a failure message.
func grepMetrics(exposition string) string {
	var b strings.Builder
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "pgcloak_") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
