package keymap

import "encoding/binary"

// A stored value is
//
//	magic (4 bytes: 0xC7 'p' 'g' 'c') | format version (1 byte) | Tink ciphertext
//
// and the Tink ciphertext itself starts with Tink's 5-byte output prefix
// (0x01 then the big-endian id of the key version that encrypted it). The
// magic's first byte is not ASCII, so legacy plaintext bytea rarely looks
// like ciphertext; the version byte lets the layout change later.
const (
	magic0, magic1, magic2, magic3 = 0xC7, 'p', 'g', 'c'
	formatV1                       = 0x01
	headerLen                      = 5

	tinkPrefixLen  = 5
	tinkStartByte  = 0x01 // Tink's TINK output prefix type
	minTinkPayload = 16   // the shorter of the two tags: AES-SIV's synthetic IV
)

// IsCiphertext reports whether b has the shape of a pgcloak ciphertext. It
// does not authenticate b; only Decrypt does.
func IsCiphertext(b []byte) bool {
	return len(b) >= headerLen+tinkPrefixLen+minTinkPayload &&
		b[0] == magic0 && b[1] == magic1 && b[2] == magic2 && b[3] == magic3 &&
		b[4] == formatV1 && b[headerLen] == tinkStartByte
}

// KeyID returns the id of the Tink key version a ciphertext was encrypted
// under, for tools that find values still under an old version.
func KeyID(b []byte) (uint32, bool) {
	if !IsCiphertext(b) {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[headerLen+1 : headerLen+tinkPrefixLen]), true
}

// CiphertextHeader returns the bytes every stored ciphertext starts with,
// for tools that look for ciphertexts in SQL.
func CiphertextHeader() []byte { return appendHeader(nil) }

// appendHeader starts a stored value.
func appendHeader(dst []byte) []byte {
	return append(dst, magic0, magic1, magic2, magic3, formatV1)
}

// CiphertextPrefix returns the bytes every stored ciphertext starts with,
// Tink's output prefix type included, for checks that run in PostgreSQL.
func CiphertextPrefix() []byte { return append(appendHeader(nil), tinkStartByte) }

// MinCiphertextLen is the length of the shortest stored ciphertext.
const MinCiphertextLen = headerLen + tinkPrefixLen + minTinkPayload
