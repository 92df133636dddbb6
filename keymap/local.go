package keymap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// localFormat is the version of the key store file layout.
const localFormat = 1

// masterCheckAD is the associated data of the check value the file carries,
// encrypted under the master key on first write, so that a wrong master key is
// reported at open time as such, not later as a puzzling keyset failure.
const masterCheckAD = "pgcloak:local-keystore:master-check"

// LocalStore keeps keysets in a JSON file, each keyset encrypted under a master
// key (AES-256-GCM) with the key name as associated data, so a keyset cannot be
// moved to another name. It is meant for development and the demo; production
// uses Vault.
//
// The file is re-read on every operation so that changes made by another
// process (the CLI) are seen; writes replace it atomically. Concurrent writers
// in different processes are not serialised: the last rename wins.
type LocalStore struct {
	path   string
	source string // where the master key came from, for messages
	master tink.AEAD
	mu     sync.Mutex // serialises this process's read-modify-write cycles
}

var _ Store = (*LocalStore)(nil)

type localFile struct {
	Format      int                  `json:"format"`
	MasterCheck []byte               `json:"master_check,omitempty"`
	Keys        map[string]*localKey `json:"keys"`
}

type localKey struct {
	Kind      policy.KeyKind `json:"kind"`
	State     KeyState       `json:"state"`
	Created   time.Time      `json:"created"`
	Rotated   time.Time      `json:"rotated,omitzero"`
	Destroyed *time.Time     `json:"destroyed,omitempty"`
	// Keyset is a Tink EncryptedKeyset (binary); absent once destroyed.
	Keyset []byte `json:"keyset,omitempty"`
}

// OpenLocalStore opens (without creating) the key store file cfg.Path,
// reading the master key from the environment variable cfg.MasterKeyEnv or,
// when set, from cfg.MasterKeyFile (getenv nil means os.Getenv). A missing
// file is an empty store; a file the master key does not open is an error
// wrapping ErrMasterKey.
func OpenLocalStore(cfg policy.LocalKeystore, getenv func(string) string) (*LocalStore, error) {
	if cfg.Path == "" {
		return nil, errors.New("keystore.local.path is empty")
	}
	master, err := openMasterAEAD(cfg, getenv)
	if err != nil {
		return nil, err
	}
	s := &LocalStore{path: cfg.Path, source: masterKeySource(cfg), master: master}
	if _, err := s.read(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the key store file.
func (s *LocalStore) Path() string { return s.path }

// Close implements Store. A LocalStore holds nothing open (the file is read
// and replaced per operation), so there is nothing to release.
func (s *LocalStore) Close() error { return nil }

// Load implements Store.
func (s *LocalStore) Load(ctx context.Context, name string) (*keyset.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	k, err := f.usable(name)
	if err != nil {
		return nil, err
	}
	if k.State == KeyDisabled {
		return nil, ErrKeyDisabled
	}
	return s.unwrap(name, k)
}

// Create implements Store.
func (s *LocalStore) Create(ctx context.Context, name string, kind policy.KeyKind) error {
	if name == "" {
		return errors.New("key name is empty")
	}
	if _, err := templateFor(kind); err != nil {
		return err
	}
	return s.mutate(ctx, func(f *localFile) error {
		if _, ok := f.Keys[name]; ok {
			return ErrKeyExists
		}
		h, err := newKeyset(kind)
		if err != nil {
			return err
		}
		wrapped, err := s.wrap(name, h)
		if err != nil {
			return err
		}
		f.Keys[name] = &localKey{Kind: kind, State: KeyEnabled, Created: time.Now().UTC(), Keyset: wrapped}
		return nil
	})
}

// List implements Store; keys are sorted by name.
func (s *LocalStore) List(ctx context.Context) ([]KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(f.Keys))
	for n := range f.Keys {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]KeyInfo, 0, len(names))
	for _, n := range names {
		info, err := s.describe(n, f.Keys[n])
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Rotate implements Store. A disabled key may be rotated; a destroyed one not.
func (s *LocalStore) Rotate(ctx context.Context, name string) error {
	return s.mutate(ctx, func(f *localFile) error {
		k, err := f.usable(name)
		if err != nil {
			return err
		}
		h, err := s.unwrap(name, k)
		if err != nil {
			return err
		}
		if h, err = rotateKeyset(h, k.Kind); err != nil {
			return err
		}
		k.Rotated = time.Now().UTC()
		k.Keyset, err = s.wrap(name, h)
		return err
	})
}

// Retire implements Store.
func (s *LocalStore) Retire(ctx context.Context, name string) (int, error) {
	var n int
	err := s.mutate(ctx, func(f *localFile) error {
		k, err := f.usable(name)
		if err != nil {
			return err
		}
		h, err := s.unwrap(name, k)
		if err != nil {
			return err
		}
		if h, n, err = retireKeyset(h); err != nil || n == 0 {
			return err
		}
		k.Keyset, err = s.wrap(name, h)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SetEnabled implements Store.
func (s *LocalStore) SetEnabled(ctx context.Context, name string, enabled bool) error {
	return s.mutate(ctx, func(f *localFile) error {
		k, err := f.usable(name)
		if err != nil {
			return err
		}
		k.State = KeyDisabled
		if enabled {
			k.State = KeyEnabled
		}
		return nil
	})
}

// Destroy implements Store: the wrapped keyset leaves the file, so every value
// encrypted under the key becomes unreadable; the tombstone keeps the name
// from being reused.
func (s *LocalStore) Destroy(ctx context.Context, name string) error {
	return s.mutate(ctx, func(f *localFile) error {
		k, err := f.usable(name)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		clear(k.Keyset)
		k.Keyset = nil
		k.State = KeyDestroyed
		k.Destroyed = &now
		return nil
	})
}

// usable finds a key that still has a keyset (enabled or disabled).
func (f *localFile) usable(name string) (*localKey, error) {
	k, ok := f.Keys[name]
	if !ok {
		return nil, ErrKeyNotFound
	}
	if k.State == KeyDestroyed {
		return nil, ErrKeyDestroyed
	}
	return k, nil
}

func (s *LocalStore) describe(name string, k *localKey) (KeyInfo, error) {
	info := KeyInfo{Name: name, Kind: k.Kind, State: k.State, Created: k.Created, Rotated: k.Rotated}
	if k.State == KeyDestroyed {
		return info, nil
	}
	h, err := s.unwrap(name, k)
	if err != nil {
		return KeyInfo{}, err
	}
	info.Versions, info.Enabled = h.Len(), enabledVersions(h)
	if p, err := h.Primary(); err == nil {
		info.PrimaryID = p.KeyID()
	}
	return info, nil
}

func (s *LocalStore) wrap(name string, h *keyset.Handle) ([]byte, error) {
	return wrapKeyset(h, s.master, name)
}

func (s *LocalStore) unwrap(name string, k *localKey) (*keyset.Handle, error) {
	if len(k.Keyset) == 0 {
		return nil, fmt.Errorf("%w: keyset missing from %s", ErrStoreUnavailable, s.path)
	}
	h, err := unwrapKeyset(k.Keyset, s.master, name)
	if err != nil {
		// Tink's message says nothing secret, but it says nothing useful
		// either; the likely causes are these.
		return nil, fmt.Errorf("%w: keyset in %s does not decrypt under the %s (wrong master key or tampered file)",
			ErrMasterKey, s.path, s.source)
	}
	return h, nil
}

// read loads and checks the file; a missing file is an empty store.
func (s *LocalStore) read() (*localFile, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &localFile{Format: localFormat, Keys: map[string]*localKey{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrStoreUnavailable, s.path, pathErrReason(err))
	}
	var f localFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %s is not a pgcloak key store file: %v", ErrStoreUnavailable, s.path, err)
	}
	if f.Format != localFormat {
		return nil, fmt.Errorf("%w: %s has format %d, this pgcloak reads format %d", ErrStoreUnavailable, s.path, f.Format, localFormat)
	}
	if f.Keys == nil {
		f.Keys = map[string]*localKey{}
	}
	if err := s.verifyMaster(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

func (s *LocalStore) verifyMaster(f *localFile) error {
	if len(f.MasterCheck) == 0 {
		return nil
	}
	if _, err := s.master.Decrypt(f.MasterCheck, []byte(masterCheckAD)); err != nil {
		return fmt.Errorf("%w: the %s does not open key store %s (wrong master key?)", ErrMasterKey, s.source, s.path)
	}
	return nil
}

// mutate applies change to a fresh read of the file and writes the result
// back atomically.
func (s *LocalStore) mutate(ctx context.Context, change func(*localFile) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	if len(f.MasterCheck) == 0 {
		if f.MasterCheck, err = s.master.Encrypt([]byte("pgcloak"), []byte(masterCheckAD)); err != nil {
			return fmt.Errorf("encrypting master key check: %w", err)
		}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding key store: %w", err)
	}
	return writeFileAtomic(s.path, append(data, '\n'))
}

// writeFileAtomic replaces path so that readers see either the old or the
// new content, never a torn write, and only the owner can read it.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("%w: writing %s: %v", ErrStoreUnavailable, path, pathErrReason(err))
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(data); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("%w: writing %s: %v", ErrStoreUnavailable, path, pathErrReason(err))
	}
	syncDir(dir)
	return nil
}

// syncDir makes the rename durable; failure only weakens durability, so it
// is not reported.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

func templateFor(kind policy.KeyKind) (*tinkpb.KeyTemplate, error) {
	switch kind {
	case policy.Randomized:
		return aead.AES256GCMKeyTemplate(), nil
	case policy.Deterministic, policy.Ordered:
		// An ordered key is an AES-SIV keyset too: its versions' key bytes
		// also give the order PRF's keys (ordered.go).
		return daead.AESSIVKeyTemplate(), nil
	}
	return nil, fmt.Errorf("unknown key kind %q (want deterministic, randomized or ordered)", kind)
}
