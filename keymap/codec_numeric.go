package keymap

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/jackc/pgx/v5/pgtype"
)

// numericCodec: canonical is PostgreSQL's numeric binary form exactly as
// numeric_send writes it: base-10000 digits with leading and trailing zero
// digits stripped, and the display scale kept, so "7.0" and "7" differ.
type numericCodec struct{}

// Header fields of the numeric binary form.
const (
	numericPos     = 0x0000
	numericNeg     = 0x4000
	numericNaN     = 0xC000
	numericPInf    = 0xD000
	numericNInf    = 0xF000
	numericMaxDisp = 0x3FFF // NUMERIC_DSCALE_MASK
	nbase          = 10000
)

// numericVar is an unpacked numeric, as in PostgreSQL's NumericVar.
type numericVar struct {
	weight int
	sign   uint16
	dscale int
	digits []uint16
}

func (numericCodec) fromText(src []byte, tc *TextContext) ([]byte, error) {
	s := trimSpace(src)
	if sign, ok := numericSpecial(s); ok {
		return numericVar{sign: sign}.encode(), nil
	}
	if !tc.modernNumbers() && bytes.IndexByte(s, '_') >= 0 {
		return nil, errSyntax
	}
	literal, dscale, err := numericLiteral(s)
	if err != nil {
		return nil, err
	}
	var n pgtype.Numeric
	if err := n.ScanScientific(literal); err != nil {
		return nil, errRange
	}
	// pgtype does the decimal-to-base-10000 conversion; its output is valid
	// but not always stripped, so it goes through the same normalisation as
	// client binary input.
	bin, err := pgtype.NumericCodec{}.PlanEncode(nil, pgtype.NumericOID, pgtype.BinaryFormatCode, n).Encode(n, nil)
	if err != nil {
		return nil, errRange
	}
	canonical, err := numericCodec{}.fromBinary(bin)
	if err != nil {
		return nil, errRange
	}
	// pgtype drops trailing zeros of the mantissa with their scale.
	return withDisplayScale(canonical, dscale)
}

// withDisplayScale sets a canonical numeric's display scale to dscale
// when that is larger (more digits shown, the value unchanged).
func withDisplayScale(canonical []byte, dscale int) ([]byte, error) {
	v, err := decodeNumeric(canonical)
	if err != nil || v.sign == numericNaN || v.sign == numericPInf || v.sign == numericNInf || dscale <= v.dscale {
		return canonical, err
	}
	v.dscale = dscale
	return v.encode(), nil
}

func (numericCodec) fromBinary(src []byte) ([]byte, error) {
	v, err := decodeNumeric(src)
	if err != nil {
		return nil, err
	}
	v.truncate()
	v.strip()
	if v.weight > math.MaxInt16 || v.weight < -math.MaxInt16 {
		return nil, errRange
	}
	return v.encode(), nil
}

func (numericCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	v, err := decodeNumeric(canonical)
	if err != nil {
		return nil, err
	}
	return v.appendText(dst), nil
}

func (numericCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	v, err := decodeNumeric(canonical)
	if err != nil {
		return nil, err
	}
	if v.sign == numericPInf || v.sign == numericNInf {
		// numeric_send reads the display scale of ±Infinity out of the
		// short header's bits, which gives 32; send what PostgreSQL sends.
		// (The canonical form keeps 0, so ciphertexts do not change.)
		return append(dst, 0, 0, 0, 0, byte(v.sign>>8), 0, 0, infinityDscale), nil
	}
	return append(dst, canonical...), nil
}

// infinityDscale is the display scale numeric_send reports for ±Infinity.
const infinityDscale = 0x20

// numericSpecial recognises NaN and the infinities in any case, as numeric_in.
func numericSpecial(s []byte) (uint16, bool) {
	switch {
	case equalFold(s, "nan"):
		return numericNaN, true
	case equalFold(s, "infinity"), equalFold(s, "+infinity"), equalFold(s, "inf"), equalFold(s, "+inf"):
		return numericPInf, true
	case equalFold(s, "-infinity"), equalFold(s, "-inf"):
		return numericNInf, true
	}
	return 0, false
}

// numericLiteral checks PostgreSQL's numeric literal grammar — sign, digits
// with an optional point (at least one digit overall), optional exponent,
// underscores only between digits — and returns it without underscores,
// with the display scale PostgreSQL gives it.
// pgtype's parser is laxer, so it only sees what passed here. An exponent
// beyond PostgreSQL's bound is out of range (22003), as numeric_in says.
func numericLiteral(s []byte) (string, int, error) {
	out := make([]byte, 0, len(s))
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		out = append(out, s[i])
		i++
	}
	intDigits, i, out := scanDigits(s, i, out)
	if i < 0 {
		return "", 0, errSyntax
	}
	fracDigits := 0
	if i < len(s) && s[i] == '.' {
		out = append(out, '.')
		if fracDigits, i, out = scanDigits(s, i+1, out); i < 0 {
			return "", 0, errSyntax
		}
	}
	if intDigits+fracDigits == 0 {
		return "", 0, errSyntax
	}
	exp := 0
	if i < len(s) && s[i]|0x20 == 'e' {
		var err error
		if out, exp, i, err = numericExponent(s, i+1, append(out, 'e')); err != nil {
			return "", 0, err
		}
	}
	if i != len(s) {
		return "", 0, errSyntax
	}
	// make_result's limits: a display scale of at most 16383 digits, and
	// at most 32768 base-10000 digits before the point unless it is zero.
	if fracDigits-exp > numericMaxDisp {
		return "", 0, errRange
	}
	if intDigits+exp > 4*(math.MaxInt16+1) && bytes.ContainsAny(s[:i], "123456789") {
		return "", 0, errRange
	}
	if out[0] == '+' {
		out = out[1:]
	}
	// numeric_in's display scale: the digits after the point, less the
	// exponent (9110e-20 has 20, 100e-2 has 2).
	return string(out), max(0, fracDigits-exp), nil
}

// scanDigits appends the digits at s[i:] (underscores between digits
// dropped) and returns how many there were and where they end; i is -1 for a
// misplaced underscore.
func scanDigits(s []byte, i int, out []byte) (int, int, []byte) {
	n := 0
	for i < len(s) {
		switch {
		case isDigit(s[i]):
			out = append(out, s[i])
			n++
			i++
		case s[i] == '_' && n > 0 && i+1 < len(s) && isDigit(s[i+1]):
			i++
		case s[i] == '_':
			return n, -1, out
		default:
			return n, i, out
		}
	}
	return n, i, out
}

// numericExponent reads an exponent as numeric_in does: beyond ±INT_MAX/2
// it is out of range whatever the digits before it.
func numericExponent(s []byte, i int, out []byte) ([]byte, int, int, error) {
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		out = append(out, s[i])
		i++
	}
	start := i
	exp := 0
	for i < len(s) && isDigit(s[i]) {
		if exp = exp*10 + int(s[i]-'0'); exp >= math.MaxInt32/2 {
			return nil, 0, i, errRange
		}
		out = append(out, s[i])
		i++
	}
	if i == start {
		return nil, 0, i, errSyntax
	}
	if neg {
		exp = -exp
	}
	return out, exp, i, nil
}

// decodeNumeric unpacks and validates a binary numeric the way numeric_recv
// does.
func decodeNumeric(b []byte) (numericVar, error) {
	if len(b) < 8 {
		return numericVar{}, errShortBin
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	v := numericVar{
		weight: int(int16(binary.BigEndian.Uint16(b[2:]))),
		sign:   binary.BigEndian.Uint16(b[4:]),
		dscale: int(binary.BigEndian.Uint16(b[6:])),
	}
	if err := binaryLength(b, 8+2*ndigits); err != nil {
		return numericVar{}, err
	}
	switch v.sign {
	case numericPos, numericNeg:
	case numericNaN, numericPInf, numericNInf:
		return numericVar{sign: v.sign}, nil
	default:
		return numericVar{}, errBinaryForm
	}
	if v.dscale > numericMaxDisp {
		return numericVar{}, errBinaryForm
	}
	v.digits = make([]uint16, ndigits)
	for i := range v.digits {
		d := binary.BigEndian.Uint16(b[8+2*i:])
		if d >= nbase {
			return numericVar{}, errBinaryForm
		}
		v.digits[i] = d
	}
	return v, nil
}

func (v numericVar) special() bool {
	return v.sign == numericNaN || v.sign == numericPInf || v.sign == numericNInf
}

// truncate drops digits the display scale hides, as numeric_recv's
// trunc_var does (truncation, not rounding).
func (v *numericVar) truncate() {
	if v.special() {
		return
	}
	di := (v.weight+1)*4 + v.dscale
	if di <= 0 {
		v.digits = v.digits[:0]
		return
	}
	n := (di + 3) / 4
	if n >= len(v.digits) {
		return
	}
	v.digits = v.digits[:n]
	if r := di % 4; r > 0 {
		p := [4]uint16{1, 1000, 100, 10}[r]
		v.digits[n-1] -= v.digits[n-1] % p
	}
}

// strip removes leading and trailing zero digits; zero has weight 0 and a
// positive sign, as make_result leaves it.
func (v *numericVar) strip() {
	if v.special() {
		return
	}
	for len(v.digits) > 0 && v.digits[0] == 0 {
		v.digits = v.digits[1:]
		v.weight--
	}
	for len(v.digits) > 0 && v.digits[len(v.digits)-1] == 0 {
		v.digits = v.digits[:len(v.digits)-1]
	}
	if len(v.digits) == 0 {
		v.weight, v.sign = 0, numericPos
	}
}

func (v numericVar) encode() []byte {
	out := make([]byte, 8, 8+2*len(v.digits))
	binary.BigEndian.PutUint16(out, uint16(len(v.digits)))
	binary.BigEndian.PutUint16(out[2:], uint16(int16(v.weight)))
	binary.BigEndian.PutUint16(out[4:], v.sign)
	binary.BigEndian.PutUint16(out[6:], uint16(v.dscale))
	for _, d := range v.digits {
		out = binary.BigEndian.AppendUint16(out, d)
	}
	return out
}

// appendText prints like numeric_out (get_str_from_var): the integer part
// without leading zeros, then exactly dscale fractional digits.
func (v numericVar) appendText(dst []byte) []byte {
	switch v.sign {
	case numericNaN:
		return append(dst, "NaN"...)
	case numericPInf:
		return append(dst, "Infinity"...)
	case numericNInf:
		return append(dst, "-Infinity"...)
	case numericNeg:
		dst = append(dst, '-')
	}
	digit := func(i int) uint16 {
		if i >= 0 && i < len(v.digits) {
			return v.digits[i]
		}
		return 0
	}
	if v.weight < 0 {
		dst = append(dst, '0')
	}
	for i := 0; i <= v.weight; i++ {
		dst = appendNBaseDigit(dst, digit(i), i == 0)
	}
	if v.dscale == 0 {
		return dst
	}
	dst = append(dst, '.')
	for written, i := 0, v.weight+1; written < v.dscale; i++ {
		var four [4]byte
		d := digit(i)
		for j := 3; j >= 0; j-- {
			four[j] = byte('0' + d%10)
			d /= 10
		}
		n := min(4, v.dscale-written)
		dst = append(dst, four[:n]...)
		written += n
	}
	return dst
}

// appendNBaseDigit prints one base-10000 digit, zero-padded to four places
// unless it leads the number.
func appendNBaseDigit(dst []byte, d uint16, leading bool) []byte {
	var four [4]byte
	for j := 3; j >= 0; j-- {
		four[j] = byte('0' + d%10)
		d /= 10
	}
	if !leading {
		return append(dst, four[:]...)
	}
	k := 0
	for k < 3 && four[k] == '0' {
		k++
	}
	return append(dst, four[k:]...)
}
