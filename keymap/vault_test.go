package keymap

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"google.golang.org/protobuf/proto"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// vaultConfig is the keystore config for v's per-test mounts, token auth.
func vaultConfig(v *testenv.VaultEnv, tokenEnv string) policy.VaultKeystore {
	cfg := policy.Defaults().Keystore.Vault
	cfg.Address, cfg.CAFile = v.Addr, v.CACertFile
	cfg.KVMount, cfg.TransitMount, cfg.KEK = v.KVMount, v.TransitMount, v.KEK
	cfg.TokenEnv = tokenEnv
	cfg.Timeout = "3s"
	return cfg
}

func openVault(t *testing.T, v *testenv.VaultEnv) *VaultStore {
	t.Helper()
	env := map[string]string{"TEST_VAULT_TOKEN": v.Token}
	s, err := OpenVaultStore(context.Background(), vaultConfig(v, "TEST_VAULT_TOKEN"), func(k string) string { return env[k] }, slog.Default())
	if err != nil {
		t.Fatalf("OpenVaultStore: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// storedKeyset returns the EncryptedKeyset a key's KV document holds.
func vaultStoredKeyset(t *testing.T, v *testenv.VaultEnv, name string) (*tinkpb.EncryptedKeyset, *vault.KVSecret) {
	t.Helper()
	sec, err := v.Client(t).KVv2(v.KVMount).Get(context.Background(), "pgcloak/keys/"+name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := docFrom(sec)
	if err != nil {
		t.Fatal(err)
	}
	var ek tinkpb.EncryptedKeyset
	if err := proto.Unmarshal(d.Keyset, &ek); err != nil {
		t.Fatal(err)
	}
	return &ek, sec
}

func TestVaultStoreLifecycle(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	ctx := context.Background()
	ssn := &policy.ColumnRule{Schema: "public", Table: "p", Column: "ssn", KeyName: "ssn", Kind: policy.Deterministic, Type: policy.TypeText}
	diag := &policy.ColumnRule{Schema: "public", Table: "p", Column: "d", KeyName: "clinical", Kind: policy.Randomized, Type: policy.TypeText}
	if err := s.Create(ctx, "ssn", policy.Deterministic); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "clinical", policy.Randomized); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "ssn", policy.Deterministic); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	// The KV document holds only transit ciphertext.
	ek, _ := vaultStoredKeyset(t, v, "ssn")
	if !strings.HasPrefix(string(ek.GetEncryptedKeyset()), "vault:v1:") {
		t.Fatalf("stored keyset is not transit ciphertext: %.20q", ek.GetEncryptedKeyset())
	}
	infos, err := s.List(ctx)
	if err != nil || len(infos) != 2 || infos[0].Name != "clinical" || infos[1].Kind != policy.Deterministic || infos[1].Versions != 1 {
		t.Fatalf("List = %+v, %v", infos, err)
	}

	cipher := func(r *policy.ColumnRule) *ColumnCipher {
		h, err := s.Load(ctx, r.KeyName)
		if err != nil {
			t.Fatalf("Load %s: %v", r.KeyName, err)
		}
		c, err := NewColumnCipher(h, r)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := cipher(ssn)
	old, err := c1.Encrypt([]byte("123-45-6789"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx, "ssn"); err != nil {
		t.Fatal(err)
	}
	c2 := cipher(ssn)
	fresh, _ := c2.Encrypt([]byte("123-45-6789"))
	oldID, _ := KeyID(old)
	newID, _ := KeyID(fresh)
	if oldID == newID {
		t.Fatal("rotation did not change the primary key id")
	}
	if pt, err := c2.Decrypt(old); err != nil || string(pt) != "123-45-6789" {
		t.Fatalf("old value after rotation: %q %v", pt, err)
	}
	if infos, _ := s.List(ctx); infos[1].Versions != 2 || infos[1].PrimaryID != newID {
		t.Fatalf("after rotate: %+v", infos[1])
	}

	if err := s.SetEnabled(ctx, "clinical", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "clinical"); !errors.Is(err, ErrKeyDisabled) {
		t.Fatalf("disabled key: %v", err)
	}
	if err := s.SetEnabled(ctx, "clinical", true); err != nil {
		t.Fatal(err)
	}
	cd := cipher(diag)
	ct, _ := cd.Encrypt([]byte("flu"))

	// Crypto-shredding: the keyset is gone from every KV version.
	if err := s.Destroy(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "clinical"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key: %v", err)
	}
	kv := v.Client(t).KVv2(v.KVMount)
	versions, err := kv.GetVersionsAsList(ctx, "pgcloak/keys/clinical")
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range versions {
		sec, err := kv.GetVersion(ctx, "pgcloak/keys/clinical", ver.Version)
		if err == nil && sec != nil && sec.Data["keyset"] != nil {
			t.Fatalf("version %d still holds a keyset", ver.Version)
		}
	}
	if err := s.Create(ctx, "clinical", policy.Randomized); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("re-create over a tombstone: %v", err)
	}
	// The old ciphertext is unreadable by any keyset now in the store.
	if _, err := cipher(ssn).Decrypt(ct); err == nil {
		t.Fatal("value decrypted after its key was destroyed")
	}
}

func TestVaultStoreRewrap(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if err := s.Create(ctx, k, policy.Randomized); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Destroy(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	client := v.Client(t)
	if _, err := client.Logical().Write(v.TransitMount+"/keys/"+v.KEK+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.Rewrap(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Rewrap = %d, %v; want 1 (destroyed keys skipped)", n, err)
	}
	ek, _ := vaultStoredKeyset(t, v, "a")
	if !strings.HasPrefix(string(ek.GetEncryptedKeyset()), "vault:v2:") {
		t.Fatalf("keyset not under the new KEK version: %.12q", ek.GetEncryptedKeyset())
	}
	// Old KEK versions can now be retired without losing the keyset.
	if _, err := client.Logical().Write(v.TransitMount+"/keys/"+v.KEK+"/config", map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "a"); err != nil {
		t.Fatalf("Load after retiring KEK v1: %v", err)
	}
}

// TestVaultStoreKVAloneRevealsNothing: a token that may read the KV
// documents but not use the transit key cannot unwrap a keyset.
func TestVaultStoreKVAloneRevealsNothing(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	ctx := context.Background()
	if err := s.Create(ctx, "k", policy.Deterministic); err != nil {
		t.Fatal(err)
	}
	client := v.Client(t)
	pol := `path "` + v.KVMount + `/data/*" { capabilities = ["read"] }
path "` + v.KVMount + `/metadata/*" { capabilities = ["read", "list"] }`
	if err := client.Sys().PutPolicy("kv-only-"+v.KVMount, pol); err != nil {
		t.Fatal(err)
	}
	tok, err := client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"kv-only-" + v.KVMount}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"T": tok.Auth.ClientToken}
	reader, err := OpenVaultStore(ctx, vaultConfig(v, "T"), func(k string) string { return env[k] }, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if infos, err := reader.List(ctx); err != nil || len(infos) != 1 {
		t.Fatalf("KV-only token cannot list: %v", err)
	}
	_, err = reader.Load(ctx, "k")
	if err == nil {
		t.Fatal("a KV-only token unwrapped a keyset")
	}
	if errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("permission denied must not look like an outage (cached keys would survive it): %v", err)
	}
}

// TestVaultOutage stops Vault: a cached key keeps working, a key first
// needed during the outage fails with 58000, and everything recovers once
// Vault is back.
func TestVaultOutage(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	ctx := context.Background()
	for _, k := range []string{"cached", "cold"} {
		if err := s.Create(ctx, k, policy.Randomized); err != nil {
			t.Fatal(err)
		}
	}
	kr := NewKeyring(s, 50*time.Millisecond)
	cached := &policy.ColumnRule{Schema: "s", Table: "t", Column: "a", KeyName: "cached", Kind: policy.Randomized, Type: policy.TypeText}
	cold := &policy.ColumnRule{Schema: "s", Table: "t", Column: "b", KeyName: "cold", Kind: policy.Randomized, Type: policy.TypeText}
	if _, err := kr.Cipher(ctx, cached); err != nil {
		t.Fatal(err)
	}
	v.Stop(t)
	time.Sleep(100 * time.Millisecond) // past the ttl: the cached entry must be refreshed, and survives
	c, err := kr.Cipher(ctx, cached)
	if err != nil {
		t.Fatalf("cached key during the outage: %v", err)
	}
	if _, err := c.Encrypt([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err = kr.Cipher(ctx, cold)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.SQLState() != "58000" || !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), `"cold"`) {
		t.Fatalf("uncached key during the outage: %v", err)
	}
	v.Start(t)
	if _, err := kr.Cipher(ctx, cold); err != nil {
		t.Fatalf("uncached key after recovery: %v", err)
	}
}

func TestVaultAppRoleLoginAndRenewal(t *testing.T) {
	v := testenv.Vault(t)
	pol := `path "` + v.KVMount + `/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "` + v.TransitMount + `/encrypt/` + v.KEK + `" { capabilities = ["update"] }
path "` + v.TransitMount + `/decrypt/` + v.KEK + `" { capabilities = ["update"] }`
	// A short token max TTL forces renewal to end and a new login.
	roleID, secretID := v.AppRole(t, "pgcloak-"+v.KVMount, pol, 2*time.Second)
	cfg := vaultConfig(v, "")
	cfg.Auth = "approle"
	cfg.AppRole.RoleID = roleID
	cfg.AppRole.SecretIDEnv = "SID"
	env := map[string]string{"SID": secretID}
	s, err := OpenVaultStore(context.Background(), cfg, func(k string) string { return env[k] }, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Create(ctx, "k", policy.Randomized); err != nil {
		t.Fatal(err)
	}
	// Well past the token's max TTL the store still works: it logged in
	// again when renewal ended.
	time.Sleep(7 * time.Second)
	if _, err := s.Load(ctx, "k"); err != nil {
		t.Fatalf("after the first token expired: %v", err)
	}
	// Close ends the renewal and the logins: once the current token's TTL
	// has passed, nothing has replaced it.
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	time.Sleep(3 * time.Second)
	if _, err := s.Load(ctx, "k"); err == nil {
		t.Fatal("Load succeeded after Close and the token's TTL: the login is still kept alive")
	}
}

func TestVaultGrantWatcher(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	ctx := context.Background()
	pol := policy.Policy{Keys: []policy.Key{{Name: "ssn", Kind: policy.Deterministic}, {Name: "clinical", Kind: policy.Randomized}}}
	validate := func(roles []policy.Role) error {
		if ps := pol.ValidateGrants(roles); len(ps) > 0 {
			return ps
		}
		return nil
	}
	if err := s.WriteGrants(ctx, "pgcloak/grants", []policy.Role{{Role: "doctor", Read: []string{"ssn", "clinical"}}}); err != nil {
		t.Fatal(err)
	}
	w, err := NewGrantWatcher(ctx, s.GrantsReader("pgcloak/grants"), validate, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !w.For("doctor").CanRead("clinical") {
		t.Fatal("initial grant missing")
	}
	// Revoked in Vault: effective at the next reload.
	if err := s.WriteGrants(ctx, "pgcloak/grants", []policy.Role{{Role: "doctor", Read: []string{"ssn"}}}); err != nil {
		t.Fatal(err)
	}
	if !w.For("doctor").CanRead("clinical") {
		t.Fatal("grants changed before a reload")
	}
	if err := w.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if w.For("doctor").CanRead("clinical") || !w.For("doctor").CanRead("ssn") {
		t.Fatal("revocation not applied by the reload")
	}
	// An invalid document keeps the last good grants.
	if err := s.WriteGrants(ctx, "pgcloak/grants", []policy.Role{{Role: "doctor", Read: []string{"nosuchkey"}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(ctx); err == nil || !strings.Contains(err.Error(), "nosuchkey") {
		t.Fatalf("invalid grants accepted: %v", err)
	}
	if !w.For("doctor").CanRead("ssn") {
		t.Fatal("last good grants lost")
	}
	if _, err := NewGrantWatcher(ctx, s.GrantsReader("pgcloak/missing"), validate, slog.Default()); err == nil {
		t.Fatal("watcher started without a grants document")
	}
}

// TestVaultClientIgnoresEnvironment: the Vault server and how it is
// verified come from the config alone; VAULT_SKIP_VERIFY, VAULT_CACERT
// and VAULT_AGENT_ADDR in the proxy's environment change nothing.
func TestVaultClientIgnoresEnvironment(t *testing.T) {
	v := testenv.Vault(t)
	if v.CACertFile == "" {
		testenv.Unavailable(t, "the test Vault does not use TLS")
	}
	t.Setenv("VAULT_SKIP_VERIFY", "1")
	t.Setenv("VAULT_CACERT", v.CACertFile)
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1")
	cfg := vaultConfig(v, "TEST_VAULT_TOKEN")
	c, err := newVaultClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Health(); err != nil {
		t.Fatalf("with the configured CA and address: %v", err)
	}
	cfg.CAFile = ""
	if c, err = newVaultClient(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Health(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without a CA the test Vault's certificate must not verify: %v", err)
	}
}
