package keymap

import (
	"errors"
	"fmt"

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

type deterministic struct{ d tink.DeterministicAEAD }

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
		return deterministic{d}, nil
	}
	return nil, fmt.Errorf("unknown key kind %q", kind)
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
