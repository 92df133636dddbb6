package keymap

import (
	"crypto/aes"
	"encoding/binary"
)

// The order term of an ordered value is the order-preserving form of the
// order-revealing encryption of Chenette, Lewi, Weis and Wu ("Practical
// Order-Revealing Encryption with Limited Leakage", FSE 2016), over the
// bits of the value's order encoding (order.go), most significant first.
// Bit i becomes the 4-byte block
//
//	y_i = (PRF(k, i, bits before i) mod 2^31) + b_i     (uint32 big-endian)
//
// so y_i is in [0, 2^31] and its first byte is at most 0x80. Two terms
// agree up to the first bit where the encodings differ; there the PRF
// values are the same and the bits differ, so the terms compare as the
// encodings do, bytewise. What a term reveals is that order, equality, and
// the index of the first differing bit; nothing else about the bits.
//
// The PRF is AES-CMAC (RFC 4493) over M_i = enc[0:i/8] || byte(i%8) ||
// byte(enc[i/8] & top i%8 bits), which is injective in (i, bits before i):
// the length fixes i/8, the next byte i%8, the last byte the bits of enc's
// byte i/8 before bit i. All M_i of one value share the full 16-byte blocks
// of enc they start with, so the CBC chain over those is computed once and
// each bit costs one AES block (two when M_i spills one byte into a next
// block), not a CMAC over the whole prefix.

// termBytesPerBit is the size of one term block.
const termBytesPerBit = 4

// termLen is the length of the term of an order encoding of n bytes.
func termLen(n int) int { return 8 * termBytesPerBit * n }

// appendTerm appends the CLWW term of enc under the PRF key k to dst.
func (k *cmacKey) appendTerm(dst, enc []byte) []byte {
	n := len(dst)
	size := termLen(len(enc))
	// The block past the term is the block cipher's scratch, cleared
	// before returning.
	dst = growTo(dst, n+size+aes.BlockSize)
	out, scratch := dst[n:n+size], dst[n+size:]
	var chain block128 // CBC-MAC state over enc's first `blocks` blocks
	blocks := 0
	// tail is M_i after the chained blocks: at most 15 bytes of enc, the
	// bit index and the masked byte, so 17 bytes at most.
	var tail [2 * aes.BlockSize]byte
	for j, c := range enc {
		for blocks < j/aes.BlockSize {
			chain = k.encrypt(scratch, chain.xor(loadBlock(enc[blocks*aes.BlockSize:])))
			blocks++
		}
		t := copy(tail[:], enc[blocks*aes.BlockSize:j])
		m := t + 2 // length of the tail
		if m < aes.BlockSize {
			tail[m] = 0x80
			clear(tail[m+1 : aes.BlockSize])
		}
		for r := range 8 {
			tail[t] = byte(r)
			tail[t+1] = c &^ (0xFF >> r)
			var v block128
			switch {
			case m < aes.BlockSize:
				v = k.encrypt(scratch, chain.xor(loadBlock(tail[:])).xor(k.sub2))
			case m == aes.BlockSize:
				v = k.encrypt(scratch, chain.xor(loadBlock(tail[:])).xor(k.sub1))
			default:
				x := k.encrypt(scratch, chain.xor(loadBlock(tail[:])))
				v = k.encrypt(scratch, x.xor(padBlock(tail[aes.BlockSize:m])).xor(k.sub2))
			}
			bit := uint32(c>>(7-r)) & 1
			binary.BigEndian.PutUint32(out[termBytesPerBit*(8*j+r):], uint32(v.lo)&(1<<31-1)+bit)
		}
	}
	clear(scratch)
	clear(tail[:])
	return dst[:n+size]
}
