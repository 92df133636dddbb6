package keymap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/pgcloak/pgcloak/policy"
)

func orderedRule(key string, typ policy.LogicalType) *policy.ColumnRule {
	return &policy.ColumnRule{Schema: "public", Table: "t", Column: "c", KeyName: key, Kind: policy.Ordered, Type: typ}
}

// orderedKeysets returns an ordered keyset with one version, and the same
// keyset after a rotation: a new primary, the old version still enabled.
func orderedKeysets(t testing.TB) (before, after *keyset.Handle) {
	t.Helper()
	before, err := keyset.NewHandle(daead.AESSIVKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	m := keyset.NewManagerFromHandle(before)
	id, err := m.Add(daead.AESSIVKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	if after, err = m.Handle(); err != nil {
		t.Fatal(err)
	}
	return before, after
}

func newCipher(t testing.TB, h *keyset.Handle, r *policy.ColumnRule) *ColumnCipher {
	t.Helper()
	c, err := NewColumnCipher(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func primaryID(t testing.TB, h *keyset.Handle) uint32 {
	t.Helper()
	p, err := h.Primary()
	if err != nil {
		t.Fatal(err)
	}
	return p.KeyID()
}

// TestOrderedRoundTrip encrypts edge and random values of every ordered
// type: the stored value has format 0x02, the primary's key id and the
// length the layout says, encrypts the same every time, and decrypts,
// also through the Append forms.
func TestOrderedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	_, h := orderedKeysets(t)
	for _, typ := range policy.OrderedTypes {
		t.Run(string(typ), func(t *testing.T) {
			c := newCipher(t, h, orderedRule("k", typ))
			for _, lit := range orderedSamples(t, rng, typ, 50) {
				pt := canonicalOf(t, typ, lit)
				ct, err := c.Encrypt(pt)
				if err != nil {
					t.Fatalf("%q: %v", lit, err)
				}
				enc, _ := orderBytes(typ, pt)
				if want := orderedOverhead + termLen(len(enc)) + len(pt); len(ct) != want {
					t.Fatalf("%q: %d stored bytes, want %d", lit, len(ct), want)
				}
				if id, ok := KeyID(ct); !ok || id != primaryID(t, h) || !IsCiphertext(ct) ||
					!bytes.HasPrefix(ct, OrderedPrefix()) || len(ct) < MinOrderedCiphertextLen {
					t.Fatalf("%q: stored %x is not an ordered ciphertext of the primary", lit, ct[:16])
				}
				if again, _ := c.Encrypt(pt); !bytes.Equal(again, ct) {
					t.Fatalf("%q: two encryptions differ", lit)
				}
				if got, err := c.Decrypt(ct); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%q: Decrypt = %x, %v", lit, got, err)
				}
				app, err := c.AppendEncrypt([]byte("head"), pt)
				if err != nil || string(app[:4]) != "head" || !bytes.Equal(app[4:], ct) {
					t.Fatalf("%q: AppendEncrypt = %x, %v", lit, app, err)
				}
				if got, err := c.AppendDecrypt([]byte("head"), ct); err != nil || string(got[:4]) != "head" || !bytes.Equal(got[4:], pt) {
					t.Fatalf("%q: AppendDecrypt = %x, %v", lit, got, err)
				}
			}
		})
	}
}

// termOf is the term of a stored ordered value.
func termOf(t testing.TB, typ policy.LogicalType, stored []byte) []byte {
	t.Helper()
	n, ok := orderedTermLen(typ, len(stored))
	if !ok {
		t.Fatalf("%d bytes is no stored %s", len(stored), typ)
	}
	return stored[orderedHeaderLen : orderedHeaderLen+n]
}

// TestOrderedCiphertextsSortLikeValues checks in Go what
// TestOrderedCiphertextsSortInPostgres checks in PostgreSQL: stored values
// compare as their plaintexts do, values PostgreSQL calls equal share the
// term, and only equal canonical forms store equal bytes.
func TestOrderedCiphertextsSortLikeValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	h, _ := orderedKeysets(t)
	for _, typ := range policy.OrderedTypes {
		t.Run(string(typ), func(t *testing.T) {
			c := newCipher(t, h, orderedRule("k", typ))
			var pts, cts [][]byte
			for _, lit := range orderedSamples(t, rng, typ, 150) {
				pt := canonicalOf(t, typ, lit)
				ct, err := c.Encrypt(pt)
				if err != nil {
					t.Fatal(err)
				}
				pts, cts = append(pts, pt), append(cts, ct)
			}
			for i := range cts {
				for j := range cts {
					want := pgCompare(t, typ, pts[i], pts[j])
					got := sign(bytes.Compare(cts[i], cts[j]))
					sameTerm := bytes.Equal(termOf(t, typ, cts[i]), termOf(t, typ, cts[j]))
					switch {
					case want != 0 && got != want:
						t.Fatalf("%s vs %s: stored values compare %d, PostgreSQL %d", textOf(t, typ, pts[i]), textOf(t, typ, pts[j]), got, want)
					case want == 0 && !sameTerm:
						t.Fatalf("%s and %s are equal but their terms differ", textOf(t, typ, pts[i]), textOf(t, typ, pts[j]))
					case (got == 0) != bytes.Equal(pts[i], pts[j]):
						t.Fatalf("%x and %x: stored values equal %v", pts[i], pts[j], got == 0)
					}
				}
			}
		})
	}
}

// TestOrderedEqualValuesShareTheTerm pins the cases PostgreSQL calls
// equal although their canonical forms differ.
func TestOrderedEqualValuesShareTheTerm(t *testing.T) {
	h, _ := orderedKeysets(t)
	for _, tc := range []struct {
		typ  policy.LogicalType
		a, b string
	}{
		{policy.TypeNumeric, "1.5", "1.50"},
		{policy.TypeNumeric, "0", "0.00"},
		{policy.TypeNumeric, "-7", "-7.000"},
		{policy.TypeFloat8, "0", "-0"},
	} {
		c := newCipher(t, h, orderedRule("k", tc.typ))
		pa, pb := canonicalOf(t, tc.typ, tc.a), canonicalOf(t, tc.typ, tc.b)
		ca, _ := c.Encrypt(pa)
		cb, _ := c.Encrypt(pb)
		if bytes.Equal(ca, cb) || !bytes.Equal(termOf(t, tc.typ, ca), termOf(t, tc.typ, cb)) {
			t.Errorf("%s %s and %s: want one term, two stored values", tc.typ, tc.a, tc.b)
		}
		if got, err := c.Decrypt(cb); err != nil || !bytes.Equal(got, pb) {
			t.Errorf("%s %s: Decrypt = %x, %v (display scale lost?)", tc.typ, tc.b, got, err)
		}
	}
}

// holds is x op c given sign(x - c).
func holds(op OrderOp, cmp int) bool {
	switch op {
	case OrderLess:
		return cmp < 0
	case OrderLessEqual:
		return cmp <= 0
	case OrderGreater:
		return cmp > 0
	case OrderGreaterEqual:
		return cmp >= 0
	case OrderEqual:
		return cmp == 0
	}
	panic("unknown op")
}

// TestOrderRangesHoldExactlyTheMatchingValues stores values under both
// versions of a rotated key and checks, for every constant and comparison,
// that a stored value lies in its version's range exactly when the
// comparison holds (PostgreSQL's semantics: NaN equal to NaN and above
// everything, -0 = 0, 1.5 = 1.50) and in no other version's range.
func TestOrderRangesHoldExactlyTheMatchingValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	_, h := orderedKeysets(t)
	for _, typ := range policy.OrderedTypes {
		t.Run(string(typ), func(t *testing.T) {
			c := newCipher(t, h, orderedRule("k", typ))
			if c.Versions() != 2 {
				t.Fatalf("Versions = %d", c.Versions())
			}
			lits := orderedSamples(t, rng, typ, 60)
			if typ == policy.TypeFloat8 {
				lits = append(lits, "-0", "NaN")
			}
			var pts, cts [][]byte
			var vers []int
			for _, lit := range lits {
				pt := canonicalOf(t, typ, lit)
				cands, err := c.Candidates(pt)
				if err != nil {
					t.Fatal(err)
				}
				v := rng.IntN(len(cands))
				pts, cts, vers = append(pts, pt), append(cts, cands[v]), append(vers, v)
			}
			for _, cst := range pts {
				for op := OrderLess; op <= OrderEqual; op++ {
					ranges, err := c.OrderRanges(cst, op)
					if err != nil {
						t.Fatal(err)
					}
					if len(ranges) != 2 {
						t.Fatalf("%d ranges", len(ranges))
					}
					for i, ct := range cts {
						for k, r := range ranges {
							in := bytes.Compare(r.Lo, ct) <= 0 && bytes.Compare(ct, r.Hi) < 0
							want := k == vers[i] && holds(op, pgCompare(t, typ, pts[i], cst))
							if in != want {
								t.Fatalf("x = %s (version %d), c = %s, op %d: in range %d is %v",
									textOf(t, typ, pts[i]), vers[i], textOf(t, typ, cst), op, k, in)
							}
						}
					}
				}
			}
		})
	}
}

// TestOrderRangesOfAnotherKindFail checks ErrNotOrdered and bad input.
func TestOrderRangesOfAnotherKindFail(t *testing.T) {
	h, _ := orderedKeysets(t)
	d := newCipher(t, h, &policy.ColumnRule{Schema: "public", Table: "t", Column: "d", KeyName: "k", Kind: policy.Deterministic, Type: policy.TypeInt8})
	if _, err := d.OrderRanges(make([]byte, 8), OrderLess); !errors.Is(err, ErrNotOrdered) {
		t.Errorf("deterministic cipher: %v, want ErrNotOrdered", err)
	}
	o := newCipher(t, h, orderedRule("k", policy.TypeInt8))
	if _, err := o.OrderRanges(make([]byte, 4), OrderLess); err == nil {
		t.Error("a 4-byte int8 gave ranges")
	}
	if _, err := o.OrderRanges(make([]byte, 8), OrderEqual+1); err == nil {
		t.Error("an unknown comparison gave ranges")
	}
}

// TestOrderedCandidatesAndVersions checks that an ordered key reports its
// versions as a deterministic one does, and that its candidates are what
// each version stores when it is primary.
func TestOrderedCandidatesAndVersions(t *testing.T) {
	before, after := orderedKeysets(t)
	r := orderedRule("k", policy.TypeText)
	old, cur := newCipher(t, before, r), newCipher(t, after, r)
	oldID, newID := primaryID(t, before), primaryID(t, after)
	if got, want := cur.KeyVersions(), fmt.Sprintf("%d,%d", newID, oldID); got != want {
		t.Errorf("KeyVersions = %q, want %q", got, want)
	}
	if got := old.KeyVersions(); got != strconv.FormatUint(uint64(oldID), 10) || old.Versions() != 1 {
		t.Errorf("one version: KeyVersions %q, Versions %d", got, old.Versions())
	}
	cands, err := cur.Candidates([]byte("x"))
	if err != nil || len(cands) != 2 {
		t.Fatalf("Candidates = %d, %v", len(cands), err)
	}
	if !bytes.Equal(cands[0], seal(t, cur, "x")) || !bytes.Equal(cands[1], seal(t, old, "x")) {
		t.Error("candidates are not the values each version stores")
	}
	for i, ct := range cands {
		if pt, err := cur.Decrypt(ct); err != nil || string(pt) != "x" {
			t.Errorf("candidate %d: Decrypt = %q, %v", i, pt, err)
		}
	}
	if _, err := old.Decrypt(cands[0]); !errors.Is(err, ErrDecrypt) {
		t.Errorf("a value of a version the keyset lacks: %v", err)
	}
}

// TestOrderedDecryptRefuses alters stored values in the ways a DBA could,
// and decrypts with ciphers of the wrong key name, kind and type: every
// attempt fails with ErrDecrypt.
func TestOrderedDecryptRefuses(t *testing.T) {
	h, _ := orderedKeysets(t)
	c := newCipher(t, h, orderedRule("k", policy.TypeInt8))
	a := seal(t, c, "\x00\x00\x00\x00\x00\x00\x00\x01")
	b := seal(t, c, "\x00\x00\x00\x00\x00\x00\x01\x00")
	tl := termLen(8)
	swapped := append(append(bytes.Clone(a[:orderedHeaderLen]), b[orderedHeaderLen:orderedHeaderLen+tl]...), a[orderedHeaderLen+tl:]...)
	flip := func(i int) []byte { x := bytes.Clone(a); x[i] ^= 1; return x }

	det := newCipher(t, h, &policy.ColumnRule{Schema: "public", Table: "t", Column: "d", KeyName: "k", Kind: policy.Deterministic, Type: policy.TypeInt8})
	gcm, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	rnd := newCipher(t, gcm, &policy.ColumnRule{Schema: "public", Table: "t", Column: "r", KeyName: "r", Kind: policy.Randomized, Type: policy.TypeInt8})
	detCT := seal(t, det, "\x00\x00\x00\x00\x00\x00\x00\x01")

	for _, tc := range []struct {
		name   string
		c      *ColumnCipher
		stored []byte
	}{
		{"another value's term", c, swapped},
		{"a term bit flipped", c, flip(orderedHeaderLen + 3)},
		{"the separator altered", c, flip(orderedHeaderLen + tl)},
		{"a synthetic IV bit flipped", c, flip(orderedHeaderLen + tl + 1)},
		{"a tail bit flipped", c, flip(len(a) - 1)},
		{"another key id", c, flip(orderedHeaderLen - 1)},
		{"the format byte altered", c, flip(4)},
		{"truncated", c, a[:len(a)-1]},
		{"extended", c, append(bytes.Clone(a), 0)},
		{"the empty value", c, nil},
		{"another key name", newCipher(t, h, orderedRule("other", policy.TypeInt8)), a},
		{"a date column", newCipher(t, h, orderedRule("k", policy.TypeDate)), a},
		{"a deterministic cipher of the same keyset", det, a},
		{"a randomized cipher", rnd, a},
		{"a deterministic value", c, detCT},
	} {
		if pt, err := tc.c.Decrypt(tc.stored); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: Decrypt = %x, %v; want ErrDecrypt", tc.name, pt, err)
		}
	}
}

// TestOrderedKeyThroughStoreAndKeyring creates, rotates and uses an
// ordered key the way pgcloak does: through a LocalStore and a Keyring.
func TestOrderedKeyThroughStoreAndKeyring(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCreate(t, s, "o", policy.Ordered)
	r := orderedRule("o", policy.TypeDate)
	v1 := encryptWith(t, s, r, "\x00\x00\x00\x05")
	if err := s.Rotate(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	kr := NewKeyring(s, time.Minute)
	c, err := kr.Cipher(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Versions() != 2 {
		t.Errorf("Versions = %d after a rotation", c.Versions())
	}
	if pt, err := c.Decrypt(v1); err != nil || string(pt) != "\x00\x00\x00\x05" {
		t.Errorf("a value of the first version: %x, %v", pt, err)
	}
	if ki := keyInfo(t, s, "o"); ki.Kind != policy.Ordered || ki.Versions != 2 {
		t.Errorf("KeyInfo %+v", ki)
	}
}

// TestOrderedCipherNeedsAnOrderedType checks what NewColumnCipher refuses.
func TestOrderedCipherNeedsAnOrderedType(t *testing.T) {
	h, _ := orderedKeysets(t)
	if _, err := NewColumnCipher(h, orderedRule("k", policy.TypeBool)); err == nil {
		t.Error("an ordered bool cipher was made")
	}
	gcm, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewColumnCipher(gcm, orderedRule("k", policy.TypeInt8)); err == nil {
		t.Error("an AES-GCM keyset made an ordered cipher")
	}
}

// TestOrderedStoredSizes pins the sizes reported in the documentation.
func TestOrderedStoredSizes(t *testing.T) {
	h, _ := orderedKeysets(t)
	for _, tc := range []struct {
		typ  policy.LogicalType
		pt   string
		want int
	}{
		{policy.TypeInt8, "\x00\x00\x00\x00\x00\x00\x00\x01", 290},
		{policy.TypeDate, "\x00\x00\x00\x01", 158},
		{policy.TypeText, benchValue, 1114},
		{policy.TypeText, "", MinOrderedCiphertextLen},
	} {
		ct := seal(t, newCipher(t, h, orderedRule("k", tc.typ)), tc.pt)
		if len(ct) != tc.want {
			t.Errorf("%s of %d bytes: %d stored bytes, want %d", tc.typ, len(tc.pt), len(ct), tc.want)
		}
	}
}

func BenchmarkOrderedEncrypt(b *testing.B) {
	h, _ := orderedKeysets(b)
	for _, tc := range orderedBenchValues {
		b.Run(tc.name, func(b *testing.B) {
			c := newCipher(b, h, orderedRule("k", tc.typ))
			pt := canonicalOf(b, tc.typ, tc.lit)
			dst := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.AppendEncrypt(dst, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOrderedDecrypt(b *testing.B) {
	h, _ := orderedKeysets(b)
	for _, tc := range orderedBenchValues {
		b.Run(tc.name, func(b *testing.B) {
			c := newCipher(b, h, orderedRule("k", tc.typ))
			ct, err := c.Encrypt(canonicalOf(b, tc.typ, tc.lit))
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.AppendDecrypt(dst, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOrderRanges(b *testing.B) {
	_, h := orderedKeysets(b)
	c := newCipher(b, h, orderedRule("k", policy.TypeInt8))
	pt := canonicalOf(b, policy.TypeInt8, "123456789")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.OrderRanges(pt, OrderLess); err != nil {
			b.Fatal(err)
		}
	}
}

var orderedBenchValues = []struct {
	name string
	typ  policy.LogicalType
	lit  string
}{
	{"int8", policy.TypeInt8, "1234567890123"},
	{"timestamp", policy.TypeTimestamp, "2024-05-06 07:08:09.123456"},
	{"text", policy.TypeText, benchValue},
	{"numeric", policy.TypeNumeric, "12345.6789"},
	{"text_1KB", policy.TypeText, strings.Repeat("x", 1000)},
}

// TestOrderedValuesHaveALengthLimit: an order encoding longer than
// MaxOrderEncoding (1,023 bytes of text) is refused with SQLSTATE 54000,
// to store and to search, before its 32-bytes-per-byte term is computed.
func TestOrderedValuesHaveALengthLimit(t *testing.T) {
	before, _ := orderedKeysets(t)
	c := newCipher(t, before, orderedRule("k", policy.TypeText))
	if _, err := c.Encrypt([]byte(strings.Repeat("a", MaxOrderEncoding-1))); err != nil {
		t.Fatalf("the longest allowed text: %v", err)
	}
	long := []byte(strings.Repeat("a", MaxOrderEncoding))
	_, encErr := c.Encrypt(long)
	_, rangeErr := c.OrderRanges(long, OrderLess)
	for what, err := range map[string]error{"Encrypt": encErr, "OrderRanges": rangeErr} {
		var ce *ConvError
		if !errors.As(err, &ce) || ce.SQLState() != "54000" || strings.Contains(err.Error(), "aaaa") {
			t.Errorf("%s of %d bytes: %v, want a 54000 error that does not show the value", what, len(long), err)
		}
	}
}
