package testenv

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgcloak/pgcloak/internal/procgroup"
)

func vaultCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestVaultGivesWorkingClient(t *testing.T) {
	start := time.Now()
	v := Vault(t)
	t.Logf("source %s at %s, Vault(t) took %s", v.Source, v.Addr, time.Since(start))
	if v.KEK != VaultKEK || v.Token == "" || v.KVMount == "" || v.TransitMount == "" {
		t.Fatalf("incomplete VaultEnv: %+v", v)
	}
	if v.Source == SourceLocal {
		if !strings.HasPrefix(v.Addr, "https://127.0.0.1:") || v.CACertFile == "" {
			t.Fatalf("local server: Addr %q, CACertFile %q; want https on 127.0.0.1 with a CA", v.Addr, v.CACertFile)
		}
	}
	c := v.Client(t)
	self, err := c.Auth().Token().LookupSelfWithContext(vaultCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	policies, err := self.TokenPolicies()
	if err != nil {
		t.Fatal(err)
	}
	if v.Source != SourceEnv && !slices.Contains(policies, "root") {
		t.Fatalf("token policies %v, want root", policies)
	}
	mounts, err := c.Sys().ListMountsWithContext(vaultCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, transit := mounts[v.KVMount+"/"], mounts[v.TransitMount+"/"]
	if kv == nil || kv.Type != "kv" || kv.Options["version"] != "2" {
		t.Fatalf("KV mount %s: %+v, want kv version 2", v.KVMount, kv)
	}
	if transit == nil || transit.Type != "transit" {
		t.Fatalf("transit mount %s: %+v", v.TransitMount, transit)
	}
}

func TestVaultKVReadWrite(t *testing.T) {
	v := Vault(t)
	kv := v.Client(t).KVv2(v.KVMount)
	ctx := vaultCtx(t)
	if _, err := kv.Put(ctx, "pgcloak/keys/ssn", map[string]any{"keyset": "c2VjcmV0"}); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(ctx, "pgcloak/keys/ssn")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["keyset"] != "c2VjcmV0" || got.VersionMetadata.Version != 1 {
		t.Fatalf("read back %v (version %d)", got.Data, got.VersionMetadata.Version)
	}
}

func TestVaultTransitKEK(t *testing.T) {
	v := Vault(t)
	c := v.Client(t)
	ctx := vaultCtx(t)
	key, err := c.Logical().ReadWithContext(ctx, v.TransitMount+"/keys/"+v.KEK)
	if err != nil {
		t.Fatal(err)
	}
	if key == nil || key.Data["type"] != "aes256-gcm96" {
		t.Fatalf("transit key %s: %v, want type aes256-gcm96", v.KEK, key)
	}
	ct := transitEncrypt(t, c, v, "a keyset")
	if got := transitDecrypt(t, c, v, ct); got != "a keyset" {
		t.Fatalf("decrypt gave %q", got)
	}
}

func transitEncrypt(t *testing.T, c *api.Client, v *VaultEnv, plaintext string) string {
	t.Helper()
	sec, err := c.Logical().WriteWithContext(vaultCtx(t), v.TransitMount+"/encrypt/"+v.KEK,
		map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(plaintext))})
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v1:") {
		t.Fatalf("ciphertext %q", ct)
	}
	return ct
}

func transitDecrypt(t *testing.T, c *api.Client, v *VaultEnv, ciphertext string) string {
	t.Helper()
	sec, err := c.Logical().WriteWithContext(vaultCtx(t), v.TransitMount+"/decrypt/"+v.KEK,
		map[string]any{"ciphertext": ciphertext})
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := sec.Data["plaintext"].(string)
	b, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVaultMountsAreFreshAndRemoved(t *testing.T) {
	var first *VaultEnv
	t.Run("first", func(t *testing.T) {
		first = Vault(t)
		if _, err := first.Client(t).KVv2(first.KVMount).Put(vaultCtx(t), "x", map[string]any{"v": "1"}); err != nil {
			t.Fatal(err)
		}
	})
	if first == nil {
		t.Fatal("no Vault in the subtest")
	}
	v := Vault(t)
	if v.KVMount == first.KVMount || v.TransitMount == first.TransitMount {
		t.Fatalf("both calls got %s and %s", v.KVMount, v.TransitMount)
	}
	c := v.Client(t)
	mounts, err := c.Sys().ListMountsWithContext(vaultCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{first.KVMount, first.TransitMount} {
		if _, ok := mounts[m+"/"]; ok {
			t.Errorf("mount %s outlived its test", m)
		}
	}
	if _, err := c.KVv2(v.KVMount).Get(vaultCtx(t), "x"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("fresh mount: get x: %v, want not found", err)
	}
}

func TestVaultStopStart(t *testing.T) {
	v := Vault(t)
	if v.Source != SourceLocal {
		// Stop must skip (or fail under PGCLOAK_TEST_REQUIRE=1) for other sources.
		v.Stop(t)
		t.Fatal("Stop returned for a non-local source")
	}
	c := v.Client(t)
	ctx := vaultCtx(t)
	if _, err := c.KVv2(v.KVMount).Put(ctx, "kept", map[string]any{"v": "before"}); err != nil {
		t.Fatal(err)
	}
	ct := transitEncrypt(t, c, v, "survives")
	v.srv.local.mu.Lock()
	pid := v.srv.local.cmd.Process.Pid
	v.srv.local.mu.Unlock()

	v.Stop(t)
	if procgroup.ProcessExists(pid) {
		t.Fatalf("vault (pid %d) still runs after Stop", pid)
	}
	down, err := api.NewClient(c.CloneConfig())
	if err != nil {
		t.Fatal(err)
	}
	down.SetToken(v.Token)
	down.SetMaxRetries(0)
	if _, err := down.KVv2(v.KVMount).Get(ctx, "kept"); err == nil {
		t.Fatal("KV read succeeded while Vault was stopped")
	}

	v.Start(t)
	got, err := c.KVv2(v.KVMount).Get(ctx, "kept")
	if err != nil {
		t.Fatalf("after Start: %v", err)
	}
	if got.Data["v"] != "before" {
		t.Fatalf("after Start read %v", got.Data)
	}
	if pt := transitDecrypt(t, c, v, ct); pt != "survives" {
		t.Fatalf("after Start decrypt gave %q", pt)
	}
	v.Start(t) // a no-op while running
}

func TestVaultStopLeftStoppedIsRestarted(t *testing.T) {
	var stopped *VaultEnv
	t.Run("stops", func(t *testing.T) {
		stopped = Vault(t)
		if stopped.Source != SourceLocal {
			t.Skip("needs a local server")
		}
		stopped.Stop(t)
	})
	if stopped == nil || stopped.Source != SourceLocal {
		t.Skip("needs a local server")
	}
	if stopped.srv.local.stopped() {
		t.Fatal("the server stayed stopped after the test that stopped it")
	}
	v := Vault(t)
	if _, err := v.Client(t).KVv2(v.KVMount).Put(vaultCtx(t), "x", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
}

func TestVaultAppRole(t *testing.T) {
	v := Vault(t)
	policy := `path "` + v.KVMount + `/data/app/*" { capabilities = ["read"] }`
	roleID, secretID := v.AppRole(t, "pgcloak-test", policy, 10*time.Minute)
	if roleID == "" || secretID == "" {
		t.Fatalf("role_id %q, secret_id %q", roleID, secretID)
	}
	// A second role on the same server: approle is enabled only once.
	if r2, _ := v.AppRole(t, "pgcloak-test-2", policy, 0); r2 == roleID {
		t.Fatal("two roles share a role_id")
	}
	root := v.Client(t)
	ctx := vaultCtx(t)
	if _, err := root.KVv2(v.KVMount).Put(ctx, "app/key", map[string]any{"v": "visible"}); err != nil {
		t.Fatal(err)
	}

	c := v.Client(t)
	c.ClearToken()
	login, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	if login == nil || login.Auth == nil || login.Auth.ClientToken == "" {
		t.Fatalf("login gave no token: %+v", login)
	}
	if !slices.Contains(login.Auth.TokenPolicies, "pgcloak-test") {
		t.Fatalf("token policies %v, want pgcloak-test", login.Auth.TokenPolicies)
	}
	if d := time.Duration(login.Auth.LeaseDuration) * time.Second; d <= 0 || d > 10*time.Minute {
		t.Fatalf("token TTL %s, want at most the role's 10m", d)
	}
	c.SetToken(login.Auth.ClientToken)
	c.SetMaxRetries(0)
	got, err := c.KVv2(v.KVMount).Get(ctx, "app/key")
	if err != nil || got.Data["v"] != "visible" {
		t.Fatalf("approle token reading what its policy allows: %v, %v", got, err)
	}
	_, err = c.KVv2(v.KVMount).Put(ctx, "app/key", map[string]any{"v": "overwritten"})
	var respErr *api.ResponseError
	if !errors.As(err, &respErr) || respErr.StatusCode != 403 {
		t.Fatalf("approle token writing what its policy does not allow: %v, want 403", err)
	}
}

func TestVaultSourcesSelection(t *testing.T) {
	srcs := vaultSources(vaultSourceConfig{addr: "http://h:8200", token: "t", only: VaultSourceBuild}, t.Logf)
	for _, s := range srcs {
		if (s.notConfigured == "") != (s.name == VaultSourceBuild) {
			t.Errorf("source %s: notConfigured = %q", s.name, s.notConfigured)
		}
	}
	srcs = vaultSources(vaultSourceConfig{addr: "http://h:8200"}, t.Logf)
	if srcs[0].name != SourceEnv || srcs[0].notConfigured == "" {
		t.Errorf("VAULT_ADDR without VAULT_TOKEN: env source %+v, want not configured", srcs[0])
	}
	_, reasons := acquireVault(context.Background(), vaultSourceConfig{only: "bogus"}, t.Logf)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "bogus") {
		t.Fatalf("reasons = %q, want the invalid %s named", reasons, EnvVaultSource)
	}
}

func TestVaultEnvSourceIsFinal(t *testing.T) {
	cfg := vaultSourceConfig{addr: "http://127.0.0.1:1", token: "t"}
	t.Setenv("VAULT_MAX_RETRIES", "0")
	srv, reasons := acquireVault(context.Background(), cfg, t.Logf)
	if srv != nil {
		t.Fatal("got a server from an unreachable VAULT_ADDR")
	}
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "env: ") {
		t.Fatalf("reasons = %q, want the env failure alone (a set VAULT_ADDR is final)", reasons)
	}
}

func TestVaultStopUnavailableForOtherSources(t *testing.T) {
	t.Setenv(EnvRequire, "1")
	v := &VaultEnv{Source: SourceDocker, srv: &vaultServer{source: SourceDocker}}
	rec := &recordingTB{TB: t}
	v.Stop(rec)
	if !strings.Contains(rec.failed, "needs a local server") {
		t.Fatalf("failed %q, want a required-run failure", rec.failed)
	}
}

func TestWriteVaultSrc(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := writeVaultSrc(src); err != nil {
		t.Fatal(err)
	}
	gomod, _ := os.ReadFile(filepath.Join(src, "go.mod"))
	if !strings.Contains(string(gomod), "require github.com/hashicorp/vault "+vaultBuildVersion+"\n") {
		t.Fatalf("go.mod:\n%s", gomod)
	}
	if main, _ := os.ReadFile(filepath.Join(src, "main.go")); !strings.Contains(string(main), "command.Run(os.Args[1:])") {
		t.Fatalf("main.go:\n%s", main)
	}
	// A resolved go.mod (and its go.sum) for the same version is kept.
	resolved := string(gomod) + "\nrequire example.com/resolved v1.0.0 // indirect\n"
	for name, content := range map[string]string{"go.mod": resolved, "go.sum": "sums\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeVaultSrc(src); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(src, "go.mod")); string(got) != resolved {
		t.Fatalf("resolved go.mod replaced by:\n%s", got)
	}
	// One for another version is not.
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module x\n\nrequire github.com/hashicorp/vault v1.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeVaultSrc(src); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(src, "go.mod")); string(got) != string(gomod) {
		t.Fatalf("stale go.mod kept:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(src, "go.sum")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale go.sum kept: %v", err)
	}
}

func TestLockFileWaitsForHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "build.lock")
	unlock, err := lockFile(context.Background(), path, func() { t.Error("first lock waited") })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := lockFile(ctx, path, func() { waited = true }); err == nil {
		t.Skip("this platform has no lock file")
	}
	if !waited {
		t.Error("second lock did not report waiting")
	}
	unlock()
	unlock2, err := lockFile(context.Background(), path, func() { t.Error("lock waited after release") })
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestCheckVaultBinaryRejectsBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault")
	if err := os.WriteFile(path, []byte("\x7fELF truncated"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkVaultBinary(context.Background(), path); err == nil {
		t.Fatal("a truncated binary passed the check")
	}
}
