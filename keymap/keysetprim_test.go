package keymap

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/daead/aessiv"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Wycheproof vectors (testdata/wycheproof, from github.com/c2sp/wycheproof
// testvectors_v1, Apache 2.0; see the README there).

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type wycheproofCase struct {
	ID      int      `json:"tcId"`
	Comment string   `json:"comment"`
	Key     hexBytes `json:"key"`
	IV      hexBytes `json:"iv"`
	AAD     hexBytes `json:"aad"`
	Msg     hexBytes `json:"msg"`
	CT      hexBytes `json:"ct"`
	Tag     hexBytes `json:"tag"`
	Result  string   `json:"result"`
}

type wycheproofFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		KeySize int              `json:"keySize"`
		IVSize  int              `json:"ivSize"`
		TagSize int              `json:"tagSize"`
		Tests   []wycheproofCase `json:"tests"`
	} `json:"testGroups"`
}

func readWycheproof(t *testing.T, name string) *wycheproofFile {
	t.Helper()
	data, err := os.ReadFile("testdata/wycheproof/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

func TestSIVWycheproof(t *testing.T) {
	f := readWycheproof(t, "aes_siv_cmac_test.json")
	ran, viaKeyset := 0, 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			name := fmt.Sprintf("%d/%d %s", g.KeySize, tc.ID, tc.Comment)
			k, err := newSIVKey(tc.Key)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			st := k.bind(tc.AAD)
			pt, ok := k.open(tc.CT, &st)
			switch tc.Result {
			case "valid":
				ct, err := k.appendSeal([]byte("prefix"), tc.Msg, &st)
				if err != nil || !bytes.Equal(ct, append([]byte("prefix"), tc.CT...)) {
					t.Errorf("%s: seal = %x, %v; want %x", name, ct, err, tc.CT)
				}
				if !ok || !bytes.Equal(pt, tc.Msg) {
					t.Errorf("%s: open = %x, %v; want %x", name, pt, ok, tc.Msg)
				}
			case "invalid":
				if ok {
					t.Errorf("%s: open accepted an invalid ciphertext", name)
				}
			default:
				t.Fatalf("%s: result %q", name, tc.Result)
			}
			if len(tc.Key) == 64 {
				// Tink's key size: the same vector through a keyset, for
				// the native keyset and for Tink.
				sivVectorThroughKeysets(t, name, tc)
				viaKeyset++
			}
			ran++
		}
	}
	if ran != f.NumberOfTests {
		t.Errorf("ran %d vectors, the file has %d", ran, f.NumberOfTests)
	}
	t.Logf("%d AES-SIV-CMAC vectors, %d of them also through keysets (native and Tink)", ran, viaKeyset)
}

func sivVectorThroughKeysets(t *testing.T, name string, tc wycheproofCase) {
	t.Helper()
	h := rawAESSIVHandle(t, tc.Key)
	ks, err := newSIVKeyset(h)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := daead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	refPT, refErr := ref.DecryptDeterministically(tc.CT, tc.AAD)
	pt, err := ks.bind(tc.AAD).open(tc.CT, tc.AAD)
	if tc.Result == "invalid" {
		if err == nil || refErr == nil {
			t.Errorf("%s: keyset accepted an invalid ciphertext (native %v, Tink %v)", name, err, refErr)
		}
		return
	}
	if err != nil || refErr != nil || !bytes.Equal(pt, tc.Msg) || !bytes.Equal(refPT, tc.Msg) {
		t.Errorf("%s: keyset open: native %x, %v; Tink %x, %v", name, pt, err, refPT, refErr)
	}
	ct, err := ks.appendSealVersion(0, nil, tc.Msg, tc.AAD)
	refCT, refErr := ref.EncryptDeterministically(tc.Msg, tc.AAD)
	if err != nil || refErr != nil || !bytes.Equal(ct, tc.CT) || !bytes.Equal(refCT, tc.CT) {
		t.Errorf("%s: keyset seal: native %x, %v; Tink %x, %v", name, ct, err, refCT, refErr)
	}
}

// TestGCMWycheproof checks Go's AES-GCM as gcmKeyset sets it up (12-byte
// IV, 16-byte tag) on Wycheproof's vectors of that shape.
func TestGCMWycheproof(t *testing.T) {
	f := readWycheproof(t, "aes_gcm_test.json")
	ran := 0
	for _, g := range f.TestGroups {
		if g.IVSize != 8*gcmIVSize || g.TagSize != 8*gcmTagSize || (g.KeySize != 128 && g.KeySize != 256) {
			continue
		}
		for _, tc := range g.Tests {
			name := fmt.Sprintf("%d/%d %s", g.KeySize, tc.ID, tc.Comment)
			a := gcmFromKey(t, tc.Key)
			body := append(append(bytes.Clone(tc.IV), tc.CT...), tc.Tag...)
			pt, err := a.Open(nil, body[:gcmIVSize], body[gcmIVSize:], tc.AAD)
			switch tc.Result {
			case "valid":
				if ct := a.Seal(nil, tc.IV, tc.Msg, tc.AAD); !bytes.Equal(ct, body[gcmIVSize:]) {
					t.Errorf("%s: seal = %x; want %x", name, ct, body[gcmIVSize:])
				}
				if err != nil || !bytes.Equal(pt, tc.Msg) {
					t.Errorf("%s: open = %x, %v; want %x", name, pt, err, tc.Msg)
				}
			case "invalid":
				if err == nil {
					t.Errorf("%s: open accepted an invalid ciphertext", name)
				}
			}
			ran++
		}
	}
	if ran < 100 {
		t.Errorf("ran only %d vectors", ran)
	}
	t.Logf("%d AES-GCM vectors (12-byte IV, 16-byte tag, 128/256-bit keys)", ran)
}

// gcmFromKey builds the AEAD newGCMKeyset would, from a raw key.
func gcmFromKey(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	ks, err := newGCMKeyset(rawAESGCMHandle(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return ks.aeads[0]
}

// rawAESGCMHandle is a one-key keyset (NO_PREFIX) holding key.
func rawAESGCMHandle(t *testing.T, key []byte) *keyset.Handle {
	t.Helper()
	p, err := aesgcm.NewParameters(aesgcm.ParametersOpts{
		KeySizeInBytes: len(key), IVSizeInBytes: gcmIVSize, TagSizeInBytes: gcmTagSize, Variant: aesgcm.VariantNoPrefix,
	})
	if err != nil {
		t.Fatal(err)
	}
	k, err := aesgcm.NewKey(secretdata.NewBytesFromData(key, insecuresecretdataaccess.Token{}), 0, p)
	if err != nil {
		t.Fatal(err)
	}
	return handleOf(t, k)
}

// rawAESSIVHandle is a one-key keyset (NO_PREFIX) holding a 64-byte key.
func rawAESSIVHandle(t *testing.T, key []byte) *keyset.Handle {
	t.Helper()
	p, err := aessiv.NewParameters(len(key), aessiv.VariantNoPrefix)
	if err != nil {
		t.Fatal(err)
	}
	k, err := aessiv.NewKey(secretdata.NewBytesFromData(key, insecuresecretdataaccess.Token{}), 0, p)
	if err != nil {
		t.Fatal(err)
	}
	return handleOf(t, k)
}

func handleOf(t *testing.T, k key.Key) *keyset.Handle {
	t.Helper()
	m := keyset.NewManager()
	id, err := m.AddKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	h, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// --- cross-checks against Tink ---

// rotatedHandle returns a keyset of tmpl with n keys, the primary chosen at
// random, one non-primary key disabled when there are 3 or more, plus a RAW
// key when raw is set.
func rotatedHandle(t *testing.T, rng *rand.Rand, tmpl *tinkpb.KeyTemplate, n int, raw *tinkpb.KeyTemplate) *keyset.Handle {
	t.Helper()
	m := keyset.NewManager()
	var ids []uint32
	for range n {
		id, err := m.Add(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if raw != nil {
		id, err := m.Add(raw)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	primary := ids[rng.IntN(len(ids))]
	if err := m.SetPrimary(primary); err != nil {
		t.Fatal(err)
	}
	if len(ids) >= 3 {
		for _, id := range ids {
			if id != primary {
				if err := m.Disable(id); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	h, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// withPrimary returns h with key id made primary.
func withPrimary(t *testing.T, h *keyset.Handle, id uint32) *keyset.Handle {
	t.Helper()
	m := keyset.NewManagerFromHandle(h)
	if err := m.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	vh, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	return vh
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randLen favours the lengths where block handling changes.
func randLen(rng *rand.Rand) int {
	switch rng.IntN(4) {
	case 0:
		return rng.IntN(48)
	case 1:
		return 16*(1+rng.IntN(20)) + rng.IntN(3) - 1
	case 2:
		return ctrThreshold - 20 + rng.IntN(40)
	default:
		return rng.IntN(2000)
	}
}

func flipBit(rng *rand.Rand, b []byte) []byte {
	c := bytes.Clone(b)
	c[rng.IntN(len(c))] ^= 1 << rng.IntN(8)
	return c
}

// TestSIVKeysetMatchesTink: for random keysets (rotated: several keys, a
// random primary, a disabled key, sometimes a RAW key), plaintexts and
// associated data, the native keyset's ciphertext equals Tink's byte for
// byte under every enabled version, each decrypts the other's, ciphertexts
// of a non-primary version decrypt, and altered ciphertexts fail in both.
func TestSIVKeysetMatchesTink(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keysets, values := 40, 50
	if testing.Short() {
		keysets = 10
	}
	checked := 0
	for ki := range keysets {
		var raw *tinkpb.KeyTemplate
		if ki%4 == 3 {
			raw = daead.AESSIVKeyTemplate()
			raw.OutputPrefixType = tinkpb.OutputPrefixType_RAW
		}
		h := rotatedHandle(t, rng, daead.AESSIVKeyTemplate(), 1+ki%4, raw)
		ks, err := newSIVKeyset(h)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := daead.New(h)
		if err != nil {
			t.Fatal(err)
		}
		// Tink primitives with each enabled version made primary, in
		// Candidates' order.
		var versions []tink.DeterministicAEAD
		for _, i := range ks.order {
			e := enabledEntryAt(t, h, i)
			d, err := daead.New(withPrimary(t, h, e.KeyID()))
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, d)
		}
		for range values {
			ad := randBytes(rng, rng.IntN(40))
			pt := randBytes(rng, randLen(rng))
			b := ks.bind(ad)
			for v, ver := range versions {
				want, err := ver.EncryptDeterministically(pt, ad)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range []daeadVersions{b, ks} {
					got, err := p.appendSealVersion(v, nil, pt, ad)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("keyset %d version %d, %d-byte value: native %x, %v; Tink %x", ki, v, len(pt), got, err, want)
					}
				}
				// Tink's full keyset decrypts every version's ciphertext;
				// so does ours.
				if back, err := ref.DecryptDeterministically(want, ad); err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("Tink does not decrypt version %d: %v", v, err)
				}
				if back, err := b.open(want, ad); err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("keyset %d: native does not decrypt version %d's ciphertext: %v", ki, v, err)
				}
				bad := flipBit(rng, want)
				if _, err := b.open(bad, ad); err == nil {
					t.Fatalf("keyset %d: native decrypted an altered ciphertext", ki)
				}
				if _, err := ref.DecryptDeterministically(bad, ad); err == nil {
					t.Fatalf("keyset %d: Tink decrypted an altered ciphertext", ki)
				}
				if _, err := b.open(want, append(bytes.Clone(ad), 0)); err == nil {
					t.Fatalf("keyset %d: native decrypted under other associated data", ki)
				}
				if len(want) > 0 {
					if _, err := b.open(want[:len(want)-1], ad); err == nil {
						t.Fatalf("keyset %d: native decrypted a truncated ciphertext", ki)
					}
				}
				checked++
			}
		}
	}
	t.Logf("%d AES-SIV ciphertexts equal to Tink's", checked)
}

// enabledEntryAt returns the i-th enabled entry of h.
func enabledEntryAt(t *testing.T, h *keyset.Handle, i int) *keyset.Entry {
	t.Helper()
	es, err := enabledEntries(h)
	if err != nil {
		t.Fatal(err)
	}
	return es[i]
}

// TestGCMKeysetMatchesTink: AES-GCM is randomized, so the check is that each
// side decrypts the other's ciphertexts, under rotated keysets, that the
// native one has Tink's shape (primary's prefix, 12-byte IV, tag), and that
// altered ciphertexts fail in both.
func TestGCMKeysetMatchesTink(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for ki := range 30 {
		var raw *tinkpb.KeyTemplate
		if ki%4 == 3 {
			raw = aead.AES128GCMKeyTemplate()
			raw.OutputPrefixType = tinkpb.OutputPrefixType_RAW
		}
		tmpl := aead.AES256GCMKeyTemplate()
		if ki%3 == 1 {
			tmpl = aead.AES128GCMKeyTemplate()
		}
		h := rotatedHandle(t, rng, tmpl, 1+ki%4, raw)
		ks, err := newGCMKeyset(h)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := aead.New(h)
		if err != nil {
			t.Fatal(err)
		}
		// Ciphertexts of every enabled version, made by Tink.
		var versions []tink.AEAD
		es, err := enabledEntries(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			a, err := aead.New(withPrimary(t, h, e.KeyID()))
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, a)
		}
		for range 40 {
			ad := randBytes(rng, rng.IntN(40))
			pt := randBytes(rng, randLen(rng))
			got, err := ks.appendSeal([]byte{9, 9}, pt, ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:2], []byte{9, 9}) {
				t.Fatal("appendSeal changed dst")
			}
			got = got[2:]
			prefix := ks.prefixes[ks.primary]
			if len(got) != len(prefix)+gcmIVSize+len(pt)+gcmTagSize || !bytes.HasPrefix(got, []byte(prefix)) {
				t.Fatalf("ciphertext %x does not have Tink's layout", got)
			}
			if back, err := ref.Decrypt(got, ad); err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("keyset %d: Tink does not decrypt the native ciphertext: %v", ki, err)
			}
			for _, ver := range versions {
				ct, err := ver.Encrypt(pt, ad)
				if err != nil {
					t.Fatal(err)
				}
				if back, err := ks.open(ct, ad); err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("keyset %d: native does not decrypt Tink's ciphertext: %v", ki, err)
				}
				bad := flipBit(rng, ct)
				if _, err := ks.open(bad, ad); err == nil {
					t.Fatalf("keyset %d: native decrypted an altered ciphertext", ki)
				}
				if _, err := ref.Decrypt(bad, ad); err == nil {
					t.Fatalf("keyset %d: Tink decrypted an altered ciphertext", ki)
				}
				if _, err := ks.open(ct[:len(ct)-1], ad); err == nil {
					t.Fatalf("keyset %d: native decrypted a truncated ciphertext", ki)
				}
				checked++
			}
		}
	}
	t.Logf("%d AES-GCM ciphertexts cross-decrypted with Tink", checked)
}

// TestNativePrimitivesChosen: keysets pgcloak makes use the native
// primitives, and a column cipher binds the deterministic one to its
// associated data.
func TestNativePrimitivesChosen(t *testing.T) {
	for _, tt := range []struct {
		tmpl *tinkpb.KeyTemplate
		kind string
	}{
		{daead.AESSIVKeyTemplate(), "deterministic"},
		{aead.AES256GCMKeyTemplate(), "randomized"},
	} {
		h, err := keyset.NewHandle(tt.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewColumnCipher(h, rule("t", "c", "k", policy.KeyKind(tt.kind)))
		if err != nil {
			t.Fatal(err)
		}
		switch p := c.p.(type) {
		case deterministic:
			if _, ok := p.k.(*boundSIV); !ok {
				t.Errorf("%s: primitive %T, want the bound native one", tt.kind, p.k)
			}
		case *gcmKeyset:
		default:
			t.Errorf("%s: primitive %T, want a native one", tt.kind, p)
		}
	}
}

// TestKeyIndexLargeKeyset decrypts under every version of keysets past
// linearKeys, where try looks prefixes up in the map instead of comparing
// them, and under the small ones, where it compares.
func TestKeyIndexLargeKeyset(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{linearKeys - 1, linearKeys + 3} {
		h := rotatedHandle(t, rng, daead.AESSIVKeyTemplate(), n, nil)
		ks, err := newSIVKeyset(h)
		if err != nil {
			t.Fatal(err)
		}
		gh := rotatedHandle(t, rng, aead.AES128GCMKeyTemplate(), n, nil)
		gs, err := newGCMKeyset(gh)
		if err != nil {
			t.Fatal(err)
		}
		es, _ := enabledEntries(h)
		for _, e := range es {
			d, err := daead.New(withPrimary(t, h, e.KeyID()))
			if err != nil {
				t.Fatal(err)
			}
			ct, _ := d.EncryptDeterministically([]byte("v"), []byte("ad"))
			if pt, err := ks.open(ct, []byte("ad")); err != nil || string(pt) != "v" {
				t.Fatalf("%d keys: SIV version %d: %q, %v", n, e.KeyID(), pt, err)
			}
		}
		gsEntries, _ := enabledEntries(gh)
		for _, e := range gsEntries {
			a, err := aead.New(withPrimary(t, gh, e.KeyID()))
			if err != nil {
				t.Fatal(err)
			}
			ct, _ := a.Encrypt([]byte("v"), []byte("ad"))
			if pt, err := gs.appendOpen([]byte("x"), ct, []byte("ad")); err != nil || string(pt) != "xv" {
				t.Fatalf("%d keys: GCM version %d: %q, %v", n, e.KeyID(), pt, err)
			}
		}
	}
}
