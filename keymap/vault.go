package keymap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/pgcloak/pgcloak/policy"
)

// VaultStore keeps each key's Tink keyset as a KV v2 document at
// <kv_mount>/<kv_path>/<name>, encrypted under a Vault transit key (the
// KEK) with the key name as associated data: read access to KV alone
// reveals nothing, and keysets are unwrapped only in this process's memory.
type VaultStore struct {
	client      *vault.Client
	kv          *vault.KVv2
	kvMountPath string
	path        string
	transit     string
	kekName     string
	kek         tink.AEAD
	auth        *vaultAuth
}

var _ Store = (*VaultStore)(nil)

// vaultDoc is a key's KV document.
type vaultDoc struct {
	Kind    policy.KeyKind
	State   KeyState
	Created time.Time
	Rotated time.Time // zero if never rotated
	// Keyset is the Tink EncryptedKeyset (binary), absent once destroyed.
	Keyset []byte
	// Versions, Enabled and PrimaryID describe the keyset without
	// unwrapping it.
	Versions  int
	Enabled   int
	PrimaryID uint32
	// version is the KV version read, for check-and-set writes.
	version int
}

// setKeyset wraps h into the document and records its description.
func (d *vaultDoc) setKeyset(s *VaultStore, name string, h *keyset.Handle) error {
	wrapped, err := s.wrap(name, h)
	if err != nil {
		return err
	}
	info := h.KeysetInfo()
	d.Keyset, d.Versions, d.Enabled, d.PrimaryID = wrapped, len(info.GetKeyInfo()), enabledVersions(h), info.GetPrimaryKeyId()
	return nil
}

func (d *vaultDoc) data() map[string]any {
	m := map[string]any{"kind": string(d.Kind), "state": string(d.State), "created": d.Created.UTC().Format(time.RFC3339Nano)}
	if !d.Rotated.IsZero() {
		m["rotated"] = d.Rotated.UTC().Format(time.RFC3339Nano)
	}
	if len(d.Keyset) > 0 {
		m["keyset"] = base64.StdEncoding.EncodeToString(d.Keyset)
		m["versions"] = d.Versions
		m["enabled"] = d.Enabled
		m["primary_id"] = d.PrimaryID
	}
	return m
}

// docNumber reads a number from a KV document (json.Number or float64,
// depending on how the client decoded it).
func docNumber(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	}
	return 0
}

func docFrom(s *vault.KVSecret) (*vaultDoc, error) {
	str := func(k string) string { v, _ := s.Data[k].(string); return v }
	d := &vaultDoc{Kind: policy.KeyKind(str("kind")), State: KeyState(str("state"))}
	if s.VersionMetadata != nil {
		d.version = s.VersionMetadata.Version
	}
	var err error
	if d.Created, err = time.Parse(time.RFC3339Nano, str("created")); err != nil {
		return nil, fmt.Errorf("%w: malformed key document (created)", ErrStoreUnavailable)
	}
	if r := str("rotated"); r != "" {
		if d.Rotated, err = time.Parse(time.RFC3339Nano, r); err != nil {
			return nil, fmt.Errorf("%w: malformed key document (rotated)", ErrStoreUnavailable)
		}
	}
	if ks := str("keyset"); ks != "" {
		if d.Keyset, err = base64.StdEncoding.DecodeString(ks); err != nil {
			return nil, fmt.Errorf("%w: malformed key document (keyset)", ErrStoreUnavailable)
		}
		d.Versions, d.PrimaryID = int(docNumber(s.Data["versions"])), uint32(docNumber(s.Data["primary_id"]))
		// Documents written before versions could be retired have no
		// count: every version of theirs is enabled.
		d.Enabled = d.Versions
		if _, ok := s.Data["enabled"]; ok {
			d.Enabled = int(docNumber(s.Data["enabled"]))
		}
	}
	return d, nil
}

// OpenVaultStore connects to Vault as cfg says, logs in, and keeps the
// login alive until Close. getenv reads tokens and secret ids (nil means
// os.Getenv).
func OpenVaultStore(ctx context.Context, cfg policy.VaultKeystore, getenv func(string) string, log *slog.Logger) (*VaultStore, error) {
	client, err := newVaultClient(cfg)
	if err != nil {
		return nil, err
	}
	auth := newVaultAuth(client, cfg, getenv, log)
	if err := auth.start(ctx); err != nil {
		return nil, err
	}
	kek, err := hcvault.NewAEAD("/"+strings.Trim(cfg.TransitMount, "/")+"/keys/"+cfg.KEK, client.Logical())
	if err != nil {
		auth.stop()
		return nil, fmt.Errorf("vault transit key: %w", err)
	}
	return &VaultStore{
		client:      client,
		kv:          client.KVv2(strings.Trim(cfg.KVMount, "/")),
		kvMountPath: strings.Trim(cfg.KVMount, "/"),
		path:        strings.Trim(cfg.KVPath, "/"),
		transit:     strings.Trim(cfg.TransitMount, "/"),
		kekName:     cfg.KEK,
		kek:         kek,
		auth:        auth,
	}, nil
}

func newVaultClient(cfg policy.VaultKeystore) (*vault.Client, error) {
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	vc.Address = cfg.Address
	timeout, err := time.ParseDuration(cfg.Timeout)
	if err != nil || timeout <= 0 {
		timeout = 10 * time.Second
	}
	vc.Timeout = timeout
	// Few retries: a request on the query path must fail fast when Vault
	// is down, and the Keyring keeps serving cached keys meanwhile.
	vc.MaxRetries = 1
	// Where the proxy sends its token and keysets, and how it checks the
	// server, come from the config only: DefaultConfig also read the
	// environment, where VAULT_AGENT_ADDR or VAULT_SRV_LOOKUP would
	// change the server and VAULT_SKIP_VERIFY or VAULT_CACERT its
	// verification.
	vc.AgentAddress, vc.SRVLookup = "", false
	tr, ok := vc.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("vault client: unexpected transport %T", vc.HttpClient.Transport)
	}
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CAFile}); err != nil {
		return nil, fmt.Errorf("keystore.vault.ca_file: %w", err)
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, err
	}
	// The token comes from the login, never from VAULT_TOKEN implicitly.
	client.ClearToken()
	return client, nil
}

// Close implements Store: it stops renewing the login, waiting for the
// renewal goroutine to end, and closes idle connections to Vault. The token
// is not revoked; unrenewed, it expires by itself.
func (s *VaultStore) Close() error {
	s.auth.stop()
	// CloneConfig copies the http.Client but shares its Transport, whose
	// idle connections these are.
	if cfg := s.client.CloneConfig(); cfg.HttpClient != nil {
		cfg.HttpClient.CloseIdleConnections()
	}
	return nil
}

func (s *VaultStore) docPath(name string) string { return s.path + "/" + name }

// read fetches a key's document.
func (s *VaultStore) read(ctx context.Context, name string) (*vaultDoc, error) {
	if name == "" || strings.ContainsAny(name, "/") {
		return nil, fmt.Errorf("invalid key name %q", name)
	}
	sec, err := s.kv.Get(ctx, s.docPath(name))
	if err != nil {
		return nil, vaultError(err, ErrKeyNotFound)
	}
	if sec == nil || sec.Data == nil {
		// A deleted latest version reads as empty data.
		return nil, ErrKeyNotFound
	}
	return docFrom(sec)
}

// write stores a key's document if nobody changed it since it was read
// (version 0: only if it does not exist yet).
func (s *VaultStore) write(ctx context.Context, name string, d *vaultDoc) error {
	_, err := s.kv.Put(ctx, s.docPath(name), d.data(), vault.WithCheckAndSet(d.version))
	if err != nil {
		if isCASConflict(err) {
			if d.version == 0 {
				return ErrKeyExists
			}
			return fmt.Errorf("key %q changed concurrently; retry", name)
		}
		return vaultError(err, ErrKeyNotFound)
	}
	return nil
}

// Load implements Store.
func (s *VaultStore) Load(ctx context.Context, name string) (*keyset.Handle, error) {
	d, err := s.read(ctx, name)
	if err != nil {
		return nil, err
	}
	switch d.State {
	case KeyDestroyed:
		return nil, ErrKeyDestroyed
	case KeyDisabled:
		return nil, ErrKeyDisabled
	}
	return s.unwrap(name, d)
}

func (s *VaultStore) unwrap(name string, d *vaultDoc) (*keyset.Handle, error) {
	if len(d.Keyset) == 0 {
		return nil, fmt.Errorf("%w: key document %s has no keyset", ErrStoreUnavailable, name)
	}
	kc := &kekCall{aead: s.kek}
	h, err := unwrapKeyset(d.Keyset, kc, name)
	if err != nil {
		if kc.err != nil && !isVaultClientError(kc.err) {
			return nil, vaultError(kc.err, ErrStoreUnavailable)
		}
		return nil, fmt.Errorf("%w: keyset %s does not decrypt under transit key %s/%s", ErrMasterKey, name, s.transit, s.kekName)
	}
	return h, nil
}

func (s *VaultStore) wrap(name string, h *keyset.Handle) ([]byte, error) {
	kc := &kekCall{aead: s.kek}
	b, err := wrapKeyset(h, kc, name)
	if err != nil && kc.err != nil {
		return nil, vaultError(kc.err, ErrStoreUnavailable)
	}
	return b, err
}

// Create implements Store.
func (s *VaultStore) Create(ctx context.Context, name string, kind policy.KeyKind) error {
	if name == "" || strings.ContainsAny(name, "/") {
		return fmt.Errorf("invalid key name %q", name)
	}
	h, err := newKeyset(kind)
	if err != nil {
		return err
	}
	d := &vaultDoc{Kind: kind, State: KeyEnabled, Created: time.Now().UTC()}
	if err := d.setKeyset(s, name, h); err != nil {
		return err
	}
	return s.write(ctx, name, d)
}

// List implements Store, sorted by name. Versions and the primary id come
// from the keyset's unencrypted metadata: listing needs no transit call.
func (s *VaultStore) List(ctx context.Context) ([]KeyInfo, error) {
	sec, err := s.client.Logical().ListWithContext(ctx, s.kvMountPath+"/metadata/"+s.path)
	if err != nil {
		return nil, vaultError(err, ErrStoreUnavailable)
	}
	var names []string
	if sec != nil {
		keys, _ := sec.Data["keys"].([]any)
		for _, k := range keys {
			if n, ok := k.(string); ok && !strings.HasSuffix(n, "/") {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	out := make([]KeyInfo, 0, len(names))
	for _, n := range names {
		d, err := s.read(ctx, n)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, KeyInfo{Name: n, Kind: d.Kind, State: d.State, Created: d.Created, Rotated: d.Rotated, Versions: d.Versions, Enabled: d.Enabled, PrimaryID: d.PrimaryID})
	}
	return out, nil
}

// Rotate implements Store.
func (s *VaultStore) Rotate(ctx context.Context, name string) error {
	return s.update(ctx, name, func(d *vaultDoc) error {
		h, err := s.unwrap(name, d)
		if err != nil {
			return err
		}
		if h, err = rotateKeyset(h, d.Kind); err != nil {
			return err
		}
		d.Rotated = time.Now().UTC()
		return d.setKeyset(s, name, h)
	})
}

// Retire implements Store.
func (s *VaultStore) Retire(ctx context.Context, name string) (int, error) {
	var n int
	err := s.update(ctx, name, func(d *vaultDoc) error {
		h, err := s.unwrap(name, d)
		if err != nil {
			return err
		}
		if h, n, err = retireKeyset(h); err != nil || n == 0 {
			return err
		}
		return d.setKeyset(s, name, h)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SetEnabled implements Store.
func (s *VaultStore) SetEnabled(ctx context.Context, name string, enabled bool) error {
	return s.update(ctx, name, func(d *vaultDoc) error {
		d.State = KeyDisabled
		if enabled {
			d.State = KeyEnabled
		}
		return nil
	})
}

// update applies change to a key that still has a keyset and writes it
// back with check-and-set.
func (s *VaultStore) update(ctx context.Context, name string, change func(*vaultDoc) error) error {
	d, err := s.read(ctx, name)
	if err != nil {
		return err
	}
	if d.State == KeyDestroyed {
		return ErrKeyDestroyed
	}
	if err := change(d); err != nil {
		return err
	}
	return s.write(ctx, name, d)
}

// Destroy implements Store: crypto-shredding. A tombstone without keyset
// becomes the latest version, then every earlier version's data is
// destroyed in KV, so the keyset cannot be recovered from KV's history.
func (s *VaultStore) Destroy(ctx context.Context, name string) error {
	d, err := s.read(ctx, name)
	if err != nil {
		return err
	}
	if d.State == KeyDestroyed {
		return ErrKeyDestroyed
	}
	tomb := &vaultDoc{Kind: d.Kind, State: KeyDestroyed, Created: d.Created, version: d.version}
	if err := s.write(ctx, name, tomb); err != nil {
		return err
	}
	versions, err := s.kv.GetVersionsAsList(ctx, s.docPath(name))
	if err != nil {
		return vaultError(err, ErrStoreUnavailable)
	}
	var old []int
	for _, v := range versions {
		if v.Version <= d.version {
			old = append(old, v.Version)
		}
	}
	if err := s.kv.Destroy(ctx, s.docPath(name), old); err != nil {
		return fmt.Errorf("key %q: tombstone written but old versions not destroyed (run destroy again): %w", name, vaultError(err, ErrStoreUnavailable))
	}
	return nil
}

// Rewrap re-encrypts every stored keyset under the newest version of the
// transit key (transit encrypts with its latest version), so older KEK
// versions can be retired; table data is untouched. It returns how many
// keysets it rewrapped. (Transit's own rewrap endpoint ignores associated
// data, which binds each keyset to its key name, so this unwraps in memory
// and wraps again.)
func (s *VaultStore) Rewrap(ctx context.Context) (int, error) {
	infos, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, info := range infos {
		if info.State == KeyDestroyed {
			continue
		}
		err := s.update(ctx, info.Name, func(d *vaultDoc) error {
			h, err := s.unwrap(info.Name, d)
			if err != nil {
				return err
			}
			return d.setKeyset(s, info.Name, h)
		})
		if err != nil {
			return n, fmt.Errorf("key %q: %w", info.Name, err)
		}
		n++
	}
	return n, nil
}

// kekCall is the KEK AEAD for one wrap or unwrap, remembering Vault's
// error, which Tink's keyset functions flatten into a string.
type kekCall struct {
	aead tink.AEAD
	err  error
}

func (k *kekCall) Encrypt(plaintext, ad []byte) ([]byte, error) {
	ct, err := k.aead.Encrypt(plaintext, ad)
	k.err = err
	return ct, err
}

func (k *kekCall) Decrypt(ciphertext, ad []byte) ([]byte, error) {
	pt, err := k.aead.Decrypt(ciphertext, ad)
	k.err = err
	return pt, err
}

// vaultError maps a Vault client error onto the Store errors: a missing
// document is notFound, a client error (permission denied, bad request)
// stays as it is, and anything else — network, timeout, sealed, 5xx — is
// ErrStoreUnavailable, which the Keyring rides out with cached keys.
func vaultError(err error, notFound error) error {
	if errors.Is(err, vault.ErrSecretNotFound) {
		return notFound
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusNotFound:
			return notFound
		case re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests:
			return fmt.Errorf("vault refused the request (HTTP %d): %s", re.StatusCode, strings.Join(re.Errors, "; "))
		}
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

func isVaultClientError(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests
}

func isCASConflict(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "check-and-set") {
			return true
		}
	}
	return false
}
