package keymap

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

const testMasterEnv = "TEST_PGCLOAK_MASTER_KEY"

// testKeystore is a key store config in a fresh directory with a fresh
// master key, and the getenv that serves it.
func testKeystore(t *testing.T) (policy.LocalKeystore, string, func(string) string) {
	t.Helper()
	mk, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := policy.LocalKeystore{Path: filepath.Join(t.TempDir(), "keys.json"), MasterKeyEnv: testMasterEnv}
	return cfg, mk, envWith(testMasterEnv, mk)
}

func envWith(name, value string) func(string) string {
	return func(k string) string {
		if k == name {
			return value
		}
		return ""
	}
}

func openTestStore(t *testing.T) *LocalStore {
	t.Helper()
	cfg, _, getenv := testKeystore(t)
	s, err := OpenLocalStore(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCreate(t *testing.T, s Store, name string, kind policy.KeyKind) {
	t.Helper()
	if err := s.Create(context.Background(), name, kind); err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
}

func keyInfo(t *testing.T, s Store, name string) KeyInfo {
	t.Helper()
	infos, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range infos {
		if ki.Name == name {
			return ki
		}
	}
	t.Fatalf("key %s not listed", name)
	return KeyInfo{}
}

func TestGenerateMasterKey(t *testing.T) {
	a, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateMasterKey()
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Fatalf("master key decodes to %d bytes, %v; want 32", len(raw), err)
	}
	if a == b {
		t.Fatal("two master keys are equal")
	}
}

func TestLocalStoreCreateAndList(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCreate(t, s, "ssn", policy.Deterministic)
	mustCreate(t, s, "clinical", policy.Randomized)

	infos, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "clinical" || infos[1].Name != "ssn" {
		t.Fatalf("List = %+v, want clinical and ssn sorted", infos)
	}
	for _, ki := range infos {
		want := map[string]policy.KeyKind{"ssn": policy.Deterministic, "clinical": policy.Randomized}[ki.Name]
		if ki.Kind != want || ki.State != KeyEnabled || ki.Versions != 1 || ki.PrimaryID == 0 || ki.Created.IsZero() {
			t.Errorf("KeyInfo %+v: want kind %s, enabled, 1 version, a primary id and a creation time", ki, want)
		}
	}

	if err := s.Create(ctx, "ssn", policy.Deterministic); !errors.Is(err, ErrKeyExists) {
		t.Errorf("second Create = %v, want ErrKeyExists", err)
	}
	if err := s.Create(ctx, "x", "fancy"); err == nil {
		t.Error("Create with an unknown kind succeeded")
	}
	if _, err := s.Load(ctx, "nope"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Load(nope) = %v, want ErrKeyNotFound", err)
	}
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestLocalStoreRotate(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []policy.KeyKind{policy.Randomized, policy.Deterministic} {
		t.Run(string(kind), func(t *testing.T) {
			s := openTestStore(t)
			mustCreate(t, s, "k", kind)
			rule := &policy.ColumnRule{Schema: "public", Table: "t", Column: "c", KeyName: "k", Kind: kind, Type: policy.TypeText}
			before := keyInfo(t, s, "k")
			oldCT := encryptWith(t, s, rule, "before rotation")
			if id, _ := KeyID(oldCT); id != before.PrimaryID {
				t.Fatalf("ciphertext key id %d, want primary %d", id, before.PrimaryID)
			}

			if err := s.Rotate(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			after := keyInfo(t, s, "k")
			if after.Versions != 2 || after.PrimaryID == before.PrimaryID {
				t.Fatalf("after rotate: %+v, want 2 versions and a new primary", after)
			}
			c := cipherFrom(t, s, rule)
			if pt, err := c.Decrypt(oldCT); err != nil || string(pt) != "before rotation" {
				t.Fatalf("old ciphertext after rotate: %q, %v", pt, err)
			}
			newCT, err := c.Encrypt([]byte("after rotation"))
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := KeyID(newCT); id != after.PrimaryID {
				t.Errorf("new ciphertext key id %d, want new primary %d", id, after.PrimaryID)
			}
		})
	}
}

func TestLocalStoreDisableEnable(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCreate(t, s, "k", policy.Randomized)

	if err := s.SetEnabled(ctx, "k", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrKeyDisabled) {
		t.Fatalf("Load of disabled key = %v, want ErrKeyDisabled", err)
	}
	if ki := keyInfo(t, s, "k"); ki.State != KeyDisabled || ki.Versions != 1 {
		t.Errorf("disabled key listed as %+v", ki)
	}
	if err := s.SetEnabled(ctx, "k", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "k"); err != nil {
		t.Fatalf("Load after re-enable: %v", err)
	}
	if err := s.SetEnabled(ctx, "missing", true); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("SetEnabled(missing) = %v, want ErrKeyNotFound", err)
	}
}

func TestLocalStoreDestroy(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCreate(t, s, "k", policy.Randomized)
	mustCreate(t, s, "other", policy.Randomized)
	wrapped := storedKeyset(t, s.Path(), "k")

	if err := s.Destroy(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("Load of destroyed key = %v, want ErrKeyDestroyed", err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), wrapped) {
		t.Fatal("destroyed keyset still in the file")
	}
	if ki := keyInfo(t, s, "k"); ki.State != KeyDestroyed || ki.Versions != 0 || ki.PrimaryID != 0 {
		t.Errorf("destroyed key listed as %+v", ki)
	}
	for name, err := range map[string]error{
		"Create":     s.Create(ctx, "k", policy.Randomized),
		"Rotate":     s.Rotate(ctx, "k"),
		"SetEnabled": s.SetEnabled(ctx, "k", true),
		"Destroy":    s.Destroy(ctx, "k"),
	} {
		want := ErrKeyDestroyed
		if name == "Create" {
			want = ErrKeyExists
		}
		if !errors.Is(err, want) {
			t.Errorf("%s on a destroyed key = %v, want %v", name, err, want)
		}
	}
	if _, err := s.Load(ctx, "other"); err != nil {
		t.Errorf("other key after destroy: %v", err)
	}
}

// storedKeyset returns the base64 of a key's wrapped keyset as the file
// holds it.
func storedKeyset(t *testing.T, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Keys map[string]struct{ Keyset []byte } `json:"keys"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	ks := f.Keys[name].Keyset
	if len(ks) == 0 {
		t.Fatalf("no keyset stored for %s", name)
	}
	return base64.StdEncoding.EncodeToString(ks)
}

func TestLocalStoreSeesOtherProcessWrites(t *testing.T) {
	cfg, _, getenv := testKeystore(t)
	proxy, err := OpenLocalStore(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := OpenLocalStore(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, cli, "k", policy.Randomized)
	if _, err := proxy.Load(context.Background(), "k"); err != nil {
		t.Fatalf("key created by another store instance not seen: %v", err)
	}
}

func TestLocalStoreWrongMasterKey(t *testing.T) {
	cfg, good, getenv := testKeystore(t)
	s, err := OpenLocalStore(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "k", policy.Randomized)

	bad, _ := GenerateMasterKey()
	_, err = OpenLocalStore(cfg, envWith(testMasterEnv, bad))
	if !errors.Is(err, ErrMasterKey) {
		t.Fatalf("open with wrong master key = %v, want ErrMasterKey", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, testMasterEnv) || !strings.Contains(msg, "wrong master key") {
		t.Errorf("message %q should name %s and say the master key is wrong", msg, testMasterEnv)
	}
	if strings.Contains(msg, bad) || strings.Contains(msg, good) {
		t.Errorf("message %q contains a master key", msg)
	}
}

func TestMasterKeySources(t *testing.T) {
	dir := t.TempDir()
	good, _ := GenerateMasterKey()
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	goodFile := filepath.Join(dir, "mk")
	if err := os.WriteFile(goodFile, []byte("\n  "+good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys.json")
	tests := []struct {
		name    string
		cfg     policy.LocalKeystore
		env     string
		wantErr string // "" = opens
	}{
		{"env", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK"}, good, ""},
		{"env with whitespace", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK"}, " " + good + "\n", ""},
		{"file wins over env", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK", MasterKeyFile: goodFile}, "junk", ""},
		{"env unset", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK"}, "", "environment variable MK is not set"},
		{"not base64", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK"}, "not*base64!", "MK is not valid base64"},
		{"short", policy.LocalKeystore{Path: path, MasterKeyEnv: "MK"}, short, "must decode to 32 bytes, got 16"},
		{"file missing", policy.LocalKeystore{Path: path, MasterKeyFile: filepath.Join(dir, "nope")}, "", "cannot read master key file " + filepath.Join(dir, "nope")},
		{"no source", policy.LocalKeystore{Path: path}, "", "neither master_key_env nor master_key_file"},
		{"no path", policy.LocalKeystore{MasterKeyEnv: "MK"}, good, "path is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenLocalStore(tt.cfg, envWith("MK", tt.env))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("open = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.env != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.env)) {
				t.Errorf("message %q contains the master key", err)
			}
		})
	}
}

func TestLocalStoreUnreadableFile(t *testing.T) {
	cfg, _, getenv := testKeystore(t)
	s, err := OpenLocalStore(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "k", policy.Randomized)
	if err := os.WriteFile(cfg.Path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background(), "k"); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Load from a corrupt file = %v, want ErrStoreUnavailable", err)
	}
	if err := os.Remove(cfg.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cfg.Path, 0o700); err != nil { // reading a directory fails
		t.Fatal(err)
	}
	if _, err := s.List(context.Background()); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("List of an unreadable path = %v, want ErrStoreUnavailable", err)
	}
}

// TestLocalStoreKeysetBoundToName checks the key name is the keyset's
// associated data: a wrapped keyset moved under another name does not open.
func TestLocalStoreKeysetBoundToName(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "a", policy.Randomized)
	mustCreate(t, s, "b", policy.Randomized)
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	swapped := strings.Replace(string(data), storedKeyset(t, s.Path(), "b"), storedKeyset(t, s.Path(), "a"), 1)
	if err := os.WriteFile(s.Path(), []byte(swapped), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background(), "b"); !errors.Is(err, ErrMasterKey) {
		t.Errorf("Load of a keyset moved to another name = %v, want an error", err)
	}
	if _, err := s.Load(context.Background(), "a"); err != nil {
		t.Errorf("Load(a): %v", err)
	}
}
