package keymap

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cmacKeyOf(t testing.TB, key []byte) cmacKey {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return newCMACKey(block)
}

// TestCMACMatchesRFC4493 runs the order PRF's CMAC on RFC 4493's examples
// (section 4), subkeys included.
func TestCMACMatchesRFC4493(t *testing.T) {
	k := cmacKeyOf(t, unhex(t, "2b7e1516 28aed2a6 abf71588 09cf4f3c"))
	scratch := make([]byte, aes.BlockSize)
	var b [16]byte
	k.sub1.put(b[:])
	if got := hex.EncodeToString(b[:]); got != "fbeed618357133667c85e08f7236a8de" {
		t.Errorf("K1 = %s", got)
	}
	k.sub2.put(b[:])
	if got := hex.EncodeToString(b[:]); got != "f7ddac306ae266ccf90bc11ee46d513b" {
		t.Errorf("K2 = %s", got)
	}
	msg := unhex(t, "6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51"+
		"30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710")
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "bb1d6929e95937287fa37d129b756746"},
		{16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{40, "dfa66747de9ae63030ca32611497c827"},
		{64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		k.cmac(scratch, msg[:tc.n]).put(b[:])
		if got := hex.EncodeToString(b[:]); got != tc.want {
			t.Errorf("CMAC of %d bytes = %s, want %s", tc.n, got, tc.want)
		}
	}
}

// TestS2VWithSeveralComponentsMatchesRFC5297 checks the chaining of
// associated-data components that binds an ordered value's term, on RFC
// 5297's nonce-based example (A.2: two associated data and a nonce).
func TestS2VWithSeveralComponentsMatchesRFC5297(t *testing.T) {
	k, err := newSIVKey(unhex(t, "7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f"))
	if err != nil {
		t.Fatal(err)
	}
	scratch := make([]byte, aes.BlockSize)
	st := k.bind(unhex(t, "00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100"))
	st = k.then(scratch, &st, unhex(t, "10203040 50607080 90a0"))
	st = k.then(scratch, &st, unhex(t, "09f91102 9d74e35b d84156c5 635688c0"))
	pt := unhex(t, "74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553")
	ct, err := k.appendSeal(nil, pt, &st)
	if err != nil {
		t.Fatal(err)
	}
	want := "7bdb6e3b432667eb06f4d14bff2fbd0f" +
		"cb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d"
	if got := hex.EncodeToString(ct); got != want {
		t.Fatalf("AES-SIV = %s\nwant      %s", got, want)
	}
	if got, ok := k.open(ct, &st); !ok || !bytes.Equal(got, pt) {
		t.Fatalf("open = %x, %v", got, ok)
	}
}

// termReference computes a CLWW term the slow, obvious way: a whole CMAC
// over M_i for every bit.
func termReference(k *cmacKey, enc []byte) []byte {
	scratch := make([]byte, aes.BlockSize)
	var out []byte
	for i := range 8 * len(enc) {
		j, r := i/8, i%8
		m := append(bytes.Clone(enc[:j]), byte(r), enc[j]&^(0xFF>>r))
		v := k.cmac(scratch, m)
		y := uint32(v.lo)%(1<<31) + uint32(enc[j]>>(7-r)&1)
		out = binary.BigEndian.AppendUint32(out, y)
	}
	return out
}

// TestTermMatchesReference checks the incremental term against whole
// CMACs, at every length up to a few blocks (so M_i ends at, before and one
// byte past block boundaries) and for a long text.
func TestTermMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	k := cmacKeyOf(t, key)
	lengths := []int{3000}
	for n := 1; n <= 50; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		enc := make([]byte, n)
		for i := range enc {
			enc[i] = byte(rng.Uint32())
		}
		got := k.appendTerm([]byte("prefix"), enc)
		if string(got[:6]) != "prefix" {
			t.Fatalf("%d bytes: appendTerm changed dst", n)
		}
		if want := termReference(&k, enc); !bytes.Equal(got[6:], want) {
			t.Fatalf("%d bytes: term differs from the reference", n)
		}
		for i := 6; i < len(got); i += termBytesPerBit {
			if got[i] > 0x80 {
				t.Fatalf("%d bytes: a term block starts with %#x", n, got[i])
			}
		}
	}
}
