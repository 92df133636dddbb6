package keymap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the machine's zoneinfo

	"github.com/pgcloak/pgcloak/policy"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test table: %v", err)
	}
	return b
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%s): %v", name, err)
	}
	return loc
}

// textCase is a valid text input and how PostgreSQL prints it back.
type textCase struct {
	typ  policy.LogicalType
	in   string
	want string
	loc  string // session TimeZone for both parsing and printing; "" = UTC
}

var textCases = []textCase{
	{typ: policy.TypeText, in: "", want: ""},
	{typ: policy.TypeText, in: "héllo wörld ☃ 😀", want: "héllo wörld ☃ 😀"},
	{typ: policy.TypeVarchar, in: " padded ", want: " padded "},
	{typ: policy.TypeChar, in: "abc  ", want: "abc  "},

	{typ: policy.TypeInt2, in: "007", want: "7"},
	{typ: policy.TypeInt2, in: " 7 ", want: "7"},
	{typ: policy.TypeInt2, in: "-7", want: "-7"},
	{typ: policy.TypeInt2, in: "+7", want: "7"},
	{typ: policy.TypeInt2, in: "32767", want: "32767"},
	{typ: policy.TypeInt2, in: "-32768", want: "-32768"},
	{typ: policy.TypeInt4, in: "2147483647", want: "2147483647"},
	{typ: policy.TypeInt4, in: "-2147483648", want: "-2147483648"},
	{typ: policy.TypeInt4, in: "1_000_000", want: "1000000"},
	{typ: policy.TypeInt4, in: "0x1F", want: "31"},
	{typ: policy.TypeInt4, in: "-0o17", want: "-15"},
	{typ: policy.TypeInt4, in: "0b101", want: "5"},
	{typ: policy.TypeInt8, in: "9223372036854775807", want: "9223372036854775807"},
	{typ: policy.TypeInt8, in: "-9223372036854775808", want: "-9223372036854775808"},
	{typ: policy.TypeInt8, in: "\t0\n", want: "0"},

	{typ: policy.TypeNumeric, in: "7", want: "7"},
	{typ: policy.TypeNumeric, in: "7.0", want: "7.0"},
	{typ: policy.TypeNumeric, in: "-12.340", want: "-12.340"},
	{typ: policy.TypeNumeric, in: "0.00", want: "0.00"},
	{typ: policy.TypeNumeric, in: "-0", want: "0"},
	{typ: policy.TypeNumeric, in: ".5", want: "0.5"},
	{typ: policy.TypeNumeric, in: "5.", want: "5"},
	{typ: policy.TypeNumeric, in: " 12 ", want: "12"},
	{typ: policy.TypeNumeric, in: "10000", want: "10000"},
	{typ: policy.TypeNumeric, in: "0.0001", want: "0.0001"},
	{typ: policy.TypeNumeric, in: "0.00001", want: "0.00001"},
	{typ: policy.TypeNumeric, in: "1e3", want: "1000"},
	{typ: policy.TypeNumeric, in: "1.5E-3", want: "0.0015"},
	{typ: policy.TypeNumeric, in: "1.50e1", want: "15.0"},
	{typ: policy.TypeNumeric, in: "1_000.5", want: "1000.5"},
	{typ: policy.TypeNumeric, in: "-123456789012345678901234567890.123456789", want: "-123456789012345678901234567890.123456789"},
	{typ: policy.TypeNumeric, in: "1e100", want: "1" + strings.Repeat("0", 100)},
	{typ: policy.TypeNumeric, in: "NaN", want: "NaN"},
	{typ: policy.TypeNumeric, in: "nan", want: "NaN"},
	{typ: policy.TypeNumeric, in: "Infinity", want: "Infinity"},
	{typ: policy.TypeNumeric, in: "-inf", want: "-Infinity"},

	{typ: policy.TypeFloat8, in: "1.5", want: "1.5"},
	{typ: policy.TypeFloat8, in: "0.1", want: "0.1"},
	{typ: policy.TypeFloat8, in: "-0", want: "-0"},
	{typ: policy.TypeFloat8, in: "123.456e2", want: "12345.6"},
	{typ: policy.TypeFloat8, in: "100000000000000", want: "100000000000000"},
	{typ: policy.TypeFloat8, in: "1e15", want: "1e+15"},
	{typ: policy.TypeFloat8, in: "1e20", want: "1e+20"},
	{typ: policy.TypeFloat8, in: "0.0001", want: "0.0001"},
	{typ: policy.TypeFloat8, in: "0.00001", want: "1e-05"},
	{typ: policy.TypeFloat8, in: "-1.25e-7", want: "-1.25e-07"},
	{typ: policy.TypeFloat8, in: "1.7976931348623157e308", want: "1.7976931348623157e+308"},
	{typ: policy.TypeFloat8, in: "5e-324", want: "5e-324"},
	{typ: policy.TypeFloat8, in: " NaN ", want: "NaN"},
	{typ: policy.TypeFloat8, in: "infinity", want: "Infinity"},
	{typ: policy.TypeFloat8, in: "-Infinity", want: "-Infinity"},
	{typ: policy.TypeFloat8, in: "-inf", want: "-Infinity"},

	{typ: policy.TypeBool, in: "t", want: "t"},
	{typ: policy.TypeBool, in: "TRUE", want: "t"},
	{typ: policy.TypeBool, in: "Yes", want: "t"},
	{typ: policy.TypeBool, in: "on", want: "t"},
	{typ: policy.TypeBool, in: "1", want: "t"},
	{typ: policy.TypeBool, in: " tr ", want: "t"},
	{typ: policy.TypeBool, in: "f", want: "f"},
	{typ: policy.TypeBool, in: "False", want: "f"},
	{typ: policy.TypeBool, in: "NO", want: "f"},
	{typ: policy.TypeBool, in: "off", want: "f"},
	{typ: policy.TypeBool, in: "of", want: "f"},
	{typ: policy.TypeBool, in: "0", want: "f"},

	{typ: policy.TypeDate, in: "2024-01-31", want: "2024-01-31"},
	{typ: policy.TypeDate, in: "2024-1-5", want: "2024-01-05"},
	{typ: policy.TypeDate, in: "2024-02-29", want: "2024-02-29"},
	{typ: policy.TypeDate, in: "2000-02-29", want: "2000-02-29"},
	{typ: policy.TypeDate, in: "1999-12-31", want: "1999-12-31"},
	{typ: policy.TypeDate, in: "1850-06-01", want: "1850-06-01"},
	{typ: policy.TypeDate, in: "0044-03-15 BC", want: "0044-03-15 BC"},
	{typ: policy.TypeDate, in: "0001-01-01 bc", want: "0001-01-01 BC"},
	{typ: policy.TypeDate, in: "4714-11-24 BC", want: "4714-11-24 BC"},
	{typ: policy.TypeDate, in: "5874897-12-31", want: "5874897-12-31"},
	{typ: policy.TypeDate, in: "2024-01-31 13:45:00", want: "2024-01-31"},
	{typ: policy.TypeDate, in: "infinity", want: "infinity"},
	{typ: policy.TypeDate, in: "-INFINITY", want: "-infinity"},
	{typ: policy.TypeDate, in: "epoch", want: "1970-01-01"},

	{typ: policy.TypeTimestamp, in: "2024-01-31 13:45:00.123456", want: "2024-01-31 13:45:00.123456"},
	{typ: policy.TypeTimestamp, in: "2024-01-31T13:45:00.1234560", want: "2024-01-31 13:45:00.123456"},
	{typ: policy.TypeTimestamp, in: "2024-01-31 13:45:00.5", want: "2024-01-31 13:45:00.5"},
	{typ: policy.TypeTimestamp, in: "2024-01-31 13:45", want: "2024-01-31 13:45:00"},
	{typ: policy.TypeTimestamp, in: "2024-01-31", want: "2024-01-31 00:00:00"},
	{typ: policy.TypeTimestamp, in: "2024-01-31 13:45:00+05", want: "2024-01-31 13:45:00"},
	{typ: policy.TypeTimestamp, in: "2024-02-29 24:00:00", want: "2024-03-01 00:00:00"},
	{typ: policy.TypeTimestamp, in: "1999-12-31 23:59:60", want: "2000-01-01 00:00:00"},
	{typ: policy.TypeTimestamp, in: "1969-07-20 20:17:40", want: "1969-07-20 20:17:40"},
	{typ: policy.TypeTimestamp, in: "0044-03-15 10:00:00 BC", want: "0044-03-15 10:00:00 BC"},
	{typ: policy.TypeTimestamp, in: "4714-11-24 00:00:00 BC", want: "4714-11-24 00:00:00 BC"},
	{typ: policy.TypeTimestamp, in: "294276-12-31 23:59:59.999999", want: "294276-12-31 23:59:59.999999"},
	{typ: policy.TypeTimestamp, in: "Infinity", want: "infinity"},
	{typ: policy.TypeTimestamp, in: "-infinity", want: "-infinity"},

	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00.123456+01", want: "2024-01-31 12:45:00.123456+00"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00.123456+01", want: "2024-01-31 13:45:00.123456+01", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "2024-07-01T12:00:00Z", want: "2024-07-01 14:00:00+02", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00", want: "2024-01-31 13:45:00+01", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 00:00:00+00", want: "2024-01-31 05:30:00+05:30", loc: "Asia/Kolkata"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00-0330", want: "2024-01-31 17:15:00+00"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00 -03:30", want: "2024-01-31 17:15:00+00"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00 America/New_York", want: "2024-01-31 18:45:00+00"},
	{typ: policy.TypeTimestamptz, in: "2024-01-31 13:45:00 utc", want: "2024-01-31 13:45:00+00"},
	{typ: policy.TypeTimestamptz, in: "1900-01-01 00:00:00+00", want: "1900-01-01 00:09:21+00:09:21", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "1999-12-31 23:00:00-05", want: "2000-01-01 04:00:00+00"},
	{typ: policy.TypeTimestamptz, in: "0044-03-15 10:00:00+00 BC", want: "0044-03-15 10:00:00+00 BC"},
	{typ: policy.TypeTimestamptz, in: "epoch", want: "1970-01-01 01:00:00+01", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "infinity", want: "infinity", loc: "Europe/Paris"},
	{typ: policy.TypeTimestamptz, in: "-infinity", want: "-infinity"},

	{typ: policy.TypeUUID, in: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{typ: policy.TypeUUID, in: "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{typ: policy.TypeUUID, in: "a0eebc999c0b4ef8bb6d6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{typ: policy.TypeUUID, in: "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{typ: policy.TypeUUID, in: "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},

	{typ: policy.TypeJSONB, in: `{"b": 1, "a": 2}`, want: `{"a": 2, "b": 1}`},
	{typ: policy.TypeJSONB, in: `{"aa":1,"b":2}`, want: `{"b": 2, "aa": 1}`},
	{typ: policy.TypeJSONB, in: `{"a":1,"a":2}`, want: `{"a": 2}`},
	{typ: policy.TypeJSONB, in: ` [1,2.50,  -0.1e5, true,false,null] `, want: `[1, 2.50, -10000, true, false, null]`},
	{typ: policy.TypeJSONB, in: `"\u00e9\/\n\"\\"`, want: `"é/\n\"\\"`},
	{typ: policy.TypeJSONB, in: `"\ud83d\ude00 \u001F"`, want: `"😀 \u001f"`},
	{typ: policy.TypeJSONB, in: `{"x":[{"b":1,"a":[]}], "":{}}`, want: `{"": {}, "x": [{"a": [], "b": 1}]}`},
	{typ: policy.TypeJSONB, in: `null`, want: `null`},
	{typ: policy.TypeJSONB, in: `-0`, want: `0`},
	{typ: policy.TypeJSONB, in: `[1e2, 1E+2, 0.1e-2, 1.0e-2, 1.50e1]`, want: `[100, 100, 0.001, 0.010, 15.0]`},

	{typ: policy.TypeBytea, in: `\x`, want: `\x`},
	{typ: policy.TypeBytea, in: ``, want: `\x`},
	{typ: policy.TypeBytea, in: `\xDEADbeef`, want: `\xdeadbeef`},
	{typ: policy.TypeBytea, in: `\x de ad`, want: `\xdead`},
	{typ: policy.TypeBytea, in: `abc\\\001\377`, want: `\x6162635c01ff`},
}

// TestTextRoundTrip checks each text input prints as PostgreSQL prints it,
// and that both printed forms (text and binary) read back to the same
// canonical bytes.
func TestTextRoundTrip(t *testing.T) {
	for _, tc := range textCases {
		t.Run(string(tc.typ)+"/"+tc.in, func(t *testing.T) {
			c := CodecFor(tc.typ)
			ctx := &TextContext{}
			if tc.loc != "" {
				ctx.Location = mustLoc(t, tc.loc)
			}
			canon, err := c.Canonical(TextFormat, []byte(tc.in), ctx)
			if err != nil {
				t.Fatalf("Canonical(text): %v", err)
			}
			text, err := c.AppendText(nil, canon, ctx)
			if err != nil {
				t.Fatalf("AppendText: %v", err)
			}
			if string(text) != tc.want {
				t.Errorf("AppendText = %q, want %q", text, tc.want)
			}
			again, err := c.Canonical(TextFormat, text, ctx)
			if err != nil || !bytes.Equal(again, canon) {
				t.Errorf("text output does not read back: %x, %v; want %x", again, err, canon)
			}
			bin, err := c.AppendBinary(nil, canon)
			if err != nil {
				t.Fatalf("AppendBinary: %v", err)
			}
			fromBin, err := c.Canonical(BinaryFormat, bin, ctx)
			if err != nil || !bytes.Equal(fromBin, canon) {
				t.Errorf("binary output does not read back: %x, %v; want %x", fromBin, err, canon)
			}
		})
	}
}

// TestTextAndBinaryAgree is the property deterministic equality rests on:
// the same value sent as text or as binary canonicalises to the same bytes.
func TestTextAndBinaryAgree(t *testing.T) {
	tests := []struct {
		typ  policy.LogicalType
		text string
		bin  string // hex of the binary wire value
	}{
		{policy.TypeText, "héllo", hex.EncodeToString([]byte("héllo"))},
		{policy.TypeVarchar, "", ""},
		{policy.TypeChar, "x", "78"},
		{policy.TypeInt2, "007", "0007"},
		{policy.TypeInt4, " 7 ", "00000007"},
		{policy.TypeInt4, "007", "00000007"},
		{policy.TypeInt8, "-7", "fffffffffffffff9"},
		{policy.TypeNumeric, "7", "0001 0000 0000 0000 0007"},
		{policy.TypeNumeric, "7.0", "0001 0000 0000 0001 0007"},
		// not stripped, as some drivers send it: still the same canonical
		{policy.TypeNumeric, "7.0", "0002 0000 0000 0001 0007 0000"},
		// a digit the display scale hides is truncated, as numeric_recv does
		{policy.TypeNumeric, "7", "0002 0000 0000 0000 0007 1388"},
		{policy.TypeNumeric, "-0.5", "0001 ffff 4000 0001 1388"},
		{policy.TypeNumeric, "NaN", "0000 0000 c000 0000"},
		{policy.TypeFloat8, "1.5", "3ff8000000000000"},
		{policy.TypeFloat8, "NaN", "7ff8000000000001"}, // a NaN with payload
		{policy.TypeBool, "yes", "01"},
		{policy.TypeBool, "true", "05"}, // boolrecv: non-zero is true
		{policy.TypeBool, "off", "00"},
		{policy.TypeDate, "2000-01-02", "00000001"},
		{policy.TypeDate, "1999-12-31", "ffffffff"},
		{policy.TypeDate, "infinity", "7fffffff"},
		{policy.TypeTimestamp, "2000-01-01 00:00:01", "00000000000f4240"},
		{policy.TypeTimestamp, "-infinity", "8000000000000000"},
		{policy.TypeTimestamptz, "2000-01-01 01:00:01+01", "00000000000f4240"},
		{policy.TypeUUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{policy.TypeJSONB, `{"b":1,"a":2}`, "01" + hex.EncodeToString([]byte(`{ "a" : 2 , "b" : 1 }`))},
		{policy.TypeBytea, `\x0102`, "0102"},
		{policy.TypeBytea, `\001\002`, "0102"},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+"/"+tt.text, func(t *testing.T) {
			c := CodecFor(tt.typ)
			fromText, err := c.Canonical(TextFormat, []byte(tt.text), nil)
			if err != nil {
				t.Fatalf("text: %v", err)
			}
			fromBin, err := c.Canonical(BinaryFormat, mustHex(t, tt.bin), nil)
			if err != nil {
				t.Fatalf("binary: %v", err)
			}
			if !bytes.Equal(fromText, fromBin) {
				t.Errorf("text gives %x, binary gives %x", fromText, fromBin)
			}
		})
	}
}

func TestCanonicalRejects(t *testing.T) {
	tests := []struct {
		typ    policy.LogicalType
		format int16
		in     string // text, or hex for binary
	}{
		{policy.TypeText, TextFormat, "bad\xffutf8"},
		{policy.TypeText, TextFormat, "nul\x00byte"},
		{policy.TypeVarchar, BinaryFormat, "c328"},
		{policy.TypeChar, BinaryFormat, "610062"},

		{policy.TypeInt2, TextFormat, "32768"},
		{policy.TypeInt2, TextFormat, "-32769"},
		{policy.TypeInt4, TextFormat, "2147483648"},
		{policy.TypeInt8, TextFormat, "9223372036854775808"},
		{policy.TypeInt4, TextFormat, ""},
		{policy.TypeInt4, TextFormat, "   "},
		{policy.TypeInt4, TextFormat, "1.0"},
		{policy.TypeInt4, TextFormat, "1 2"},
		{policy.TypeInt4, TextFormat, "_1"},
		{policy.TypeInt4, TextFormat, "1__0"},
		{policy.TypeInt4, TextFormat, "1_"},
		{policy.TypeInt4, TextFormat, "0x"},
		{policy.TypeInt4, TextFormat, "0b102"},
		{policy.TypeInt4, TextFormat, "--1"},
		{policy.TypeInt4, BinaryFormat, "000007"},
		{policy.TypeInt8, BinaryFormat, "00000007"},

		{policy.TypeNumeric, TextFormat, ""},
		{policy.TypeNumeric, TextFormat, "."},
		{policy.TypeNumeric, TextFormat, "1.2.3"},
		{policy.TypeNumeric, TextFormat, "abc"},
		{policy.TypeNumeric, TextFormat, "1e"},
		{policy.TypeNumeric, TextFormat, "1e131073"},
		{policy.TypeNumeric, TextFormat, "_1"},
		{policy.TypeNumeric, TextFormat, "1__0"},
		{policy.TypeNumeric, TextFormat, "0x10"},
		{policy.TypeNumeric, TextFormat, "NaNa"},
		{policy.TypeNumeric, BinaryFormat, "0001 0000 0000 0000"},      // digit missing
		{policy.TypeNumeric, BinaryFormat, "0001 0000 1234 0000 0007"}, // bad sign
		{policy.TypeNumeric, BinaryFormat, "0001 0000 0000 0000 2710"}, // digit 10000
		{policy.TypeNumeric, BinaryFormat, "0001 0000 0000 4000 0007"}, // dscale too big
		{policy.TypeNumeric, BinaryFormat, "0000 0000 0000"},           // short header

		{policy.TypeFloat8, TextFormat, ""},
		{policy.TypeFloat8, TextFormat, "abc"},
		{policy.TypeFloat8, TextFormat, "1_0"},
		{policy.TypeFloat8, TextFormat, "1e400"},
		{policy.TypeFloat8, TextFormat, "1e-400"},
		{policy.TypeFloat8, BinaryFormat, "3ff80000000000"},

		{policy.TypeBool, TextFormat, ""},
		{policy.TypeBool, TextFormat, "o"},
		{policy.TypeBool, TextFormat, "2"},
		{policy.TypeBool, TextFormat, "yess"},
		{policy.TypeBool, TextFormat, "10"},
		{policy.TypeBool, BinaryFormat, "0100"},
		{policy.TypeBool, BinaryFormat, ""},

		{policy.TypeDate, TextFormat, "2023-02-29"},
		{policy.TypeDate, TextFormat, "1900-02-29"},
		{policy.TypeDate, TextFormat, "2024-13-01"},
		{policy.TypeDate, TextFormat, "2024-00-10"},
		{policy.TypeDate, TextFormat, "2024-01-32"},
		{policy.TypeDate, TextFormat, "0000-01-01"},
		{policy.TypeDate, TextFormat, "4714-11-23 BC"},
		{policy.TypeDate, TextFormat, "5874898-01-01"},
		{policy.TypeDate, TextFormat, "24-01-31"},
		{policy.TypeDate, TextFormat, ""},
		{policy.TypeDate, BinaryFormat, "7ffffffe"}, // past the last valid date
		{policy.TypeDate, BinaryFormat, "000001"},

		{policy.TypeTimestamp, TextFormat, "2024-01-31 25:00:00"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31 24:00:01"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31 13:60:00"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31 13:45:61"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31 13"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31T"},
		{policy.TypeTimestamp, TextFormat, "2024-01-31 13:45:00 junk"},
		{policy.TypeTimestamp, TextFormat, "294277-01-01 00:00:00"},
		{policy.TypeTimestamp, TextFormat, "4714-11-23 23:59:59 BC"},
		{policy.TypeTimestamp, BinaryFormat, "7ffffffffffffffe"},
		{policy.TypeTimestamptz, TextFormat, "2024-01-31 13:45:00+16"},
		{policy.TypeTimestamptz, TextFormat, "2024-01-31 13:45:00+01:60"},
		{policy.TypeTimestamptz, TextFormat, "2024-01-31 13:45:00 Mars/Olympus"},
		{policy.TypeTimestamptz, TextFormat, "2024-01-31 13:45:00 Local"},
		{policy.TypeTimestamptz, BinaryFormat, "00"},

		{policy.TypeUUID, TextFormat, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"},
		{policy.TypeUUID, TextFormat, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-"},
		{policy.TypeUUID, TextFormat, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111"},
		{policy.TypeUUID, TextFormat, "{a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{policy.TypeUUID, TextFormat, "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11"},
		{policy.TypeUUID, TextFormat, "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{policy.TypeUUID, TextFormat, " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{policy.TypeUUID, BinaryFormat, "a0eebc999c0b4ef8bb6d6bb9bd380a"},

		{policy.TypeJSONB, TextFormat, ""},
		{policy.TypeJSONB, TextFormat, `{"a":1,}`},
		{policy.TypeJSONB, TextFormat, `[1 2]`},
		{policy.TypeJSONB, TextFormat, `{"a"}`},
		{policy.TypeJSONB, TextFormat, `{a:1}`},
		{policy.TypeJSONB, TextFormat, `01`},
		{policy.TypeJSONB, TextFormat, `1.`},
		{policy.TypeJSONB, TextFormat, `.5`},
		{policy.TypeJSONB, TextFormat, `1e`},
		{policy.TypeJSONB, TextFormat, `tru`},
		{policy.TypeJSONB, TextFormat, `nulls`},
		{policy.TypeJSONB, TextFormat, `"\u0000"`},
		{policy.TypeJSONB, TextFormat, `"\ud800"`},
		{policy.TypeJSONB, TextFormat, `"\udc00"`},
		{policy.TypeJSONB, TextFormat, `"\ud800\u0041"`},
		{policy.TypeJSONB, TextFormat, `"\x"`},
		{policy.TypeJSONB, TextFormat, "\"tab\there\""},
		{policy.TypeJSONB, TextFormat, "\"\xff\""},
		{policy.TypeJSONB, TextFormat, `"unterminated`},
		{policy.TypeJSONB, TextFormat, strings.Repeat("[", jsonMaxDepth+2) + strings.Repeat("]", jsonMaxDepth+2)},
		{policy.TypeJSONB, BinaryFormat, "02" + hex.EncodeToString([]byte("{}"))},
		{policy.TypeJSONB, BinaryFormat, ""},

		{policy.TypeBytea, TextFormat, `\x1`},
		{policy.TypeBytea, TextFormat, `\xzz`},
		{policy.TypeBytea, TextFormat, `\X00`},
		{policy.TypeBytea, TextFormat, `a\qb`},
		{policy.TypeBytea, TextFormat, `\400`},
		{policy.TypeBytea, TextFormat, `\01`},
		{policy.TypeBytea, TextFormat, `trailing\`},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+"/"+tt.in, func(t *testing.T) {
			src := []byte(tt.in)
			if tt.format == BinaryFormat {
				src = mustHex(t, tt.in)
			}
			got, err := CodecFor(tt.typ).Canonical(tt.format, src, nil)
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("Canonical = %x, %v; want *ValueError", got, err)
			}
			// PostgreSQL's codes: 22003 / 22008 out of range, 22023 an
			// unknown time zone or bad bytea hex, 22P05 a \u0000 in jsonb, 22007 an
			// unreadable date or time.
			want := "22P02"
			switch {
			case strings.Contains(err.Error(), "displacement"):
				want = "22009"
			case strings.Contains(err.Error(), "out of range") && tt.typ.IsDateTime():
				want = "22008"
			case strings.Contains(err.Error(), "out of range"):
				want = "22003"
			case strings.Contains(err.Error(), "not recognized"), strings.Contains(err.Error(), "hexadecimal"):
				want = "22023"
			case strings.Contains(err.Error(), `\u0000`):
				want = "22P05"
			case strings.Contains(err.Error(), "insufficient data"):
				want = "08P01"
			case strings.Contains(err.Error(), "binary"):
				want = "22P03"
			case strings.Contains(err.Error(), "UTF-8"), strings.Contains(err.Error(), "NUL"):
				want = "22021"
			case strings.Contains(err.Error(), "jsonb version"):
				want = "XX000"
			case tt.typ.IsDateTime() && tt.format == TextFormat:
				want = "22007"
			}
			if ve.SQLState() != want {
				t.Errorf("SQLState = %s, want %s", ve.SQLState(), want)
			}
			if !strings.Contains(err.Error(), string(tt.typ)) {
				t.Errorf("message %q does not name type %s", err, tt.typ)
			}
		})
	}
}

// TestValueErrorsDoNotEchoInput uses distinctive values so that finding them
// in a message can only mean the message quotes the input.
func TestValueErrorsDoNotEchoInput(t *testing.T) {
	secret := "SECRET-4111111111111111-x"
	for _, typ := range []policy.LogicalType{
		policy.TypeInt2, policy.TypeInt4, policy.TypeInt8, policy.TypeNumeric, policy.TypeFloat8,
		policy.TypeBool, policy.TypeDate, policy.TypeTimestamp, policy.TypeTimestamptz,
		policy.TypeUUID, policy.TypeJSONB, policy.TypeBytea,
	} {
		for _, in := range []string{secret, `{"ssn": "` + secret + `"`, "2024-01-31 " + secret, `\x` + secret} {
			_, err := CodecFor(typ).Canonical(TextFormat, []byte(in), nil)
			if err == nil {
				if typ == policy.TypeBytea { // escape-format bytea takes most strings
					continue
				}
				t.Fatalf("%s accepted %q", typ, in)
			}
			if strings.Contains(err.Error(), "4111111111111111") {
				t.Errorf("%s: message %q echoes the input", typ, err)
			}
		}
		_, err := CodecFor(typ).Canonical(BinaryFormat, []byte(secret), nil)
		if err != nil && strings.Contains(err.Error(), "4111111111111111") {
			t.Errorf("%s binary: message %q echoes the input", typ, err)
		}
	}
	_, err := CodecFor(policy.TypeText).Canonical(TextFormat, []byte(secret+"\xff"), nil)
	if err == nil || strings.Contains(err.Error(), "4111111111111111") {
		t.Errorf("text: got %v", err)
	}
}

func TestCanonicalUnknownFormat(t *testing.T) {
	_, err := CodecFor(policy.TypeInt4).Canonical(2, []byte("7"), nil)
	var ve *ValueError
	if !errors.As(err, &ve) {
		t.Fatalf("format 2: got %v, want *ValueError", err)
	}
}

func TestCodecForUnknownType(t *testing.T) {
	if c := CodecFor("money"); c != nil {
		t.Fatalf("CodecFor(money) = %v, want nil", c)
	}
	for _, name := range policy.LogicalTypeNames() {
		if CodecFor(policy.LogicalType(name)) == nil {
			t.Errorf("no codec for policy type %s", name)
		}
	}
}

// TestTimestamptzReadsSessionZone checks a zoneless literal is read in the
// session's zone and only there.
func TestTimestamptzReadsSessionZone(t *testing.T) {
	c := CodecFor(policy.TypeTimestamptz)
	utc, err := c.Canonical(TextFormat, []byte("2024-01-31 12:45:00+00"), nil)
	if err != nil {
		t.Fatal(err)
	}
	paris := &TextContext{Location: mustLoc(t, "Europe/Paris")}
	tests := []struct {
		in   string
		tc   *TextContext
		same bool
	}{
		{"2024-01-31 13:45:00", paris, true},
		{"2024-01-31 12:45:00", nil, true},
		{"2024-01-31 12:45:00", &TextContext{}, true},
		{"2024-01-31 12:45:00", paris, false},
		{"2024-01-31 12:45:00+00", paris, true}, // an explicit zone wins
	}
	for _, tt := range tests {
		got, err := c.Canonical(TextFormat, []byte(tt.in), tt.tc)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if bytes.Equal(got, utc) != tt.same {
			t.Errorf("%s in %v: equal to 12:45 UTC = %v, want %v", tt.in, tt.tc, !tt.same, tt.same)
		}
	}
}

// TestAppendRejectsMalformedCanonical covers stored values whose type does
// not match the column's configured type.
func TestAppendRejectsMalformedCanonical(t *testing.T) {
	tests := []struct {
		typ       policy.LogicalType
		canonical string
	}{
		{policy.TypeInt4, "0007"},
		{policy.TypeBool, "02"},
		{policy.TypeFloat8, "00"},
		{policy.TypeNumeric, "0001"},
		{policy.TypeDate, "7ffffffe"},
		{policy.TypeTimestamp, "01"},
		{policy.TypeUUID, "00"},
		{policy.TypeText, "ff"},
	}
	for _, tt := range tests {
		c := CodecFor(tt.typ)
		if _, err := c.AppendText(nil, mustHex(t, tt.canonical), nil); err == nil {
			t.Errorf("%s AppendText(%s) succeeded", tt.typ, tt.canonical)
		}
		if _, err := c.AppendBinary(nil, mustHex(t, tt.canonical)); err == nil {
			t.Errorf("%s AppendBinary(%s) succeeded", tt.typ, tt.canonical)
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	c := CodecFor(policy.TypeTimestamptz)
	canon, err := c.Canonical(TextFormat, []byte("0044-03-15 10:00:00+00 BC"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.AppendText([]byte("prefix|"), canon, &TextContext{Location: time.FixedZone("x", -(3*3600 + 25*60 + 7))})
	if err != nil {
		t.Fatal(err)
	}
	if want := "prefix|0044-03-15 06:34:53-03:25:07 BC"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestFloat8TextPrecision: with extra_float_digits <= 0, float8out prints
// %.{15+n}g.
func TestFloat8TextPrecision(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		prec int
		want string
	}{
		{0.30000000000000004, 0, "0.30000000000000004"},
		{0.30000000000000004, 15, "0.3"},
		{3.141592653589793, 10, "3.141592654"},
		{123456789012345678, 15, "1.23456789012346e+17"},
		{1e15, 15, "1e+15"},
		{100, 15, "100"},
		{1e-5, 15, "1e-05"},
		{0.5, 1, "0.5"},
		{0.25, 1, "0.2"}, // an exact tie rounds to even, as glibc's printf does
	} {
		got, err := CodecFor(policy.TypeFloat8).AppendText(nil, putFloat8(tc.in), &TextContext{FloatPrecision: tc.prec})
		if err != nil || string(got) != tc.want {
			t.Errorf("%v at precision %d: %q, %v; want %q", tc.in, tc.prec, got, err, tc.want)
		}
	}
}

// TestAppendCanonicalMatchesCanonical checks AppendCanonical against
// Canonical for the text types (which append) and others (which copy):
// same bytes after dst's prefix, same errors, dst untouched on an error.
func TestAppendCanonicalMatchesCanonical(t *testing.T) {
	tests := []struct {
		typ    policy.LogicalType
		format int16
		in     string
	}{
		{policy.TypeText, TextFormat, "héllo\tworld"},
		{policy.TypeText, BinaryFormat, ""},
		{policy.TypeVarchar, TextFormat, "v"},
		{policy.TypeText, TextFormat, "bad\xffutf8"},
		{policy.TypeText, BinaryFormat, "nul\x00byte"},
		{policy.TypeText, 7, "x"},
		{policy.TypeInt4, TextFormat, " 0042 "},
		{policy.TypeInt4, TextFormat, "1.0"},
		{policy.TypeNumeric, TextFormat, "12.50"},
	}
	for _, tt := range tests {
		c := CodecFor(tt.typ)
		want, wantErr := c.Canonical(tt.format, []byte(tt.in), nil)
		dst := make([]byte, 3, 64)
		copy(dst, "pre")
		got, err := c.AppendCanonical(dst, tt.format, []byte(tt.in), nil)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("%s %q: error %v, Canonical's %v", tt.typ, tt.in, err, wantErr)
			continue
		}
		if err != nil {
			if string(got) != "pre" {
				t.Errorf("%s %q: dst %q after an error", tt.typ, tt.in, got)
			}
			continue
		}
		if string(got[:3]) != "pre" || !bytes.Equal(got[3:], want) {
			t.Errorf("%s %q: AppendCanonical = %q, Canonical = %q", tt.typ, tt.in, got, want)
		}
	}
}
