package keymap

import "encoding/binary"

// A stored value is
//
//	magic (4 bytes: 0xC7 'p' 'g' 'c') | format (1 byte) | ...
//
// The magic's first byte is not ASCII, so legacy plaintext bytea rarely
// looks like ciphertext; the format byte says what follows.
//
// Format 0x01, randomized and deterministic keys:
//
//	magic | 0x01 | Tink ciphertext
//
// and the Tink ciphertext itself starts with Tink's 5-byte output prefix
// (0x01 then the big-endian id of the key version that encrypted it).
//
// Format 0x02, ordered keys:
//
//	magic | 0x02 | key id (4 bytes, big-endian) | term | 0x00 | SIV (16 bytes) | C
//
// The key id is the Tink id of the key version. The term is the CLWW order
// term of the value (clww.go; 4 bytes per bit of its order encoding, each
// block's first byte at most 0x80), so that, within one key version, stored
// values sort as bytea in the plaintext's PostgreSQL order. SIV || C is
// AES-SIV (RFC 5297) under the version's key with two associated-data
// components, the rule's associated data and the term, over the canonical
// value: without a Tink prefix, since the key id is already there. Binding
// the term means a term moved to another row makes that row fail to
// decrypt rather than sort as something it is not. The 0x00 ends the term,
// so that the ranges of OrderRanges can bound "all values with this term".
// The term's length is not stored: it follows from the stored length and
// the column's type (orderedTermLen).
const (
	magic0, magic1, magic2, magic3 = 0xC7, 'p', 'g', 'c'
	formatV1                       = 0x01
	formatOrdered                  = 0x02
	headerLen                      = 5

	tinkPrefixLen  = 5
	tinkStartByte  = 0x01 // Tink's TINK output prefix type
	minTinkPayload = 16   // the shorter of the two tags: AES-SIV's synthetic IV

	// orderedHeaderLen is magic, format and key id.
	orderedHeaderLen = headerLen + 4
	// orderedOverhead is what an ordered value stores besides its term
	// and its canonical value.
	orderedOverhead = orderedHeaderLen + 1 + sivOverhead
)

// IsCiphertext reports whether b has the shape of a pgcloak ciphertext, of
// either format. It does not authenticate b; only Decrypt does.
func IsCiphertext(b []byte) bool {
	return isV1(b) || isOrdered(b)
}

func hasMagic(b []byte) bool {
	return len(b) >= headerLen && b[0] == magic0 && b[1] == magic1 && b[2] == magic2 && b[3] == magic3
}

// isV1 reports whether b has the shape of a format 0x01 ciphertext.
func isV1(b []byte) bool {
	return len(b) >= MinCiphertextLen && hasMagic(b) && b[4] == formatV1 && b[headerLen] == tinkStartByte
}

// isOrdered reports whether b has the shape of a format 0x02 ciphertext.
func isOrdered(b []byte) bool {
	return len(b) >= MinOrderedCiphertextLen && hasMagic(b) && b[4] == formatOrdered
}

// KeyID returns the id of the Tink key version a ciphertext was encrypted
// under, for tools that find values still under an old version.
func KeyID(b []byte) (uint32, bool) {
	switch {
	case isV1(b):
		return binary.BigEndian.Uint32(b[headerLen+1 : headerLen+tinkPrefixLen]), true
	case isOrdered(b):
		return binary.BigEndian.Uint32(b[headerLen:orderedHeaderLen]), true
	}
	return 0, false
}

// CiphertextHeader returns the bytes every format 0x01 ciphertext
// (randomized and deterministic keys) starts with, for tools that look for
// ciphertexts in SQL. Ordered ciphertexts start with OrderedPrefix.
func CiphertextHeader() []byte { return appendHeader(nil) }

// appendHeader starts a stored value.
func appendHeader(dst []byte) []byte {
	return append(dst, magic0, magic1, magic2, magic3, formatV1)
}

// CiphertextPrefix returns the bytes every format 0x01 ciphertext
// (randomized and deterministic keys) starts with, Tink's output prefix
// type included, for checks that run in PostgreSQL.
func CiphertextPrefix() []byte { return append(appendHeader(nil), tinkStartByte) }

// OrderedPrefix returns the bytes every ordered (format 0x02) ciphertext
// starts with, for checks that run in PostgreSQL.
func OrderedPrefix() []byte { return appendOrderedHeader(nil) }

// appendOrderedHeader starts an ordered value.
func appendOrderedHeader(dst []byte) []byte {
	return append(dst, magic0, magic1, magic2, magic3, formatOrdered)
}

// MinCiphertextLen is the length of the shortest format 0x01 ciphertext.
const MinCiphertextLen = headerLen + tinkPrefixLen + minTinkPayload

// MinOrderedCiphertextLen is the length of the shortest ordered
// ciphertext: a one-byte order encoding (numeric zero, ±Infinity, NaN;
// the empty text) has a 32-byte term, and the empty text encrypts to the
// synthetic IV alone.
const MinOrderedCiphertextLen = orderedOverhead + 8*termBytesPerBit
