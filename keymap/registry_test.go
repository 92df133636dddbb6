package keymap

import (
	"bytes"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

// typeSamples are a value of every registered type, in its text output
// form (UTC, DateStyle ISO): a type added to the registry without one
// fails TestEveryTypeHasItsPlaces.
var typeSamples = map[policy.PGType]string{
	policy.PGText:        "héllo",
	policy.PGVarchar:     "varchar",
	policy.PGBPChar:      "pad  ",
	policy.PGInt2:        "-32768",
	policy.PGInt4:        "2147483647",
	policy.PGInt8:        "-9223372036854775808",
	policy.PGNumeric:     "-12.340",
	policy.PGFloat8:      "0.1",
	policy.PGBool:        "t",
	policy.PGDate:        "2024-02-29",
	policy.PGTimestamp:   "2024-02-29 13:45:30.5",
	policy.PGTimestamptz: "2024-02-29 13:45:30.5+00",
	policy.PGUUID:        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
	policy.PGJSONB:       `{"a": [1, null]}`,
	policy.PGBytea:       `\x00ff`,
	policy.PGName:        "name",
	policy.PGJSON:        `{"b":1, "a" : 2}`,
	policy.PGFloat4:      "1.5",
	policy.PGUnknown:     "literal",
}

// TestEveryTypeHasItsPlaces checks every registered type has what keymap
// needs of it: a codec that reads and prints a sample in both formats, a
// logical type's Codec, and a conversion from a value of the type itself.
// (TestRegistryMatchesPostgres and TestCastTableMatchesPostgres check its
// facts and casts against a server.)
func TestEveryTypeHasItsPlaces(t *testing.T) {
	utc := &TextContext{}
	for p := range policy.NumPGTypes {
		impl := typeCodecs[p]
		sample, ok := typeSamples[p]
		if impl == nil || !ok {
			t.Errorf("%s: codec %v, sample %v", p, impl, ok)
			continue
		}
		canon := roundTrip(t, p, impl, sample, utc)
		lt := p.Logical()
		if lt == "" {
			continue
		}
		c := CodecFor(lt)
		if c == nil || c.Type() != lt {
			t.Errorf("%s: CodecFor(%q) = %v", p, lt, c)
			continue
		}
		got, matches, err := c.Convert(Source{OID: p.OID()}, TextFormat, []byte(sample), UseStore, utc)
		if err != nil || !matches || !bytes.Equal(got, canon) {
			t.Errorf("%s: Convert from itself = %x, %v, %v; want %x", p, got, matches, err, canon)
		}
	}
}

// roundTrip reads sample as text, and checks its text and binary forms
// read back to the same canonical value.
func roundTrip(t *testing.T, p policy.PGType, impl typeCodec, sample string, tc *TextContext) []byte {
	t.Helper()
	canon, err := impl.fromText([]byte(sample), tc)
	if err != nil {
		t.Errorf("%s: sample %q: %v", p, sample, err)
		return nil
	}
	text, err := impl.appendText(nil, canon, tc)
	if err != nil {
		t.Errorf("%s: text of %q: %v", p, sample, err)
	}
	bin, err := impl.appendBinary(nil, canon)
	if err != nil {
		t.Errorf("%s: binary of %q: %v", p, sample, err)
	}
	back, err := impl.fromBinary(bin)
	if err != nil || !bytes.Equal(back, canon) {
		t.Errorf("%s: binary of %q reads back as %x, %v; want %x", p, sample, back, err, canon)
	}
	if string(text) != sample {
		t.Errorf("%s: %q prints as %q", p, sample, text)
	}
	return canon
}
