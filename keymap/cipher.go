package keymap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// primitive is the one thing a ColumnCipher needs from a keyset: Tink's AEAD
// or deterministic AEAD behind a common shape, so no key bytes leave Tink.
type primitive interface {
	seal(plaintext, ad []byte) ([]byte, error)
	open(ciphertext, ad []byte) ([]byte, error)
}

type randomized struct{ a tink.AEAD }

func (p randomized) seal(pt, ad []byte) ([]byte, error) { return p.a.Encrypt(pt, ad) }
func (p randomized) open(ct, ad []byte) ([]byte, error) { return p.a.Decrypt(ct, ad) }

// deterministic is a deterministic keyset: d encrypts under the primary
// version and decrypts under any; versions encrypt under each enabled
// version, the primary first (see ColumnCipher.Candidates).
type deterministic struct {
	d        tink.DeterministicAEAD
	versions []tink.DeterministicAEAD
	// ids names the versions (Tink key ids, in the same order).
	ids string
}

func (p deterministic) seal(pt, ad []byte) ([]byte, error) {
	return p.d.EncryptDeterministically(pt, ad)
}
func (p deterministic) open(ct, ad []byte) ([]byte, error) {
	return p.d.DecryptDeterministically(ct, ad)
}

// newPrimitive builds the primitive for kind from a keyset. A keyset of the
// other kind fails here, not at the first row.
func newPrimitive(h *keyset.Handle, kind policy.KeyKind) (primitive, error) {
	switch kind {
	case policy.Randomized:
		a, err := aead.New(h)
		if err != nil {
			return nil, fmt.Errorf("keyset is not a randomized (AES-GCM) keyset: %w", err)
		}
		return randomized{a}, nil
	case policy.Deterministic:
		d, err := daead.New(h)
		if err != nil {
			return nil, fmt.Errorf("keyset is not a deterministic (AES-SIV) keyset: %w", err)
		}
		versions, ids, err := versionPrimitives(h, d)
		if err != nil {
			return nil, err
		}
		return deterministic{d: d, versions: versions, ids: ids}, nil
	}
	return nil, fmt.Errorf("unknown key kind %q", kind)
}

// versionPrimitives builds, once per keyset load, a deterministic primitive
// for each enabled key version: primary, the one d already is, first, then
// the others in keyset order. Each is the keyset with that version made
// primary (on a copy), so no key material leaves Tink.
func versionPrimitives(h *keyset.Handle, primary tink.DeterministicAEAD) ([]tink.DeterministicAEAD, string, error) {
	out := []tink.DeterministicAEAD{primary}
	var ids []string
	if p, err := h.Primary(); err == nil {
		ids = append(ids, strconv.FormatUint(uint64(p.KeyID()), 10))
	}
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return nil, "", fmt.Errorf("reading keyset: %w", err)
		}
		if e.IsPrimary() || e.KeyStatus() != keyset.Enabled {
			continue
		}
		m := keyset.NewManagerFromHandle(h)
		if err := m.SetPrimary(e.KeyID()); err != nil {
			return nil, "", fmt.Errorf("key version %d: %w", e.KeyID(), err)
		}
		vh, err := m.Handle()
		if err != nil {
			return nil, "", fmt.Errorf("key version %d: %w", e.KeyID(), err)
		}
		d, err := daead.New(vh)
		if err != nil {
			return nil, "", fmt.Errorf("key version %d is not a deterministic (AES-SIV) key: %w", e.KeyID(), err)
		}
		out = append(out, d)
		ids = append(ids, strconv.FormatUint(uint64(e.KeyID()), 10))
	}
	return out, strings.Join(ids, ","), nil
}

// ColumnCipher encrypts and decrypts the canonical values of one column. It is
// safe for concurrent use.
type ColumnCipher struct {
	rule *policy.ColumnRule
	ad   []byte
	p    primitive
}

// NewColumnCipher builds a cipher for rule from an unwrapped keyset. Most
// callers get ciphers from a Keyring, which caches them.
func NewColumnCipher(h *keyset.Handle, rule *policy.ColumnRule) (*ColumnCipher, error) {
	if h == nil || rule == nil {
		return nil, errors.New("keymap: NewColumnCipher needs a keyset and a rule")
	}
	p, err := newPrimitive(h, rule.Kind)
	if err != nil {
		return nil, err
	}
	return newColumnCipher(p, rule), nil
}

func newColumnCipher(p primitive, rule *policy.ColumnRule) *ColumnCipher {
	return &ColumnCipher{rule: rule, ad: rule.AssociatedData(), p: p}
}

// Rule is the column rule the cipher was built for.
func (c *ColumnCipher) Rule() *policy.ColumnRule { return c.rule }

// Encrypt turns a canonical value into the bytea stored in PostgreSQL.
func (c *ColumnCipher) Encrypt(canonical []byte) ([]byte, error) {
	ct, err := c.p.seal(canonical, c.ad)
	if err != nil {
		return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
	}
	// Tink allocates its own output and offers no append form, so one copy
	// to prefix the header is the floor.
	out := make([]byte, 0, headerLen+len(ct))
	return append(appendHeader(out), ct...), nil
}

// ErrNotDeterministic is returned by Candidates for a column whose key is
// randomized: its ciphertexts of one value differ every time.
var ErrNotDeterministic = errors.New("keymap: candidates exist only for deterministic keys")

// Candidates returns every ciphertext a value of a deterministic column may
// be stored as: its encryption under each enabled version of the key, the
// primary version first. After a rotation a column holds values under
// several versions until reencrypt finishes, and an equality search must
// match any of them. Disabled versions are left out (they do not decrypt
// either). The primitives are built once per keyset load; a call costs one
// encryption per version.
func (c *ColumnCipher) Candidates(canonical []byte) ([][]byte, error) {
	d, ok := c.p.(deterministic)
	if !ok {
		return nil, ErrNotDeterministic
	}
	out := make([][]byte, 0, len(d.versions))
	for _, v := range d.versions {
		ct, err := v.EncryptDeterministically(canonical, c.ad)
		if err != nil {
			return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
		}
		buf := make([]byte, 0, headerLen+len(ct))
		out = append(out, append(appendHeader(buf), ct...))
	}
	return out, nil
}

// KeyVersions names the key versions Candidates encrypts under (Tink key
// ids, primary first; "" for a randomized key): a value computed by
// Candidates is complete while KeyVersions stays the same.
func (c *ColumnCipher) KeyVersions() string {
	if d, ok := c.p.(deterministic); ok {
		return d.ids
	}
	return ""
}

// Versions is the number of enabled key versions a deterministic cipher
// encrypts candidates under (1 for a randomized one, which only ever uses
// its primary).
func (c *ColumnCipher) Versions() int {
	if d, ok := c.p.(deterministic); ok {
		return len(d.versions)
	}
	return 1
}

// Decrypt turns a stored bytea back into the canonical value. Anything that
// is not a ciphertext of this column under this key, or was altered, is an
// error wrapping ErrDecrypt that says nothing about the value.
func (c *ColumnCipher) Decrypt(stored []byte) ([]byte, error) {
	if !IsCiphertext(stored) {
		return nil, fmt.Errorf("%w of %s: not a pgcloak ciphertext", ErrDecrypt, c.rule.Name())
	}
	pt, err := c.p.open(stored[headerLen:], c.ad)
	if err != nil {
		return nil, fmt.Errorf("%w of %s: wrong key, wrong column or altered", ErrDecrypt, c.rule.Name())
	}
	return pt, nil
}
