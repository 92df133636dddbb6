package keymap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// textCodec serves text, varchar and char: the canonical form is the UTF-8
// bytes, identical in both wire formats.
type textCodec struct{}

func (textCodec) fromText(src []byte, _ *TextContext) ([]byte, error) { return validText(src) }
func (textCodec) fromBinary(src []byte) ([]byte, error)               { return validText(src) }

func (textCodec) appendFromText(dst, src []byte, _ *TextContext) ([]byte, error) {
	return appendValidText(dst, src)
}
func (textCodec) appendFromBinary(dst, src []byte) ([]byte, error) { return appendValidText(dst, src) }

func (textCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	return appendValidText(dst, canonical)
}

func (textCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return appendValidText(dst, canonical)
}

// validText copies src after checking it is text PostgreSQL could store.
func validText(src []byte) ([]byte, error) {
	if err := checkText(src); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, len(src)), src...), nil
}

func appendValidText(dst, src []byte) ([]byte, error) {
	if err := checkText(src); err != nil {
		return nil, err
	}
	return append(dst, src...), nil
}

func checkText(src []byte) error {
	if bytes.IndexByte(src, 0) >= 0 {
		return errNUL
	}
	if !utf8.Valid(src) {
		return errEncoding
	}
	return nil
}

// byteaCodec: the canonical form is the raw bytes.
type byteaCodec struct{}

func (byteaCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
		return decodeByteaHex(src[2:])
	}
	return decodeByteaEscape(src)
}

func (byteaCodec) fromBinary(src []byte) ([]byte, error) {
	return append(make([]byte, 0, len(src)), src...), nil
}

// appendText prints as byteaout does: the hex format, PostgreSQL's default
// bytea_output, or the escape format (printable ASCII as is, a backslash
// doubled, every other byte as \ooo).
func (byteaCodec) appendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
	if tc == nil || !tc.ByteaEscape {
		return hex.AppendEncode(append(dst, '\\', 'x'), canonical), nil
	}
	for _, c := range canonical {
		switch {
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '\\', '0'+c>>6, '0'+c>>3&7, '0'+c&7)
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func (byteaCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return append(dst, canonical...), nil
}

// decodeByteaHex follows PostgreSQL's hex_decode: pairs of hex digits,
// whitespace allowed between pairs.
func decodeByteaHex(src []byte) ([]byte, error) {
	out := make([]byte, 0, len(src)/2)
	for i := 0; i < len(src); {
		if isSpace(src[i]) {
			i++
			continue
		}
		if i+1 >= len(src) {
			return nil, errOddHex
		}
		var b [1]byte
		if _, err := hex.Decode(b[:], src[i:i+2]); err != nil {
			return nil, errBadHex
		}
		out = append(out, b[0])
		i += 2
	}
	return out, nil
}

// decodeByteaEscape follows PostgreSQL's escape format: \\ is a backslash,
// \ooo an octal byte, anything else literal.
func decodeByteaEscape(src []byte) ([]byte, error) {
	out := make([]byte, 0, len(src))
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch {
		case i+1 < len(src) && src[i+1] == '\\':
			out = append(out, '\\')
			i += 2
		case i+3 < len(src) && isOctalEscape(src[i+1:i+4]):
			out = append(out, (src[i+1]-'0')<<6|(src[i+2]-'0')<<3|(src[i+3]-'0'))
			i += 4
		default:
			return nil, reason("invalid escape sequence")
		}
	}
	return out, nil
}

func isOctalEscape(b []byte) bool {
	return b[0] >= '0' && b[0] <= '3' && b[1] >= '0' && b[1] <= '7' && b[2] >= '0' && b[2] <= '7'
}

// intCodec serves int2, int4 and int8: canonical is the big-endian integer.
type intCodec struct{ bits int }

func (c intCodec) size() int { return c.bits / 8 }

func (c intCodec) fromText(src []byte, tc *TextContext) ([]byte, error) {
	v, err := parsePGInt(trimSpace(src), c.bits, tc.modernNumbers())
	if err != nil {
		return nil, err
	}
	return c.put(make([]byte, 0, c.size()), v), nil
}

func (c intCodec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, c.size()); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, len(src)), src...), nil
}

func (c intCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	if len(canonical) != c.size() {
		return nil, errLength
	}
	return strconv.AppendInt(dst, c.get(canonical), 10), nil
}

func (c intCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return fixedBinary(dst, canonical, c.size())
}

func (c intCodec) put(dst []byte, v int64) []byte {
	switch c.bits {
	case 16:
		return binary.BigEndian.AppendUint16(dst, uint16(v))
	case 32:
		return binary.BigEndian.AppendUint32(dst, uint32(v))
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func (c intCodec) get(b []byte) int64 {
	switch c.bits {
	case 16:
		return int64(int16(binary.BigEndian.Uint16(b)))
	case 32:
		return int64(int32(binary.BigEndian.Uint32(b)))
	}
	return int64(binary.BigEndian.Uint64(b))
}

// parsePGInt accepts what PostgreSQL's integer input accepts (whitespace
// already trimmed): an optional sign and decimal digits, and with modern
// (PostgreSQL 16) a 0x/0o/0b prefixed literal and single underscores
// between digits.
func parsePGInt(s []byte, bits int, modern bool) (int64, error) {
	var sign []byte
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		sign, s = s[:1], s[1:]
	}
	if !modern {
		return parseDecimalInt(sign, s, bits)
	}
	base := 10
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 10 {
			s = s[2:]
			if len(s) > 0 && s[0] == '_' {
				s = s[1:]
			}
		}
	}
	digits, ok := stripUnderscores(s, base)
	if !ok {
		return 0, errSyntax
	}
	v, err := strconv.ParseInt(string(sign)+string(digits), base, bits)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errRange
	}
	if err != nil {
		return 0, errSyntax
	}
	return v, nil
}

// parseDecimalInt is PostgreSQL 15's integer input: decimal digits only.
func parseDecimalInt(sign, s []byte, bits int) (int64, error) {
	if len(s) == 0 {
		return 0, errSyntax
	}
	for _, c := range s {
		if !isDigit(c) {
			return 0, errSyntax
		}
	}
	v, err := strconv.ParseInt(string(sign)+string(s), 10, bits)
	if err != nil {
		return 0, errRange
	}
	return v, nil
}

// stripUnderscores removes underscores that sit between two digits of base
// and rejects any other underscore or non-digit.
func stripUnderscores(s []byte, base int) ([]byte, bool) {
	if len(s) == 0 {
		return nil, false
	}
	out := make([]byte, 0, len(s))
	for i, c := range s {
		if c == '_' {
			if i == 0 || i == len(s)-1 || s[i-1] == '_' {
				return nil, false
			}
			continue
		}
		if !isBaseDigit(c, base) {
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

func isBaseDigit(c byte, base int) bool {
	switch base {
	case 2:
		return c == '0' || c == '1'
	case 8:
		return c >= '0' && c <= '7'
	case 16:
		return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')
	}
	return isDigit(c)
}

// boolCodec: canonical is one byte, 0 or 1.
type boolCodec struct{}

func (boolCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	v, ok := parsePGBool(trimSpace(src))
	if !ok {
		return nil, errSyntax
	}
	return boolByte(v), nil
}

// fromBinary normalises like PostgreSQL's boolrecv: any non-zero byte is true.
func (boolCodec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 1); err != nil {
		return nil, err
	}
	return boolByte(src[0] != 0), nil
}

func (boolCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	if len(canonical) != 1 || canonical[0] > 1 {
		return nil, errBinaryForm
	}
	if canonical[0] == 1 {
		return append(dst, 't'), nil
	}
	return append(dst, 'f'), nil
}

func (boolCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	if len(canonical) != 1 || canonical[0] > 1 {
		return nil, errBinaryForm
	}
	return append(dst, canonical[0]), nil
}

func boolByte(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// parsePGBool is PostgreSQL's parse_bool: any unambiguous prefix of
// true/false/yes/no, on/off (at least two letters), 1/0; any case.
func parsePGBool(s []byte) (value, ok bool) {
	if len(s) == 0 {
		return false, false
	}
	prefixOf := func(word string, min int) bool {
		return len(s) >= min && len(s) <= len(word) && equalFold(s, word[:len(s)])
	}
	switch s[0] | 0x20 {
	case 't':
		return true, prefixOf("true", 1)
	case 'f':
		return false, prefixOf("false", 1)
	case 'y':
		return true, prefixOf("yes", 1)
	case 'n':
		return false, prefixOf("no", 1)
	case 'o':
		if prefixOf("on", 2) {
			return true, true
		}
		return false, prefixOf("off", 2)
	}
	if len(s) == 1 && (s[0] == '1' || s[0] == '0') {
		return s[0] == '1', true
	}
	return false, false
}

// float8Codec: canonical is the IEEE 754 big-endian double, NaNs collapsed
// to the one PostgreSQL produces.
type float8Codec struct{}

const canonicalNaN = 0x7FF8000000000000

func (float8Codec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	f, err := parsePGFloat(trimSpace(src))
	if err != nil {
		return nil, err
	}
	return putFloat8(f), nil
}

func (float8Codec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 8); err != nil {
		return nil, err
	}
	return putFloat8(math.Float64frombits(binary.BigEndian.Uint64(src))), nil
}

func (float8Codec) appendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
	if len(canonical) != 8 {
		return nil, errLength
	}
	prec := 0
	if tc != nil {
		prec = tc.FloatPrecision
	}
	return appendPGFloat(dst, math.Float64frombits(binary.BigEndian.Uint64(canonical)), prec), nil
}

func (float8Codec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return fixedBinary(dst, canonical, 8)
}

func putFloat8(f float64) []byte {
	bits := math.Float64bits(f)
	if math.IsNaN(f) {
		bits = canonicalNaN
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), bits)
}

// parsePGFloat accepts what float8in accepts: decimal (and C99 hex) floats,
// NaN, [+-]Infinity and [+-]inf in any case. Like PostgreSQL, a value too
// small to be anything but zero is out of range, not silently zero.
func parsePGFloat(s []byte) (float64, error) {
	if len(s) == 0 || bytes.IndexByte(s, '_') >= 0 {
		return 0, errSyntax
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errRange
	}
	if err != nil {
		return 0, errSyntax
	}
	if f == 0 && hasNonZeroMantissa(s) {
		return 0, errRange
	}
	return f, nil
}

// hasNonZeroMantissa reports whether a decimal literal has a non-zero digit
// before its exponent.
func hasNonZeroMantissa(s []byte) bool {
	if len(s) > 2 && s[0] == '0' && s[1]|0x20 == 'x' {
		s = s[2:]
	}
	for _, c := range s {
		if c|0x20 == 'e' || c|0x20 == 'p' {
			return false
		}
		if c >= '1' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f' {
			return true
		}
	}
	return false
}

// appendPGFloat prints like float8out. With prec 0 (the default
// extra_float_digits): the shortest digits that round-trip, in exponent
// form when the decimal exponent is < -4 or >= 15 (as %g would), e.g.
// 1e+20 and 1e-05. Otherwise %.{prec}g, whose rules Go's 'g' follows.
func appendPGFloat(dst []byte, f float64, prec int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case prec > 0:
		return strconv.AppendFloat(dst, f, 'g', prec, 64)
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	if math.Abs(f) >= 1<<51 && onRoundingBoundary(e, f) {
		// float8out's Ryu does not take a decimal that only rounds to f
		// by round-half-even (it excludes the interval's bounds): the
		// shortest that lies strictly inside, one digit or more longer.
		mantissa := e[:bytes.IndexByte(e, 'e')]
		digits := len(mantissa) - bytes.Count(mantissa, []byte(".")) - bytes.Count(mantissa, []byte("-"))
		for p := digits + 1; p <= 17; p++ {
			e = strconv.AppendFloat(tmp[:0], f, 'e', p-1, 64)
			if g, err := strconv.ParseFloat(string(e), 64); err == nil && g == f && !onRoundingBoundary(e, f) {
				break
			}
		}
	}
	exp, _ := strconv.Atoi(string(e[bytes.IndexByte(e, 'e')+1:]))
	if exp < -4 || exp >= 15 {
		return append(dst, e...)
	}
	// Below 1e15, so never on a boundary (see onRoundingBoundary).
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

// onRoundingBoundary reports whether the decimal s lies exactly halfway
// between f and one of its neighbours: it reads back as f only because
// of round-half-even. Only a float of magnitude 2^51 or more can have
// such a decimal of at most 17 digits (the halfway points of smaller
// ones have longer decimal expansions).
func onRoundingBoundary(s []byte, f float64) bool {
	d, ok := new(big.Rat).SetString(string(s))
	if !ok {
		return false
	}
	x := new(big.Rat).SetFloat64(f)
	for _, dir := range []float64{math.Inf(-1), math.Inf(1)} {
		n := math.Nextafter(f, dir)
		if math.IsInf(n, 0) {
			continue
		}
		mid := new(big.Rat).Add(x, new(big.Rat).SetFloat64(n))
		if mid.Quo(mid, big.NewRat(2, 1)).Cmp(d) == 0 {
			return true
		}
	}
	return false
}

// uuidCodec: canonical is the 16 bytes.
type uuidCodec struct{}

func (uuidCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	return parsePGUUID(src)
}

func (uuidCodec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 16); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, 16), src...), nil
}

func (uuidCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	if len(canonical) != 16 {
		return nil, errLength
	}
	// uuid_out: lowercase hex in groups of 8-4-4-4-12, appended in place
	// (pgtype's encoder formats a string first: two allocations a value).
	dst = hex.AppendEncode(dst, canonical[:4])
	for _, g := range [...][2]int{{4, 6}, {6, 8}, {8, 10}, {10, 16}} {
		dst = hex.AppendEncode(append(dst, '-'), canonical[g[0]:g[1]])
	}
	return dst, nil
}

func (uuidCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return fixedBinary(dst, canonical, 16)
}

// parsePGUUID follows PostgreSQL's string_to_uuid: optional braces, 32 hex
// digits in any case, a hyphen allowed after any group of four.
func parsePGUUID(s []byte) ([]byte, error) {
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	out := make([]byte, 16)
	for i := range 16 {
		if len(s) < 2 {
			return nil, errSyntax
		}
		if _, err := hex.Decode(out[i:i+1], s[:2]); err != nil {
			return nil, errSyntax
		}
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < 15 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return nil, errSyntax
		}
		s = s[1:]
	}
	if len(s) != 0 {
		return nil, errSyntax
	}
	return out, nil
}
