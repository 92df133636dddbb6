package keymap

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/policy"
)

// TestConvert checks values sent as one type, or cast, and bound for an
// encrypted column of another, against what PostgreSQL 15 stores for the
// same statement on a plain column (each want was read off PostgreSQL).
func TestConvert(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	utcCtx := &TextContext{Location: time.UTC}
	nyCtx := &TextContext{Location: ny}
	pg15 := &TextContext{Location: time.UTC, ServerMajor: 15}
	pg16 := &TextContext{Location: time.UTC, ServerMajor: 16}
	int8Bin := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	int4Bin := func(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	f4Bin := func(f float32) []byte { return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)) }
	f8Bin := func(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
	cast := func(oid uint32, mods ...int32) []Cast { return []Cast{{OID: oid, Mods: mods}} }
	cases := []struct {
		name   string
		to     policy.LogicalType
		src    Source
		format int16
		value  []byte
		use    Use
		tc     *TextContext
		want   string // the stored value's text, or "!" + SQLSTATE, or "nomatch"
	}{
		// Binary parameters declared as another type (finding 2).
		{"int8 into float8", policy.TypeFloat8, Source{OID: pgtype.Int8OID}, BinaryFormat, int8Bin(42), UseStore, utcCtx, "42"},
		{"float4 into int4 rounds half to even", policy.TypeInt4, Source{OID: pgtype.Float4OID}, BinaryFormat, f4Bin(2.5), UseStore, utcCtx, "2"},
		{"float4 1.5 into int4", policy.TypeInt4, Source{OID: pgtype.Float4OID}, BinaryFormat, f4Bin(1.5), UseStore, utcCtx, "2"},
		{"int8 into int4", policy.TypeInt4, Source{OID: pgtype.Int8OID}, BinaryFormat, int8Bin(42), UseStore, utcCtx, "42"},
		{"int8 beyond int4", policy.TypeInt4, Source{OID: pgtype.Int8OID}, BinaryFormat, int8Bin(4294967296), UseStore, utcCtx, "!22003"},
		{"int4 into numeric", policy.TypeNumeric, Source{OID: pgtype.Int4OID}, BinaryFormat, int4Bin(-7), UseStore, utcCtx, "-7"},
		{"float8 into numeric keeps 15 digits", policy.TypeNumeric, Source{OID: pgtype.Float8OID}, BinaryFormat, f8Bin(0.1), UseStore, utcCtx, "0.1"},
		{"float4 into numeric keeps 6 digits", policy.TypeNumeric, Source{OID: pgtype.Float4OID}, BinaryFormat, f4Bin(1.1), UseStore, utcCtx, "1.1"},
		{"float8 NaN into int8", policy.TypeInt8, Source{OID: pgtype.Float8OID}, BinaryFormat, f8Bin(math.NaN()), UseStore, utcCtx, "!22003"},
		{"int4 into float8", policy.TypeFloat8, Source{OID: pgtype.Int4OID}, BinaryFormat, int4Bin(42), UseStore, utcCtx, "42"},
		{"int4 into text is its text", policy.TypeText, Source{OID: pgtype.Int4OID}, BinaryFormat, int4Bin(42), UseStore, utcCtx, "42"},
		{"bool into text is true", policy.TypeText, Source{OID: pgtype.BoolOID}, BinaryFormat, []byte{1}, UseStore, utcCtx, "true"},
		{"short binary int4", policy.TypeInt4, Source{OID: pgtype.Int4OID}, BinaryFormat, []byte{0, 0, 7}, UseStore, utcCtx, "!08P01"},
		{"long binary int4", policy.TypeInt4, Source{OID: pgtype.Int4OID}, BinaryFormat, []byte{0, 0, 0, 0, 7}, UseStore, utcCtx, "!22P03"},
		// Text parameters declared as another type.
		{"text declared into int4", policy.TypeInt4, Source{OID: pgtype.TextOID}, TextFormat, []byte("42"), UseStore, utcCtx, "!42804"},
		{"text declared compared with int4", policy.TypeInt4, Source{OID: pgtype.TextOID}, TextFormat, []byte("42"), UseCompare, utcCtx, "!42883"},
		{"numeric text declared into int4", policy.TypeInt4, Source{OID: pgtype.NumericOID}, TextFormat, []byte("42.5"), UseStore, utcCtx, "43"},
		{"numeric text declared into text", policy.TypeText, Source{OID: pgtype.NumericOID}, TextFormat, []byte("1e3"), UseStore, utcCtx, "1000"},
		{"timestamptz into text in the session zone", policy.TypeText, Source{OID: pgtype.TimestamptzOID}, TextFormat, []byte("2024-01-01 23:30:00-05"), UseStore, utcCtx, "2024-01-02 04:30:00+00"},
		// Constants (finding 3 and 9).
		{"numeric constant into int4", policy.TypeInt4, Source{OID: pgtype.NumericOID}, TextFormat, []byte("42.7"), UseStore, utcCtx, "43"},
		{"negative half rounds away from zero", policy.TypeInt4, Source{OID: pgtype.NumericOID}, TextFormat, []byte("-42.5"), UseStore, utcCtx, "-43"},
		{"numeric constant 42.0 into int2", policy.TypeInt2, Source{OID: pgtype.NumericOID}, TextFormat, []byte("42.0"), UseStore, utcCtx, "42"},
		{"1.5::float4 into float8", policy.TypeFloat8, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.Float4OID)}, TextFormat, []byte("0.1"), UseStore, utcCtx, "0.10000000149011612"},
		{"true::int", policy.TypeInt4, Source{OID: pgtype.BoolOID, Casts: cast(pgtype.Int4OID)}, TextFormat, []byte("true"), UseStore, utcCtx, "1"},
		{"bool constant into int4", policy.TypeInt4, Source{OID: pgtype.BoolOID}, TextFormat, []byte("true"), UseStore, utcCtx, "!42804"},
		{"70000::int2", policy.TypeInt4, Source{OID: pgtype.Int4OID, Casts: cast(pgtype.Int2OID)}, TextFormat, []byte("70000"), UseStore, utcCtx, "!22003"},
		{"varchar(3) truncates", policy.TypeText, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.VarcharOID, 3)}, TextFormat, []byte("abcdef"), UseStore, utcCtx, "abc"},
		{"varchar(3) counts characters", policy.TypeText, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.VarcharOID, 3)}, TextFormat, []byte("žluťoučký"), UseStore, utcCtx, "žlu"},
		{"char(5) pads", policy.TypeChar, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.BPCharOID, 5)}, TextFormat, []byte("abc"), UseStore, utcCtx, "abc  "},
		{"char(5) into text drops the padding", policy.TypeText, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.BPCharOID, 5)}, TextFormat, []byte("abc"), UseStore, utcCtx, "abc"},
		{"numeric(4,2) rounds", policy.TypeNumeric, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.NumericOID, 4, 2)}, TextFormat, []byte("1.005"), UseStore, utcCtx, "1.01"},
		{"numeric(3,2) overflows", policy.TypeNumeric, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.NumericOID, 3, 2)}, TextFormat, []byte("10"), UseStore, utcCtx, "!22003"},
		{"timestamp(0) rounds", policy.TypeTimestamp, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.TimestampOID, 0)}, TextFormat, []byte("2024-06-15 13:45:30.5"), UseStore, utcCtx, "2024-06-15 13:45:31"},
		{"uuid cast to int", policy.TypeInt4, Source{OID: pgtype.UnknownOID, Casts: []Cast{{OID: pgtype.UUIDOID}, {OID: pgtype.Int4OID}}}, TextFormat, []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), UseStore, utcCtx, "!42846"},
		// Between date and time types, in the session's zone (finding 4).
		{"timestamptz into date in UTC", policy.TypeDate, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.TimestamptzOID)}, TextFormat, []byte("2024-01-01T23:30:00-05:00"), UseStore, utcCtx, "2024-01-02"},
		{"timestamptz into date in New York", policy.TypeDate, Source{OID: pgtype.UnknownOID, Casts: cast(pgtype.TimestamptzOID)}, TextFormat, []byte("2024-01-01T23:30:00-05:00"), UseStore, nyCtx, "2024-01-01"},
		{"timestamptz into timestamp", policy.TypeTimestamp, Source{OID: pgtype.TimestamptzOID}, TextFormat, []byte("2024-01-01T23:30:00-05:00"), UseStore, utcCtx, "2024-01-02 04:30:00"},
		{"date into timestamptz at local midnight", policy.TypeTimestamptz, Source{OID: pgtype.DateOID}, TextFormat, []byte("2024-07-01"), UseStore, nyCtx, "2024-07-01 00:00:00-04"},
		{"infinite date into timestamp", policy.TypeTimestamp, Source{OID: pgtype.DateOID}, TextFormat, []byte("infinity"), UseStore, utcCtx, "infinity"},
		// Comparisons: PostgreSQL compares in the wider type.
		{"int4 = 1.5 matches nothing", policy.TypeInt4, Source{OID: pgtype.NumericOID}, TextFormat, []byte("1.5"), UseCompare, utcCtx, "nomatch"},
		{"int4 = 42.0 matches 42", policy.TypeInt4, Source{OID: pgtype.NumericOID}, TextFormat, []byte("42.0"), UseCompare, utcCtx, "42"},
		{"int4 = -0 float8 matches 0", policy.TypeInt4, Source{OID: pgtype.Float8OID}, BinaryFormat, f8Bin(math.Copysign(0, -1)), UseCompare, utcCtx, "0"},
		{"int2 = int8 beyond int2 matches nothing", policy.TypeInt2, Source{OID: pgtype.Int8OID}, BinaryFormat, int8Bin(1 << 40), UseCompare, utcCtx, "nomatch"},
		{"int8 = large float8 is refused", policy.TypeInt8, Source{OID: pgtype.Float8OID}, BinaryFormat, f8Bin(9.2e18), UseCompare, utcCtx, "!0A000"},
		{"numeric = float8 is refused", policy.TypeNumeric, Source{OID: pgtype.Float8OID}, BinaryFormat, f8Bin(1.5), UseCompare, utcCtx, "!0A000"},
		{"date = timestamp at noon matches nothing", policy.TypeDate, Source{OID: pgtype.TimestampOID}, TextFormat, []byte("2024-01-01 12:00"), UseCompare, utcCtx, "nomatch"},
		{"date = timestamp at midnight", policy.TypeDate, Source{OID: pgtype.TimestampOID}, TextFormat, []byte("2024-01-01 00:00"), UseCompare, utcCtx, "2024-01-01"},
		{"float8 = float4 compares widened", policy.TypeFloat8, Source{OID: pgtype.Float4OID}, BinaryFormat, f4Bin(1.5), UseCompare, utcCtx, "1.5"},
		// The server's version decides the input rules.
		{"underscores before 16", policy.TypeInt4, Source{}, TextFormat, []byte("1_000"), UseStore, pg15, "!22P02"},
		{"hex before 16", policy.TypeInt8, Source{}, TextFormat, []byte("0x1F"), UseStore, pg15, "!22P02"},
		{"underscores from 16", policy.TypeInt4, Source{}, TextFormat, []byte("1_000"), UseStore, pg16, "1000"},
		{"numeric underscores before 16", policy.TypeNumeric, Source{}, TextFormat, []byte("1_000.5"), UseStore, pg15, "!22P02"},
		{"numeric plus zero", policy.TypeNumeric, Source{}, TextFormat, []byte("+0"), UseStore, pg15, "0"},
		{"numeric smallest scale", policy.TypeNumeric, Source{}, TextFormat, []byte("1e-16384"), UseStore, pg15, "!22003"},
		{"json into jsonb normalises", policy.TypeJSONB, Source{OID: pgtype.JSONOID}, TextFormat, []byte(`{"b":1, "a" : 2}`), UseStore, utcCtx, `{"a": 2, "b": 1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := CodecFor(tc.to)
			canon, matches, err := c.Convert(tc.src, tc.format, tc.value, tc.use, tc.tc)
			got := ""
			switch {
			case err != nil:
				var st interface{ SQLState() string }
				if !errors.As(err, &st) {
					t.Fatalf("error %v has no SQLSTATE", err)
				}
				got = "!" + st.SQLState()
			case !matches:
				got = "nomatch"
			default:
				text, err := c.AppendText(nil, canon, tc.tc)
				if err != nil {
					t.Fatal(err)
				}
				got = string(text)
			}
			if got != tc.want {
				t.Errorf("got %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestByteaEscapeOutput(t *testing.T) {
	got, err := CodecFor(policy.TypeBytea).AppendText(nil, []byte("a\\b\x00\xff'~"), &TextContext{ByteaEscape: true})
	if err != nil {
		t.Fatal(err)
	}
	// SELECT '\x615c6200ff277e'::bytea under bytea_output = escape.
	if want := `a\\b\000\377'~`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestEqualFormsOfFloatZero(t *testing.T) {
	c := CodecFor(policy.TypeFloat8)
	zero, negZero := putFloat8(0), putFloat8(math.Copysign(0, -1))
	if got := c.EqualForms(negZero); len(got) != 2 || string(got[0]) != string(negZero) || string(got[1]) != string(zero) {
		t.Errorf("EqualForms(-0) = %x, want [-0 0]", got)
	}
	if got := c.EqualForms(putFloat8(1)); len(got) != 1 {
		t.Errorf("EqualForms(1) = %x, want one form", got)
	}
	if got := CodecFor(policy.TypeInt8).EqualForms(make([]byte, 8)); len(got) != 1 {
		t.Errorf("int8 0 has %d forms, want 1", len(got))
	}
}
