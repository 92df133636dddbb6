package keymap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/daead/aessiv"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// Keyset primitives that do what Tink's daead.New and aead.New wrappers do
// for AES-SIV and AES-GCM keysets — encrypt under the primary with its
// output prefix; decrypt by trying the enabled keys whose 5-byte prefix
// matches, in keyset order, then the RAW keys — with the per-key setup done
// once when the keyset is loaded and no allocation per call beyond the
// output. Their ciphertexts are byte for byte Tink's (see
// keysetprim_test.go). A keyset holding anything else falls back to Tink's
// own primitives (newPrimitive).
//
// Raw key bytes are read from the Tink key objects only to expand them
// (then cleared); what stays is the expanded AES keys inside crypto/aes.

// keyIndex is Tink's ciphertext-prefix lookup over a keyset's enabled keys.
type keyIndex struct {
	prefixes []string         // output prefix per key: 5 bytes, or "" for RAW
	primary  int              // index of the primary key
	byPrefix map[string][]int // 5-byte prefix → keys, in keyset order
	raw      []int            // RAW keys, in keyset order
}

func (x *keyIndex) add(prefix []byte, primary bool) {
	i := len(x.prefixes)
	x.prefixes = append(x.prefixes, string(prefix))
	if primary {
		x.primary = i
	}
	if len(prefix) == 0 {
		x.raw = append(x.raw, i)
		return
	}
	if x.byPrefix == nil {
		x.byPrefix = map[string][]int{}
	}
	x.byPrefix[string(prefix)] = append(x.byPrefix[string(prefix)], i)
}

// linearKeys is the keyset size up to which try compares prefixes instead
// of looking them up.
const linearKeys = 8

// try calls open for each key that may have produced ct, in Tink's order,
// with ct stripped of that key's prefix, until one succeeds.
func (x *keyIndex) try(ct []byte, open func(i int, body []byte) ([]byte, bool)) ([]byte, bool) {
	if len(ct) >= tinkPrefixLen && len(x.prefixes) <= linearKeys {
		// A few keys: comparing each prefix, in keyset order, finds the
		// same keys in the same order as the map, without hashing.
		p := ct[:tinkPrefixLen]
		for i, q := range x.prefixes {
			if q == string(p) {
				if pt, ok := open(i, ct[tinkPrefixLen:]); ok {
					return pt, true
				}
			}
		}
	} else if len(ct) >= tinkPrefixLen {
		for _, i := range x.byPrefix[string(ct[:tinkPrefixLen])] {
			if pt, ok := open(i, ct[tinkPrefixLen:]); ok {
				return pt, true
			}
		}
	}
	for _, i := range x.raw {
		if pt, ok := open(i, ct); ok {
			return pt, true
		}
	}
	return nil, false
}

// errNotFast says a keyset is not one the primitives here handle; the caller
// falls back to Tink.
var errNotFast = errors.New("keyset not handled natively")

// enabledEntries returns the enabled entries of h, in keyset order.
func enabledEntries(h *keyset.Handle) ([]*keyset.Entry, error) {
	var out []*keyset.Entry
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("reading keyset: %w", err)
		}
		if e.KeyStatus() == keyset.Enabled {
			out = append(out, e)
		}
	}
	return out, nil
}

// sivKeyset is a deterministic AES-SIV keyset.
type sivKeyset struct {
	keyIndex
	keys []*sivKey
	// order lists the keys Candidates encrypts under: the primary, then
	// the other enabled keys in keyset order.
	order []int
}

// newSIVKeyset reads the AES-SIV keys of h; errNotFast if h holds another
// key type or a key Tink would not use.
func newSIVKeyset(h *keyset.Handle) (*sivKeyset, error) {
	entries, err := enabledEntries(h)
	if err != nil {
		return nil, err
	}
	ks := &sivKeyset{}
	found := false
	for _, e := range entries {
		k, ok := e.Key().(*aessiv.Key)
		// Tink's AES-SIV takes 64-byte keys only.
		if !ok || k.KeyBytes().Len() != 64 {
			return nil, errNotFast
		}
		raw := k.KeyBytes().Data(insecuresecretdataaccess.Token{})
		sk, err := newSIVKey(raw)
		clear(raw)
		if err != nil {
			return nil, errNotFast
		}
		ks.keys = append(ks.keys, sk)
		ks.add(k.OutputPrefix(), e.IsPrimary())
		found = found || e.IsPrimary()
	}
	if !found {
		return nil, errNotFast
	}
	ks.order = append(ks.order, ks.primary)
	for i := range ks.keys {
		if i != ks.primary {
			ks.order = append(ks.order, i)
		}
	}
	return ks, nil
}

// boundSIV is a sivKeyset with S2V's state precomputed for one associated
// data, for each key.
type boundSIV struct {
	ks *sivKeyset
	ad []byte
	st []sivAD
}

func (ks *sivKeyset) bind(ad []byte) *boundSIV {
	b := &boundSIV{ks: ks, ad: bytes.Clone(ad), st: make([]sivAD, len(ks.keys))}
	for i, k := range ks.keys {
		b.st[i] = k.bind(ad)
	}
	return b
}

// forAD returns b if it was bound to ad, else a binding for ad.
func (b *boundSIV) forAD(ad []byte) *boundSIV {
	if bytes.Equal(ad, b.ad) {
		return b
	}
	return b.ks.bind(ad)
}

var errDAEADDecrypt = errors.New("aes-siv: decryption failed")

func (ks *sivKeyset) versions() int { return len(ks.order) }
func (b *boundSIV) versions() int   { return len(b.ks.order) }

// appendSealVersion appends the Tink ciphertext of pt under version v
// (0 is the primary) to dst.
func (b *boundSIV) appendSealVersion(v int, dst, pt, ad []byte) ([]byte, error) {
	b = b.forAD(ad)
	i := b.ks.order[v]
	return b.ks.keys[i].appendSeal(append(dst, b.ks.prefixes[i]...), pt, &b.st[i])
}

func (b *boundSIV) open(ct, ad []byte) ([]byte, error) { return b.appendOpen(nil, ct, ad) }

func (b *boundSIV) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	b = b.forAD(ad)
	pt, ok := b.ks.try(ct, func(i int, body []byte) ([]byte, bool) {
		return b.ks.keys[i].appendOpen(dst, body, &b.st[i])
	})
	if !ok {
		return nil, errDAEADDecrypt
	}
	return pt, nil
}

// gcmKeyset is a randomized AES-GCM keyset (12-byte IV, 16-byte tag, as
// Tink's AES-GCM key manager requires).
type gcmKeyset struct {
	keyIndex
	aeads []cipher.AEAD
}

const (
	gcmIVSize  = 12
	gcmTagSize = 16
	// gcmMaxPlaintext is RFC 5116's limit, which Tink enforces.
	gcmMaxPlaintext = 1<<36 - 31
)

// newGCMKeyset reads the AES-GCM keys of h; errNotFast if h holds another
// key type or parameters.
func newGCMKeyset(h *keyset.Handle) (*gcmKeyset, error) {
	entries, err := enabledEntries(h)
	if err != nil {
		return nil, err
	}
	ks := &gcmKeyset{}
	found := false
	for _, e := range entries {
		k, ok := e.Key().(*aesgcm.Key)
		if !ok {
			return nil, errNotFast
		}
		p, ok := k.Parameters().(*aesgcm.Parameters)
		if !ok || p.IVSizeInBytes() != gcmIVSize || p.TagSizeInBytes() != gcmTagSize ||
			(p.KeySizeInBytes() != 16 && p.KeySizeInBytes() != 32) {
			return nil, errNotFast
		}
		raw := k.KeyBytes().Data(insecuresecretdataaccess.Token{})
		block, err := aes.NewCipher(raw)
		clear(raw)
		if err != nil {
			return nil, errNotFast
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, errNotFast
		}
		ks.aeads = append(ks.aeads, a)
		ks.add(k.OutputPrefix(), e.IsPrimary())
		found = found || e.IsPrimary()
	}
	if !found {
		return nil, errNotFast
	}
	return ks, nil
}

var (
	errGCMTooLong  = errors.New("aes-gcm: plaintext too long")
	errGCMDecrypt  = errors.New("aes-gcm: decryption failed")
	errGCMRandFail = errors.New("aes-gcm: no randomness for the IV")
)

// appendSeal appends prefix || IV || ciphertext || tag, Tink's AES-GCM
// format, to dst; the IV is 12 random bytes.
func (ks *gcmKeyset) appendSeal(dst, pt, ad []byte) ([]byte, error) {
	if uint64(len(pt)) > gcmMaxPlaintext {
		return nil, errGCMTooLong
	}
	dst = append(dst, ks.prefixes[ks.primary]...)
	n := len(dst)
	dst = growTo(dst, n+gcmIVSize)
	iv := dst[n:]
	if _, err := rand.Read(iv); err != nil {
		return nil, errGCMRandFail
	}
	return ks.aeads[ks.primary].Seal(dst, iv, pt, ad), nil
}

func (ks *gcmKeyset) open(ct, ad []byte) ([]byte, error) { return ks.appendOpen(nil, ct, ad) }

func (ks *gcmKeyset) appendOpen(dst, ct, ad []byte) ([]byte, error) {
	pt, ok := ks.try(ct, func(i int, body []byte) ([]byte, bool) {
		if len(body) < gcmIVSize+gcmTagSize {
			return nil, false
		}
		if dst == nil {
			dst = make([]byte, 0, len(body)-gcmIVSize-gcmTagSize)
		}
		// Open clears what it wrote when the tag does not match.
		pt, err := ks.aeads[i].Open(dst, body[:gcmIVSize], body[gcmIVSize:], ad)
		return pt, err == nil
	})
	if !ok {
		return nil, errGCMDecrypt
	}
	return pt, nil
}
