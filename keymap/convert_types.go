package keymap

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// float4Codec reads and prints real, a type values arrive as but no
// encrypted column has: canonical is the IEEE 754 big-endian single.
type float4Codec struct{}

func (float4Codec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	f, err := parsePGFloat32(trimSpace(src))
	if err != nil {
		return nil, err
	}
	return putFloat4(f), nil
}

func (float4Codec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 4); err != nil {
		return nil, err
	}
	return putFloat4(math.Float32frombits(binary.BigEndian.Uint32(src))), nil
}

// appendText prints like float4out: the shortest digits that round-trip,
// in exponent form when the decimal exponent is < -4 or >= 6, or
// %.{prec}g when extra_float_digits asks for fewer digits.
func (float4Codec) appendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
	if len(canonical) != 4 {
		return nil, errLength
	}
	f := math.Float32frombits(binary.BigEndian.Uint32(canonical))
	switch {
	case f != f:
		return append(dst, "NaN"...), nil
	case math.IsInf(float64(f), 1):
		return append(dst, "Infinity"...), nil
	case math.IsInf(float64(f), -1):
		return append(dst, "-Infinity"...), nil
	case tc != nil && tc.FloatPrecision > 0:
		return strconv.AppendFloat(dst, float64(f), 'g', max(1, tc.FloatPrecision-9), 32), nil
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], float64(f), 'e', -1, 32)
	exp, _ := strconv.Atoi(string(e[bytes.IndexByte(e, 'e')+1:]))
	if exp < -4 || exp >= 6 {
		return append(dst, e...), nil
	}
	return strconv.AppendFloat(dst, float64(f), 'f', -1, 32), nil
}

func (float4Codec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return fixedBinary(dst, canonical, 4)
}

func putFloat4(f float32) []byte {
	bits := math.Float32bits(f)
	if f != f {
		bits = 0x7FC00000
	}
	return binary.BigEndian.AppendUint32(nil, bits)
}

// parsePGFloat32 is float4in: strtof's syntax, out of range when the value
// overflows or a non-zero literal becomes zero.
func parsePGFloat32(s []byte) (float32, error) {
	if len(s) == 0 || bytes.IndexByte(s, '_') >= 0 {
		return 0, errSyntax
	}
	f, err := strconv.ParseFloat(string(s), 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errRange
	}
	if err != nil {
		return 0, errSyntax
	}
	if f == 0 && hasNonZeroMantissa(s) {
		return 0, errRange
	}
	return float32(f), nil
}

// jsonCodec reads json, which PostgreSQL keeps as the text it was given
// once it has checked the syntax. No encrypted column has it; values
// declared json become jsonb (an assignment cast) or text.
type jsonCodec struct{}

func (jsonCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	if err := checkText(src); err != nil {
		return nil, err
	}
	if !json.Valid(src) {
		return nil, errSyntax
	}
	return append([]byte(nil), src...), nil
}

func (c jsonCodec) fromBinary(src []byte) ([]byte, error) { return c.fromText(src, nil) }

func (jsonCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	return append(dst, canonical...), nil
}

func (jsonCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return append(dst, canonical...), nil
}
