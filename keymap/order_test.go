package keymap

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgcloak/pgcloak/policy"
)

// utcText is the session state the ordered tests read and print values in.
var utcText = &TextContext{Location: time.UTC}

// canonicalOf reads a text literal of t as the proxy would.
func canonicalOf(t testing.TB, typ policy.LogicalType, lit string) []byte {
	t.Helper()
	c, err := CodecFor(typ).Canonical(TextFormat, []byte(lit), utcText)
	if err != nil {
		t.Fatalf("%s %q: %v", typ, lit, err)
	}
	return c
}

// textOf prints a canonical value of t as PostgreSQL would.
func textOf(t testing.TB, typ policy.LogicalType, canonical []byte) string {
	t.Helper()
	b, err := CodecFor(typ).AppendText(nil, canonical, utcText)
	if err != nil {
		t.Fatalf("%s %x: %v", typ, canonical, err)
	}
	return string(b)
}

// pgCompare compares two canonical values of t as PostgreSQL's btree
// comparison does, worked out from the canonical forms alone.
func pgCompare(t testing.TB, typ policy.LogicalType, a, b []byte) int {
	t.Helper()
	switch typ {
	case policy.TypeInt2:
		return cmp.Compare(int16(binary.BigEndian.Uint16(a)), int16(binary.BigEndian.Uint16(b)))
	case policy.TypeInt4, policy.TypeDate:
		return cmp.Compare(int32(binary.BigEndian.Uint32(a)), int32(binary.BigEndian.Uint32(b)))
	case policy.TypeInt8, policy.TypeTimestamp, policy.TypeTimestamptz:
		return cmp.Compare(int64(binary.BigEndian.Uint64(a)), int64(binary.BigEndian.Uint64(b)))
	case policy.TypeFloat8:
		// float8_cmp: NaN equals NaN and is above everything; -0 == 0.
		x, y := math.Float64frombits(binary.BigEndian.Uint64(a)), math.Float64frombits(binary.BigEndian.Uint64(b))
		switch {
		case math.IsNaN(x) && math.IsNaN(y):
			return 0
		case math.IsNaN(x):
			return 1
		case math.IsNaN(y):
			return -1
		}
		return cmp.Compare(x, y)
	case policy.TypeNumeric:
		return numericCompare(t, a, b)
	case policy.TypeText:
		return bytes.Compare(a, b)
	}
	t.Fatalf("no comparison for %s", typ)
	return 0
}

// numericCompare is cmp_numerics: -Infinity < finite < Infinity < NaN,
// finite values by exact value, whatever their display scale. It works in
// decimal (value = ±0.d1d2… × 10^exp), not in the encoding's base 10000.
func numericCompare(t testing.TB, a, b []byte) int {
	type key struct {
		class, sign, exp int // class: 0 -Inf, 1 finite, 2 +Inf, 3 NaN
		digits           string
	}
	keyOf := func(c []byte) key {
		v, err := decodeNumeric(c)
		if err != nil {
			t.Fatalf("numeric %x: %v", c, err)
		}
		switch v.sign {
		case numericNInf:
			return key{class: 0}
		case numericPInf:
			return key{class: 2}
		case numericNaN:
			return key{class: 3}
		}
		var ds strings.Builder
		for _, d := range v.digits {
			fmt.Fprintf(&ds, "%04d", d)
		}
		digits, exp := ds.String(), 4*(v.weight+1)
		for digits != "" && digits[0] == '0' {
			digits, exp = digits[1:], exp-1
		}
		digits = strings.TrimRight(digits, "0")
		switch {
		case digits == "":
			return key{class: 1}
		case v.sign == numericNeg:
			return key{class: 1, sign: -1, exp: exp, digits: digits}
		}
		return key{class: 1, sign: 1, exp: exp, digits: digits}
	}
	x, y := keyOf(a), keyOf(b)
	if c := cmp.Compare(x.class, y.class); c != 0 || x.class != 1 {
		return c
	}
	if c := cmp.Compare(x.sign, y.sign); c != 0 || x.sign == 0 {
		return c
	}
	// Same sign: compare magnitudes, then flip for negatives.
	m := cmp.Compare(x.exp, y.exp)
	if m == 0 {
		m = strings.Compare(x.digits, y.digits)
	}
	return m * x.sign
}

// sign is -1, 0 or 1.
func sign(n int) int { return cmp.Compare(n, 0) }

// orderedEdgeLiterals are, per type, text literals at the edges of its
// order: extremes, infinities, zeros and values that differ in a last digit
// or byte.
var orderedEdgeLiterals = map[policy.LogicalType][]string{
	policy.TypeInt2: {"-32768", "-32767", "-256", "-255", "-1", "0", "1", "127", "128", "255", "256", "32766", "32767"},
	policy.TypeInt4: {"-2147483648", "-2147483647", "-65536", "-1", "0", "1", "65535", "65536", "2147483646", "2147483647"},
	policy.TypeInt8: {"-9223372036854775808", "-9223372036854775807", "-4294967296", "-1", "0", "1", "4294967296",
		"9223372036854775806", "9223372036854775807"},
	policy.TypeFloat8: {"-Infinity", "-1.7976931348623157e308", "-1", "-2.2250738585072014e-308", "-5e-324", "-0", "0",
		"5e-324", "1e-323", "2.225073858507201e-308", "2.2250738585072014e-308", "0.1", "0.30000000000000004", "1",
		"1.0000000000000002", "1.7976931348623157e308", "Infinity", "NaN"},
	policy.TypeNumeric: {"-Infinity", "-1e100000", "-99999999", "-10000", "-9999.9999", "-1.23", "-1.2", "-1.0001",
		"-1", "-1.00", "-0.0001", "-1e-16383", "0", "0.00", "-0.000", "1e-16383", "0.0001", "0.00010", "1", "1.0",
		"1.0001", "1.2", "1.23", "1.5", "1.50", "9999", "10000", "10000.0001", "123456789012345678901234567890",
		"1e100000", "Infinity", "NaN"},
	policy.TypeDate: {"-infinity", "4714-11-24 BC", "0001-12-31 BC", "0001-01-01", "1999-12-31", "2000-01-01",
		"2000-01-02", "5874897-12-31", "infinity"},
	policy.TypeTimestamp: {"-infinity", "4714-11-24 00:00:00 BC", "1999-12-31 23:59:59.999999", "2000-01-01 00:00:00",
		"2000-01-01 00:00:00.000001", "294276-12-31 23:59:59.999999", "infinity"},
	policy.TypeTimestamptz: {"-infinity", "4714-11-24 00:00:00+00 BC", "1999-12-31 23:59:59.999999+00",
		"2000-01-01 00:00:00+00", "2000-01-01 00:00:00.000001+00", "294276-12-31 23:59:59.999999+00", "infinity"},
	policy.TypeText: {"", "\x01", "A", "Z", "a", "a\x01", "a\x01\x01", "aa", "ab", "b", "é", "ü", "€", "中文", "😀",
		"\U0010FFFF", strings.Repeat("x", 1000), strings.Repeat("x", 1000) + "y", strings.Repeat("x", 999) + "y",
		strings.Repeat("y", MaxOrderEncoding-1)},
}

// randomLiteral returns a random text literal of typ, read the same by
// PostgreSQL and the codec (numbers and times printed by the codec itself).
func randomLiteral(t testing.TB, rng *rand.Rand, typ policy.LogicalType) string {
	// A random bit width makes small and large magnitudes equally common.
	randInt := func(bits int) int64 {
		n := int64(rng.Uint64() >> (64 - rng.IntN(bits) - 1))
		if rng.IntN(2) == 0 {
			n = -n
		}
		return n
	}
	switch typ {
	case policy.TypeInt2:
		return strconv.FormatInt(randInt(15), 10)
	case policy.TypeInt4:
		return strconv.FormatInt(randInt(31), 10)
	case policy.TypeInt8:
		return strconv.FormatInt(randInt(63), 10)
	case policy.TypeFloat8:
		var bits uint64
		if rng.IntN(4) == 0 {
			// Nearby values: small exponents and short mantissas tie often.
			bits = math.Float64bits(float64(randInt(10)) / 8)
		} else {
			bits = rng.Uint64()
		}
		return textOf(t, typ, binary.BigEndian.AppendUint64(nil, bits))
	case policy.TypeNumeric:
		var s strings.Builder
		if rng.IntN(2) == 0 {
			s.WriteByte('-')
		}
		for range 1 + rng.IntN(12) {
			s.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			s.WriteByte('.')
			for range rng.IntN(10) {
				s.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&s, "e%d", rng.IntN(80)-40)
		}
		return s.String()
	case policy.TypeDate:
		days := dateMin + rng.Int32N(dateEnd-dateMin)
		if rng.IntN(2) == 0 {
			days = rng.Int32N(40000) - 20000
		}
		return textOf(t, typ, binary.BigEndian.AppendUint32(nil, uint32(days)))
	case policy.TypeTimestamp, policy.TypeTimestamptz:
		lo := int64(tsMin)
		usec := lo + int64(rng.Uint64N(uint64(tsEnd-lo)))
		if rng.IntN(2) == 0 {
			usec = rng.Int64N(4e9) - 2e9
		}
		return textOf(t, typ, binary.BigEndian.AppendUint64(nil, uint64(usec)))
	case policy.TypeText:
		alphabet := []rune{'a', 'b', 'c', 'A', 'z', '\x01', '\x7f', 'é', 'ÿ', 'Ā', '€', '中', '😀', '\U0010FFFF'}
		var s strings.Builder
		for range rng.IntN(12) {
			s.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		return s.String()
	}
	t.Fatalf("no literals for %s", typ)
	return ""
}

// orderedSamples returns the edge literals of typ and n random ones.
func orderedSamples(t testing.TB, rng *rand.Rand, typ policy.LogicalType, n int) []string {
	out := append([]string(nil), orderedEdgeLiterals[typ]...)
	for range n {
		out = append(out, randomLiteral(t, rng, typ))
	}
	return out
}

// TestOrderBytesFollowPostgresOrder checks, for every pair of edge and
// random values of each ordered type, that the encodings compare as
// PostgreSQL compares the values (equal ones identical), and that none is a
// proper prefix of another.
func TestOrderBytesFollowPostgresOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range policy.OrderedTypes {
		t.Run(string(typ), func(t *testing.T) {
			lits := orderedSamples(t, rng, typ, 400)
			var canon, enc [][]byte
			for _, l := range lits {
				c := canonicalOf(t, typ, l)
				e, err := orderBytes(typ, c)
				if err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				canon, enc = append(canon, c), append(enc, e)
			}
			if typ == policy.TypeFloat8 {
				// NaN payloads and -0 do not survive text; add them as bits.
				for _, bits := range []uint64{0x7FF0000000000001, 0xFFF8000000000000, 0x7FFFFFFFFFFFFFFF,
					0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x8000000000000001, 0x000FFFFFFFFFFFFF} {
					c := binary.BigEndian.AppendUint64(nil, bits)
					e, err := orderBytes(typ, c)
					if err != nil {
						t.Fatal(err)
					}
					lits, canon, enc = append(lits, fmt.Sprintf("bits %#x", bits)), append(canon, c), append(enc, e)
				}
			}
			for i := range enc {
				for j := range enc {
					want := pgCompare(t, typ, canon[i], canon[j])
					if got := sign(bytes.Compare(enc[i], enc[j])); got != want {
						t.Fatalf("%q vs %q: encodings compare %d, PostgreSQL %d", lits[i], lits[j], got, want)
					}
					if want != 0 && bytes.HasPrefix(enc[j], enc[i]) {
						t.Fatalf("the encoding of %q is a prefix of %q's", lits[i], lits[j])
					}
				}
			}
		})
	}
}

// TestNumericOrderIgnoresDisplayScale pins the numeric encoding on values
// that differ only in display scale, and a few exact encodings.
func TestNumericOrderIgnoresDisplayScale(t *testing.T) {
	enc := func(lit string) string {
		e, err := orderBytes(policy.TypeNumeric, canonicalOf(t, policy.TypeNumeric, lit))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", e)
	}
	for _, tc := range []struct{ lit, want string }{
		{"0", "02"}, {"0.00", "02"}, {"-0.0", "02"},
		{"1.5", "03800000021389" + "0000"}, {"1.50", "03800000021389" + "0000"},
		{"-1.5", "017fff" + "270f" + "1388" + "ffff"}, // 10000-1, 10000-5000
		{"-Infinity", "00"}, {"Infinity", "04"}, {"NaN", "05"},
	} {
		if got := enc(tc.lit); got != tc.want {
			t.Errorf("%s encodes as %s, want %s", tc.lit, got, tc.want)
		}
	}
}

// TestOrderBytesRefusesNonCanonical checks the forms the codec never makes.
func TestOrderBytesRefusesNonCanonical(t *testing.T) {
	unstripped := binary.BigEndian.AppendUint16([]byte{0, 2, 0, 0, 0, 0, 0, 0}, 0)
	unstripped = binary.BigEndian.AppendUint16(unstripped, 5)
	for _, tc := range []struct {
		typ policy.LogicalType
		c   []byte
	}{
		{policy.TypeInt4, []byte{1, 2, 3}},
		{policy.TypeInt8, make([]byte, 4)},
		{policy.TypeFloat8, make([]byte, 9)},
		{policy.TypeDate, nil},
		{policy.TypeText, []byte("a\x00b")},
		{policy.TypeNumeric, []byte{0, 1, 0, 0, 0, 0, 0, 0}},    // a digit missing
		{policy.TypeNumeric, unstripped},                        // leading zero digit
		{policy.TypeNumeric, []byte{0, 0, 0, 0, 0x12, 0, 0, 0}}, // no such sign
		{policy.TypeBool, []byte{1}},
	} {
		if e, err := orderBytes(tc.typ, tc.c); err == nil {
			t.Errorf("%s %x: encoded as %x", tc.typ, tc.c, e)
		}
	}
}

// TestRandomTextOrderFollowsBytes covers long random UTF-8 strings with
// long shared prefixes, where the terminator decides.
func TestRandomTextOrderFollowsBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := strings.Repeat("pre€fix", 100)
	var vals []string
	for range 200 {
		s := base[:rng.IntN(len(base))]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		vals = append(vals, s+randomLiteral(t, rng, policy.TypeText))
	}
	for _, a := range vals {
		ea, _ := orderBytes(policy.TypeText, []byte(a))
		for _, b := range vals {
			eb, _ := orderBytes(policy.TypeText, []byte(b))
			if sign(bytes.Compare(ea, eb)) != strings.Compare(a, b) {
				t.Fatalf("%q vs %q: encodings disagree", a, b)
			}
		}
	}
}
