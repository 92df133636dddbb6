package proxy_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	gcmpb "github.com/tink-crypto/tink-go/v2/proto/aes_gcm_go_proto"
	sivpb "github.com/tink-crypto/tink-go/v2/proto/aes_siv_go_proto"
	"google.golang.org/protobuf/proto"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// vaultKeystore opens a Vault key store on v's per-test mounts with every
// key of the test policy created, logging into logs.
func vaultKeystore(t *testing.T, v *testenv.VaultEnv, logs io.Writer) (*keymap.VaultStore, *policy.Config) {
	t.Helper()
	cfg, err := policy.Load([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	vc := policy.Defaults().Keystore.Vault
	vc.Address, vc.CAFile = v.Addr, v.CACertFile
	vc.KVMount, vc.TransitMount, vc.KEK = v.KVMount, v.TransitMount, v.KEK
	vc.TokenEnv, vc.Timeout = "T", "3s"
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := keymap.OpenVaultStore(context.Background(), vc, func(string) string { return v.Token }, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if _, err := keymap.CreateMissing(context.Background(), store, cfg.Policy.Keys); err != nil {
		t.Fatal(err)
	}
	return store, cfg
}

// keyMaterial returns every raw AES key of the named keys, for checking
// that none appears in the logs.
func keyMaterial(t *testing.T, store keymap.Store, names ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range names {
		h, err := store.Load(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range insecurecleartextkeyset.KeysetMaterial(h).GetKey() {
			value := k.GetKeyData().GetValue()
			var gcm gcmpb.AesGcmKey
			var siv sivpb.AesSivKey
			switch {
			case strings.Contains(k.GetKeyData().GetTypeUrl(), "AesGcmKey") && proto.Unmarshal(value, &gcm) == nil:
				out = append(out, gcm.GetKeyValue())
			case strings.Contains(k.GetKeyData().GetTypeUrl(), "AesSivKey") && proto.Unmarshal(value, &siv) == nil:
				out = append(out, siv.GetKeyValue())
			default:
				t.Fatalf("unexpected key type %s", k.GetKeyData().GetTypeUrl())
			}
		}
	}
	return out
}

// TestProxyWithVault runs the proxy on keys and grants kept in a real
// Vault: keys are used, a grant revoked in Vault takes effect in an open
// session without a restart, Vault stops (cached keys keep working, a key
// first needed fails with 58000, the session stays usable) and comes back,
// keys are rotated, disabled and destroyed — and no log line, at any
// level, holds key material or a plaintext value.
func TestProxyWithVault(t *testing.T) {
	v := testenv.Vault(t)
	logs := &syncBuffer{}
	store, cfg := vaultKeystore(t, v, logs)
	ctx := ctxT(t)
	grants := []policy.Role{
		{Role: "doctor", Read: []string{"ssn", "clinical", "dates"}, Write: []string{"ssn", "clinical", "dates"}},
		{Role: "billing", Read: []string{"ssn"}},
	}
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	validate := func(roles []policy.Role) error {
		if ps := cfg.Policy.ValidateGrants(roles); len(ps) > 0 {
			return ps
		}
		return nil
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLogWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	watcher, err := keymap.NewGrantWatcher(ctx, store.GrantsReader("pgcloak/grants"), validate, log)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go watcher.Run(wctx, 200*time.Millisecond, nil)

	keyring := keymap.NewKeyring(store, 200*time.Millisecond)
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) {
		c.Keyring, c.Grants, c.Logger = keyring, watcher, log
	})
	doc := h.connect("doctor")
	secrets := []string{"VAULT-SSN-0001", "VAULT-DIAGNOSIS-ASTHMA", "VAULT-SSN-0002"}
	if _, err := doc.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "A", secrets[0], secrets[1]); err != nil {
		t.Fatal(err)
	}
	var diag *string
	if err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", secrets[0]).Scan(&diag); err != nil || diag == nil || *diag != secrets[1] {
		t.Fatalf("read with keys from Vault: %v %v", diag, err)
	}

	// A grant revoked in Vault stops decryption in the open session.
	grants[0].Read = []string{"ssn", "dates"}
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation", func() bool {
		err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", secrets[0]).Scan(&diag)
		return err == nil && diag == nil
	})
	grants[0].Read = []string{"ssn", "clinical", "dates"}
	if err := store.WriteGrants(ctx, "pgcloak/grants", grants); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grant restored", func() bool {
		err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", secrets[0]).Scan(&diag)
		return err == nil && diag != nil && *diag == secrets[1]
	})

	// Vault stops: cached keys (ssn, clinical) keep working past the
	// cache TTL; the dates key, first needed now, fails with 58000.
	v.Stop(t)
	time.Sleep(300 * time.Millisecond)
	if err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", secrets[0]).Scan(&diag); err != nil || diag == nil || *diag != secrets[1] {
		t.Fatalf("cached keys during the outage: %v %v", diag, err)
	}
	if _, err := doc.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "B", secrets[2]); err != nil {
		t.Fatalf("write with a cached key during the outage: %v", err)
	}
	_, err = doc.Exec(ctx, "UPDATE patients SET dob = $1 WHERE ssn = $2", "1990-01-01", secrets[2])
	pe := wantCode(t, err, "58000")
	if !strings.Contains(pe.Message, `"dates"`) {
		t.Fatalf("58000 should name the key: %s", pe.Message)
	}
	var n int
	if err := doc.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 2 {
		t.Fatalf("session after the 58000: %d %v", n, err)
	}
	v.Start(t)
	waitFor(t, "recovery", func() bool {
		_, err := doc.Exec(ctx, "UPDATE patients SET dob = $1 WHERE ssn = $2", "1990-01-01", secrets[2])
		return err == nil
	})
	var dob time.Time
	if err := doc.QueryRow(ctx, "SELECT dob FROM patients WHERE ssn = $1", secrets[2]).Scan(&dob); err != nil || dob.Format("2006-01-02") != "1990-01-01" {
		t.Fatalf("dob after recovery: %v %v", dob, err)
	}

	// Rotation: old rows still decrypt, new rows use the new version.
	material := keyMaterial(t, store, "ssn", "clinical", "dates")
	if err := store.Rotate(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	material = append(material, keyMaterial(t, store, "clinical")...)
	time.Sleep(300 * time.Millisecond) // past the keyring TTL
	if _, err := doc.Exec(ctx, "UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "VAULT-DIAGNOSIS-ROTATED", secrets[2]); err != nil {
		t.Fatal(err)
	}
	for ssn, want := range map[string]string{secrets[0]: secrets[1], secrets[2]: "VAULT-DIAGNOSIS-ROTATED"} {
		if err := doc.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", ssn).Scan(&diag); err != nil || diag == nil || *diag != want {
			t.Fatalf("after rotation: %v %v", diag, err)
		}
	}
	// Disabled: every use fails (after the keyring TTL); enabled again: back.
	if err := store.SetEnabled(ctx, "clinical", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disable", func() bool {
		_, err := doc.Exec(ctx, "SELECT diagnosis FROM patients")
		return pgCode(err) == "58000"
	})
	if err := store.SetEnabled(ctx, "clinical", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enable", func() bool {
		_, err := doc.Exec(ctx, "SELECT diagnosis FROM patients")
		return err == nil
	})
	// Destroyed: nobody can decrypt that column's data any more.
	if err := store.Destroy(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the destroy", func() bool {
		_, err := doc.Exec(ctx, "SELECT diagnosis FROM patients")
		return pgCode(err) == "58000"
	})
	if _, err := store.Load(ctx, "clinical"); err == nil {
		t.Fatal("a destroyed key still loads")
	}

	// No log line holds a key or a plaintext value (the statement log is
	// checked by the at-rest tests).
	all := logs.String() + h.logBuf.String()
	if !strings.Contains(all, "level=DEBUG") {
		t.Fatal("the logs were not captured at debug level")
	}
	for _, s := range append(secrets, "VAULT-DIAGNOSIS-ROTATED", "1990-01-01", v.Token) {
		if strings.Contains(all, s) {
			t.Fatalf("a log line contains %q", s)
		}
	}
	for _, k := range material {
		for _, form := range []string{string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k)} {
			if strings.Contains(all, form) {
				t.Fatal("a log line contains key material")
			}
		}
	}
}

// waitFor polls cond until it holds (the grant watcher and keyring work on
// short intervals here); it fails the test after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take effect", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
