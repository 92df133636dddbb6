package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/testenv"
)

const vaultCLIConfig = `upstream:
  address: %s
keystore:
  provider: vault
  vault:
    address: %s
    ca_file: %s
    auth: token
    token_env: PGCLOAK_TEST_VAULT_TOKEN
    kv_mount: %s
    transit_mount: %s
    kek: %s
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
`

// TestVaultCLI drives the key lifecycle commands against a real Vault.
func TestVaultCLI(t *testing.T) {
	v := testenv.Vault(t)
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id int PRIMARY KEY, ssn bytea, diagnosis bytea)")
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	body := fmt.Sprintf(vaultCLIConfig, pg.Address(), v.Addr, v.CACertFile, v.KVMount, v.TransitMount, v.KEK)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PGCLOAK_TEST_VAULT_TOKEN": v.Token}
	run := func(want string, args ...string) string {
		t.Helper()
		out, err := runCLI(t, env, append(args, "--config", path)...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("pgcloak %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("created ssn", "keys", "create", "--all")
	run("database guards installed", "policy", "apply", "--dsn", pg.DSN())
	run("policy OK", "policy", "check", "--dsn", pg.DSN())
	run("(keystore.cache_ttl, 5m0s); then run pgcloak reencrypt on each column under ssn", "keys", "rotate", "ssn")
	out := run("ssn", "keys", "list")
	if !strings.Contains(out, "ssn       deterministic  enabled  2") {
		t.Fatalf("keys list after rotate:\n%s", out)
	}
	if _, err := v.Client(t).Logical().Write(v.TransitMount+"/keys/"+v.KEK+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	run("rewrapped 2 keyset(s)", "kek", "rewrap")
	run("clinical: done (disable)", "keys", "disable", "clinical")
	out, err := runCLI(t, env, "policy", "check", "--dsn", pg.DSN(), "--config", path)
	if err == nil || !strings.Contains(out, `key "clinical" is disabled`) {
		t.Fatalf("policy check with a disabled key: %v\n%s", err, out)
	}
	run("clinical: destroyed", "keys", "destroy", "clinical", "--yes")
	out = run("clinical", "keys", "list")
	if !strings.Contains(out, "clinical  randomized     destroyed") {
		t.Fatalf("keys list after destroy:\n%s", out)
	}
}

// TestVaultCLIKeysRetire retires a rotated key kept in a real Vault: it is
// refused, retiring nothing, while a column under the key holds a value
// that is not a ciphertext, and keys list shows the one version left
// enabled afterwards.
func TestVaultCLIKeysRetire(t *testing.T) {
	v := testenv.Vault(t)
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, `CREATE TABLE public.patients (id int PRIMARY KEY, ssn bytea, diagnosis bytea);
		INSERT INTO public.patients VALUES (1, NULL, NULL), (2, 'plain'::bytea, NULL)`)
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	// A short key cache and Vault timeout: retire waits both out after a
	// rotation.
	body := strings.Replace(fmt.Sprintf(vaultCLIConfig, pg.Address(), v.Addr, v.CACertFile, v.KVMount, v.TransitMount, v.KEK),
		"policy:\n", "  cache_ttl: 1s\npolicy:\n", 1)
	body = strings.Replace(body, "    kek: ", "    timeout: 1s\n    kek: ", 1)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PGCLOAK_TEST_VAULT_TOKEN": v.Token}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, env, append(args, "--config", path)...)
	}
	for _, args := range [][]string{{"keys", "create", "--all"}, {"keys", "rotate", "ssn"}, {"keys", "rotate", "ssn"}} {
		if out, err := cli(args...); err != nil {
			t.Fatalf("pgcloak %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := cli("keys", "retire", "ssn", "--dsn", pg.DSN())
	if err == nil || !strings.Contains(err.Error(), "public.patients.ssn holds 1 value(s) that are not ciphertexts") {
		t.Fatalf("keys retire with a plaintext row: %v\n%s", err, out)
	}
	if out, _ := cli("keys", "list"); !strings.Contains(out, "ssn       deterministic  enabled  3         3") {
		t.Fatalf("keys list after the refused retire:\n%s", out)
	}
	pg.ExecAdmin(t, "DELETE FROM public.patients WHERE id = 2")
	out, err = cli("keys", "retire", "ssn", "--dsn", pg.DSN())
	if err != nil || !strings.Contains(out, "ssn: retired 2 version(s)") {
		t.Fatalf("keys retire: %v\n%s", err, out)
	}
	if out, _ := cli("keys", "list"); !strings.Contains(out, "ssn       deterministic  enabled  3         1") {
		t.Fatalf("keys list after retire:\n%s", out)
	}
	out, err = cli("keys", "retire", "ssn", "--dsn", pg.DSN())
	if err != nil || !strings.Contains(out, "ssn: nothing to retire") {
		t.Fatalf("keys retire again: %v\n%s", err, out)
	}
}
