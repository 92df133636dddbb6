package keymap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"math"
)

// AES-SIV (RFC 5297) with one associated-data component, as Tink's
// DeterministicAEAD computes it (daead/subtle.AESSIV), but with everything
// that depends only on the key, or on the key and the associated data, done
// once instead of per call:
//
//   - the two AES block ciphers (S2V's CMAC key and CTR's key) are expanded
//     once per key;
//   - the CMAC subkeys K1, K2 and dbl(CMAC(0^128)) are computed once per key;
//   - dbl(CMAC(0^128)) XOR CMAC(AD), the S2V state before the message, is
//     computed once per (key, associated data) — a column's associated data
//     is fixed — so a call runs CMAC over the message only, then CTR.
//
// A call allocates nothing but its output. The CMAC chaining value lives in
// two uint64s and goes through the output buffer (already on the heap) only
// to be encrypted, since a slice handed to cipher.Block escapes.

// cmacKey is one AES-CMAC key (RFC 4493): the expanded block cipher and
// the subkeys K1, K2 as big-endian (hi, lo) halves. S2V uses it, and so
// does the order PRF of ordered keys.
type cmacKey struct {
	mac        cipher.Block
	sub1, sub2 block128
}

// newCMACKey computes the subkeys of mac.
func newCMACKey(mac cipher.Block) cmacKey {
	var buf [aes.BlockSize]byte
	mac.Encrypt(buf[:], buf[:]) // L = AES(K, 0^128)
	k := cmacKey{mac: mac}
	k.sub1 = loadBlock(buf[:]).dbl()
	k.sub2 = k.sub1.dbl()
	clear(buf[:])
	return k
}

// sivKey is one AES-SIV key. It holds the expanded AES keys and values
// derived from them, never the raw key bytes.
type sivKey struct {
	cmacKey              // K1 of RFC 5297 (first half of the key): S2V's CMAC
	ctr     cipher.Block // K2 (second half): CTR
	// d0 is dbl(CMAC(0^128)) as big-endian (hi, lo) halves.
	d0 block128
}

// block128 is a 16-byte block as two big-endian halves.
type block128 struct{ hi, lo uint64 }

func loadBlock(b []byte) block128 {
	return block128{binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])}
}

func (x block128) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:8], x.hi)
	binary.BigEndian.PutUint64(b[8:16], x.lo)
}

func (x block128) xor(y block128) block128 { return block128{x.hi ^ y.hi, x.lo ^ y.lo} }

// dbl multiplies by x in GF(2^128) (RFC 5297 section 2.3), in constant time.
func (x block128) dbl() block128 {
	carry := x.hi >> 63
	return block128{x.hi<<1 | x.lo>>63, x.lo<<1 ^ (0x87 & -carry)}
}

// sivOverhead is what AES-SIV adds to a plaintext: the synthetic IV.
const sivOverhead = aes.BlockSize

// errSIVKeySize is returned for a key that is not 2×128, 2×192 or 2×256 bits.
var errSIVKeySize = errors.New("aes-siv: key must be 32, 48 or 64 bytes")

// newSIVKey expands key (K1 || K2). It does not keep key; the caller should
// clear it.
func newSIVKey(key []byte) (*sivKey, error) {
	switch len(key) {
	case 32, 48, 64:
	default:
		return nil, errSIVKeySize
	}
	half := len(key) / 2
	mac, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	k := &sivKey{cmacKey: newCMACKey(mac), ctr: ctr}
	var buf [aes.BlockSize]byte
	// CMAC(0^128): one complete block, so X = 0 XOR 0^128 XOR K1sub.
	k.encrypt(buf[:], k.sub1)
	k.d0 = loadBlock(buf[:]).dbl()
	clear(buf[:])
	return k, nil
}

// encrypt returns AES(K, x), using scratch (16 bytes) as the buffer the
// block cipher works on.
func (k *cmacKey) encrypt(scratch []byte, x block128) block128 {
	x.put(scratch)
	k.mac.Encrypt(scratch, scratch)
	return loadBlock(scratch)
}

// sivAD is S2V's state after the associated data, for one key and one
// associated data: d = dbl(CMAC(0^128)) XOR CMAC(AD), and dd = dbl(d), which
// short messages use.
type sivAD struct{ d, dd block128 }

// bind computes the S2V state for ad.
func (k *sivKey) bind(ad []byte) sivAD {
	scratch := make([]byte, aes.BlockSize)
	d := k.d0.xor(k.cmac(scratch, ad))
	clear(scratch)
	return sivAD{d: d, dd: d.dbl()}
}

// then returns the S2V state after one more associated-data component
// (RFC 5297 section 2.4: D = dbl(D) XOR CMAC(S_i)), using scratch (16
// bytes). Ordered values bind their order term this way.
func (k *sivKey) then(scratch []byte, s *sivAD, component []byte) sivAD {
	d := s.dd.xor(k.cmac(scratch, component))
	return sivAD{d: d, dd: d.dbl()}
}

// cmac computes AES-CMAC(K, m) (RFC 4493), using scratch (16 bytes).
func (k *cmacKey) cmac(scratch, m []byte) block128 {
	var x block128
	for len(m) > aes.BlockSize {
		x = k.encrypt(scratch, x.xor(loadBlock(m)))
		m = m[aes.BlockSize:]
	}
	if len(m) == aes.BlockSize {
		return k.encrypt(scratch, x.xor(loadBlock(m)).xor(k.sub1))
	}
	return k.encrypt(scratch, x.xor(padBlock(m)).xor(k.sub2))
}

// padBlock is m (shorter than a block) followed by 0x80 and zeros.
func padBlock(m []byte) block128 {
	var b [aes.BlockSize]byte
	copy(b[:], m)
	b[len(m)] = 0x80
	return loadBlock(b[:])
}

// s2v computes the synthetic IV of m under state s (RFC 5297 section 2.4,
// from the message on), using scratch (16 bytes).
func (k *sivKey) s2v(scratch, m []byte, s *sivAD) block128 {
	n := len(m)
	if n < aes.BlockSize {
		// T = dbl(D) XOR pad(M): one complete block.
		return k.encrypt(scratch, s.dd.xor(padBlock(m)).xor(k.sub1))
	}
	// T = M xorend D, then CMAC(T). Blocks before the last 16 bytes of M
	// are M's own; the last one or two blocks see D.
	var x block128
	tail := n - aes.BlockSize // D is XORed into m[tail:]
	i := 0
	for ; i+aes.BlockSize <= tail; i += aes.BlockSize {
		x = k.encrypt(scratch, x.xor(loadBlock(m[i:])))
	}
	// The remaining r = n-i bytes (16..31) hold all of D.
	var t [2 * aes.BlockSize]byte
	r := copy(t[:], m[i:])
	var dBytes [aes.BlockSize]byte
	s.d.put(dBytes[:])
	subtle.XORBytes(t[r-aes.BlockSize:r], t[r-aes.BlockSize:r], dBytes[:])
	if r > aes.BlockSize {
		x = k.encrypt(scratch, x.xor(loadBlock(t[:])))
		rest := t[aes.BlockSize:r]
		return k.encrypt(scratch, x.xor(padBlock(rest)).xor(k.sub2))
	}
	return k.encrypt(scratch, x.xor(loadBlock(t[:])).xor(k.sub1))
}

// ctrThreshold is the message length from which CTR goes through
// cipher.NewCTR (whose setup copies the key schedule and allocates, but
// which encrypts several blocks at a time) instead of block by block.
const ctrThreshold = 256

// xorKeyStream XORs src with AES-CTR(K2) from the counter Q (the synthetic
// IV v with its bits 63 and 31 cleared, RFC 5297 section 2.5) into dst (len(dst) == len(src)), using
// scratch (16 bytes, not overlapping dst or src).
func (k *sivKey) xorKeyStream(dst, src, scratch []byte, v block128) {
	q := block128{v.hi, v.lo &^ (1<<63 | 1<<31)}
	if len(src) >= ctrThreshold {
		q.put(scratch)
		cipher.NewCTR(k.ctr, scratch).XORKeyStream(dst, src)
		return
	}
	for len(src) > 0 {
		q.put(scratch)
		k.ctr.Encrypt(scratch, scratch)
		n := subtle.XORBytes(dst, src, scratch)
		dst, src = dst[n:], src[n:]
		// The counter is 128-bit big-endian.
		q.lo++
		if q.lo == 0 {
			q.hi++
		}
	}
}

var errSIVTooLong = errors.New("aes-siv: plaintext too long")

// appendSeal appends SIV || CTR(plaintext) to dst.
func (k *sivKey) appendSeal(dst, plaintext []byte, s *sivAD) ([]byte, error) {
	if len(plaintext) > math.MaxInt-sivOverhead-len(dst) {
		return nil, errSIVTooLong
	}
	start := len(dst)
	out := growTo(dst, start+sivOverhead+len(plaintext))
	sivSlot := out[start : start+sivOverhead]
	v := k.s2v(sivSlot, plaintext, s)
	// The SIV slot is CTR's scratch until the SIV goes in last.
	k.xorKeyStream(out[start+sivOverhead:], plaintext, sivSlot, v)
	v.put(sivSlot)
	return out, nil
}

// open decrypts SIV || C and checks the SIV; it returns the plaintext in a
// new slice, or false.
func (k *sivKey) open(ciphertext []byte, s *sivAD) ([]byte, bool) {
	pt, ok := k.appendOpen(nil, ciphertext, s)
	if !ok {
		return nil, false
	}
	return pt[:len(pt):len(pt)], true
}

// appendOpen decrypts SIV || C, checks the SIV and appends the plaintext to
// dst (which must not overlap ciphertext), or returns false with nothing of
// the plaintext left in dst's capacity.
func (k *sivKey) appendOpen(dst, ciphertext []byte, s *sivAD) ([]byte, bool) {
	if len(ciphertext) < sivOverhead {
		return nil, false
	}
	n := len(ciphertext) - sivOverhead
	start := len(dst)
	// 16 bytes past the plaintext are the scratch block; they are cleared
	// and cut off before returning.
	buf := growTo(dst, start+n+aes.BlockSize)
	pt, scratch := buf[start:start+n:start+n], buf[start+n:]
	v := loadBlock(ciphertext)
	k.xorKeyStream(pt, ciphertext[sivOverhead:], scratch, v)
	k.s2v(scratch, pt, s).put(scratch)
	ok := subtle.ConstantTimeCompare(scratch, ciphertext[:sivOverhead]) == 1
	clear(scratch)
	if !ok {
		clear(pt)
		return nil, false
	}
	return buf[:start+n], true
}

// growTo extends dst to length n, reallocating if its capacity is short.
func growTo(dst []byte, n int) []byte {
	if n <= cap(dst) {
		return dst[:n]
	}
	out := make([]byte, n)
	copy(out, dst)
	return out
}
