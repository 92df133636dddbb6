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

// primitive is the one thing a ColumnCipher needs from a keyset: an AEAD or
// deterministic AEAD behind a common shape. It is either the native AES-GCM
// or AES-SIV keyset of keysetprim.go, or, for a keyset those do not handle,
// Tink's own primitive. Ciphertexts are Tink's either way: output prefix,
// then the raw primitive's ciphertext.
type primitive interface {
	// appendSeal appends the Tink ciphertext of pt to dst.
	appendSeal(dst, pt, ad []byte) ([]byte, error)
	// appendOpen appends the plaintext of a Tink ciphertext to dst (which
	// must not overlap ct). On failure nothing of the plaintext is left in
	// dst's spare capacity.
	appendOpen(dst, ct, ad []byte) ([]byte, error)
}

// primitiveOverhead is the most a Tink ciphertext adds to its plaintext:
// the 5-byte output prefix, then AES-GCM's IV and tag (AES-SIV's synthetic
// IV is shorter). It sizes output buffers; it is not a bound anyone relies
// on.
const primitiveOverhead = tinkPrefixLen + gcmIVSize + gcmTagSize

// adBinder is a primitive that precomputes work for one associated data;
// bindAD returns a primitive that is faster for that associated data (and
// still correct for any other).
type adBinder interface {
	bindAD(ad []byte) primitive
}

// tinkAEAD is Tink's AEAD, for a randomized keyset gcmKeyset does not handle.
type tinkAEAD struct{ a tink.AEAD }

func (p tinkAEAD) appendSeal(dst, pt, ad []byte) ([]byte, error) {
	ct, err := p.a.Encrypt(pt, ad)
	if err != nil {
		return nil, err
	}
	return append(dst, ct...), nil
}
func (p tinkAEAD) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	pt, err := p.a.Decrypt(ct, ad)
	if err != nil {
		return nil, err
	}
	return append(dst, pt...), nil
}

// daeadVersions is a deterministic keyset: it encrypts under one of its
// enabled versions (0 is the primary) and decrypts under any.
type daeadVersions interface {
	versions() int
	appendSealVersion(v int, dst, pt, ad []byte) ([]byte, error)
	appendOpen(dst, ct, ad []byte) ([]byte, error)
}

// deterministic is a deterministic keyset: it encrypts under the primary
// version and decrypts under any; Candidates encrypts under each enabled
// version, the primary first.
type deterministic struct {
	k daeadVersions
	// ids names the versions (Tink key ids, in the same order).
	ids string
}

func (p deterministic) appendSeal(dst, pt, ad []byte) ([]byte, error) {
	return p.k.appendSealVersion(0, dst, pt, ad)
}
func (p deterministic) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	return p.k.appendOpen(dst, ct, ad)
}

func (p deterministic) bindAD(ad []byte) primitive {
	if s, ok := p.k.(*sivKeyset); ok {
		return deterministic{k: s.bind(ad), ids: p.ids}
	}
	return p
}

// The unbound native keyset binds per call: correct, but the fast path is
// the one a ColumnCipher binds once.
func (ks *sivKeyset) appendSealVersion(v int, dst, pt, ad []byte) ([]byte, error) {
	return ks.bind(ad).appendSealVersion(v, dst, pt, ad)
}
func (ks *sivKeyset) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	return ks.bind(ad).appendOpen(dst, ct, ad)
}
func (ks *sivKeyset) open(ct, ad []byte) ([]byte, error) { return ks.appendOpen(nil, ct, ad) }

// tinkDAEAD is Tink's deterministic AEAD, for a keyset sivKeyset does not
// handle: vs holds, for each enabled version (primary first), the keyset
// with that version made primary; vs[0] is the keyset as it is.
type tinkDAEAD struct {
	vs []tink.DeterministicAEAD
}

func (p tinkDAEAD) versions() int { return len(p.vs) }
func (p tinkDAEAD) appendSealVersion(v int, dst, pt, ad []byte) ([]byte, error) {
	ct, err := p.vs[v].EncryptDeterministically(pt, ad)
	if err != nil {
		return nil, err
	}
	return append(dst, ct...), nil
}
func (p tinkDAEAD) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	pt, err := p.vs[0].DecryptDeterministically(ct, ad)
	if err != nil {
		return nil, err
	}
	return append(dst, pt...), nil
}

// keyPrimitive is a keyset loaded for its key kind: a primitive whose
// ciphertexts are stored in format 0x01 (randomized and deterministic
// keys), or an ordered keyset, which writes format 0x02 itself.
type keyPrimitive struct {
	p   primitive
	ord *orderedKeyset
}

// newPrimitive builds the primitive for kind from a keyset. A keyset of
// another kind fails here, not at the first row.
func newPrimitive(h *keyset.Handle, kind policy.KeyKind) (keyPrimitive, error) {
	if kind == policy.Ordered {
		if _, err := daead.New(h); err != nil {
			return keyPrimitive{}, fmt.Errorf("keyset is not an ordered (AES-SIV) keyset: %w", err)
		}
		ks, err := newOrderedKeyset(h)
		if err != nil {
			return keyPrimitive{}, err
		}
		return keyPrimitive{ord: ks}, nil
	}
	p, err := newTinkPrimitive(h, kind)
	if err != nil {
		return keyPrimitive{}, err
	}
	return keyPrimitive{p: p}, nil
}

// newTinkPrimitive builds the primitive of a randomized or deterministic
// keyset.
func newTinkPrimitive(h *keyset.Handle, kind policy.KeyKind) (primitive, error) {
	switch kind {
	case policy.Randomized:
		// Tink first: it checks the keyset the way it always has, and its
		// error is the one to report.
		a, err := aead.New(h)
		if err != nil {
			return nil, fmt.Errorf("keyset is not a randomized (AES-GCM) keyset: %w", err)
		}
		if ks, err := newGCMKeyset(h); err == nil {
			return ks, nil
		} else if !errors.Is(err, errNotFast) {
			return nil, err
		}
		return tinkAEAD{a}, nil
	case policy.Deterministic:
		d, err := daead.New(h)
		if err != nil {
			return nil, fmt.Errorf("keyset is not a deterministic (AES-SIV) keyset: %w", err)
		}
		ids, err := versionIDs(h)
		if err != nil {
			return nil, err
		}
		if ks, err := newSIVKeyset(h); err == nil {
			return deterministic{k: ks, ids: ids}, nil
		} else if !errors.Is(err, errNotFast) {
			return nil, err
		}
		versions, err := versionPrimitives(h, d)
		if err != nil {
			return nil, err
		}
		return deterministic{k: tinkDAEAD{versions}, ids: ids}, nil
	}
	return nil, fmt.Errorf("unknown key kind %q", kind)
}

// versionIDs names a keyset's enabled versions, the primary first, then the
// others in keyset order.
func versionIDs(h *keyset.Handle) (string, error) {
	var ids []string
	if p, err := h.Primary(); err == nil {
		ids = append(ids, strconv.FormatUint(uint64(p.KeyID()), 10))
	}
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return "", fmt.Errorf("reading keyset: %w", err)
		}
		if e.IsPrimary() || e.KeyStatus() != keyset.Enabled {
			continue
		}
		ids = append(ids, strconv.FormatUint(uint64(e.KeyID()), 10))
	}
	return strings.Join(ids, ","), nil
}

// versionPrimitives builds, once per keyset load, Tink's deterministic
// primitive for each enabled key version, in versionIDs' order. Each is the
// keyset with that version made primary (on a copy).
func versionPrimitives(h *keyset.Handle, primary tink.DeterministicAEAD) ([]tink.DeterministicAEAD, error) {
	out := []tink.DeterministicAEAD{primary}
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("reading keyset: %w", err)
		}
		if e.IsPrimary() || e.KeyStatus() != keyset.Enabled {
			continue
		}
		m := keyset.NewManagerFromHandle(h)
		if err := m.SetPrimary(e.KeyID()); err != nil {
			return nil, fmt.Errorf("key version %d: %w", e.KeyID(), err)
		}
		vh, err := m.Handle()
		if err != nil {
			return nil, fmt.Errorf("key version %d: %w", e.KeyID(), err)
		}
		d, err := daead.New(vh)
		if err != nil {
			return nil, fmt.Errorf("key version %d is not a deterministic (AES-SIV) key: %w", e.KeyID(), err)
		}
		out = append(out, d)
	}
	return out, nil
}

// ColumnCipher encrypts and decrypts the canonical values of one column. It is
// safe for concurrent use.
type ColumnCipher struct {
	rule *policy.ColumnRule
	ad   []byte
	// Exactly one is set: p for randomized and deterministic keys (format
	// 0x01, a Tink ciphertext behind the header), ord for ordered keys
	// (format 0x02). A nil check rather than one more interface between
	// them keeps the format 0x01 path as it was.
	p   primitive
	ord *boundOrdered
}

// NewColumnCipher builds a cipher for rule from an unwrapped keyset. Most
// callers get ciphers from a Keyring, which caches them.
func NewColumnCipher(h *keyset.Handle, rule *policy.ColumnRule) (*ColumnCipher, error) {
	if h == nil || rule == nil {
		return nil, errors.New("keymap: NewColumnCipher needs a keyset and a rule")
	}
	if rule.Kind == policy.Ordered && !policy.OrderedType(rule.Type) {
		return nil, fmt.Errorf("keymap: an ordered key cannot encrypt %s values", rule.Type)
	}
	p, err := newPrimitive(h, rule.Kind)
	if err != nil {
		return nil, err
	}
	return newColumnCipher(p, rule), nil
}

func newColumnCipher(kp keyPrimitive, rule *policy.ColumnRule) *ColumnCipher {
	ad := rule.AssociatedData()
	if kp.ord != nil {
		return &ColumnCipher{rule: rule, ad: ad, ord: kp.ord.bind(rule)}
	}
	p := kp.p
	if b, ok := p.(adBinder); ok {
		p = b.bindAD(ad)
	}
	return &ColumnCipher{rule: rule, ad: ad, p: p}
}

// Rule is the column rule the cipher was built for.
func (c *ColumnCipher) Rule() *policy.ColumnRule { return c.rule }

// Encrypt turns a canonical value into the bytea stored in PostgreSQL.
func (c *ColumnCipher) Encrypt(canonical []byte) ([]byte, error) {
	if c.ord != nil {
		// An ordered value's size depends on its encoding; appendEncrypt
		// sizes the buffer itself.
		return c.AppendEncrypt(nil, canonical)
	}
	return c.AppendEncrypt(make([]byte, 0, headerLen+primitiveOverhead+len(canonical)), canonical)
}

// AppendEncrypt appends the stored bytea of a canonical value to dst, for
// callers that encrypt many values into one reused buffer (COPY). dst must
// not overlap canonical.
func (c *ColumnCipher) AppendEncrypt(dst, canonical []byte) ([]byte, error) {
	if c.ord != nil {
		out, err := c.ord.appendEncrypt(0, dst, canonical)
		var tooLong *ConvError
		if errors.As(err, &tooLong) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
		}
		return out, nil
	}
	out, err := c.p.appendSeal(appendHeader(dst), canonical, c.ad)
	if err != nil {
		return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
	}
	return out, nil
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
// encryption per version. Ordered keys are deterministic too: their
// candidates are the whole stored values, order term included.
func (c *ColumnCipher) Candidates(canonical []byte) ([][]byte, error) {
	if c.ord != nil {
		out := make([][]byte, len(c.ord.ks.vs))
		for v := range out {
			ct, err := c.ord.appendEncrypt(v, nil, canonical)
			if err != nil {
				return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
			}
			out[v] = ct
		}
		return out, nil
	}
	d, ok := c.p.(deterministic)
	if !ok {
		return nil, ErrNotDeterministic
	}
	out := make([][]byte, 0, d.k.versions())
	for v := range d.k.versions() {
		buf := appendHeader(make([]byte, 0, headerLen+primitiveOverhead+len(canonical)))
		ct, err := d.k.appendSealVersion(v, buf, canonical, c.ad)
		if err != nil {
			return nil, fmt.Errorf("keymap: encrypting a value of %s failed", c.rule.Name())
		}
		out = append(out, ct)
	}
	return out, nil
}

// KeyVersions names the key versions Candidates encrypts under (Tink key
// ids, primary first, for deterministic and ordered keys; "" for a
// randomized key): a value computed by Candidates, or ranges computed by
// OrderRanges, are complete while KeyVersions stays the same.
func (c *ColumnCipher) KeyVersions() string {
	if c.ord != nil {
		return c.ord.ks.ids
	}
	if d, ok := c.p.(deterministic); ok {
		return d.ids
	}
	return ""
}

// PrimaryKeyID is the Tink id of the key version new values are
// encrypted under, as KeyID reads it from their ciphertexts.
func (c *ColumnCipher) PrimaryKeyID() (uint32, error) {
	if c.ord != nil {
		// Not by encrypting a value, as below: an ordered cipher encodes
		// only values of its column's type, and no one value fits all.
		return c.ord.ks.vs[0].id, nil
	}
	ct, err := c.Encrypt(nil)
	if err != nil {
		return 0, err
	}
	id, ok := KeyID(ct)
	if !ok {
		return 0, errors.New("keymap: the key's ciphertexts have an unknown layout")
	}
	return id, nil
}

// Versions is the number of enabled key versions a deterministic or
// ordered cipher encrypts candidates under (1 for a randomized one, which only ever uses
// its primary).
func (c *ColumnCipher) Versions() int {
	if c.ord != nil {
		return len(c.ord.ks.vs)
	}
	if d, ok := c.p.(deterministic); ok {
		return d.k.versions()
	}
	return 1
}

// Decrypt turns a stored bytea back into the canonical value. Anything that
// is not a ciphertext of this column under this key, or was altered, is an
// error wrapping ErrDecrypt that says nothing about the value.
func (c *ColumnCipher) Decrypt(stored []byte) ([]byte, error) {
	return c.AppendDecrypt(nil, stored)
}

// AppendDecrypt appends the canonical value of a stored bytea to dst, for
// callers that decrypt many values into one reused buffer (COPY). dst must
// not overlap stored. Errors are Decrypt's; on an error nothing of the
// value is appended.
func (c *ColumnCipher) AppendDecrypt(dst, stored []byte) ([]byte, error) {
	if c.ord != nil {
		pt, ok := c.ord.appendDecrypt(dst, stored)
		if !ok {
			return nil, fmt.Errorf("%w of %s: not an ordered ciphertext of this column under this key, or altered", ErrDecrypt, c.rule.Name())
		}
		return pt, nil
	}
	if !isV1(stored) {
		// An ordered (format 0x02) value lands here too: it is not one
		// this key kind writes.
		return nil, fmt.Errorf("%w of %s: not a pgcloak ciphertext of a randomized or deterministic key", ErrDecrypt, c.rule.Name())
	}
	pt, err := c.p.appendOpen(dst, stored[headerLen:], c.ad)
	if err != nil {
		return nil, fmt.Errorf("%w of %s: wrong key, wrong column or altered", ErrDecrypt, c.rule.Name())
	}
	return pt, nil
}
