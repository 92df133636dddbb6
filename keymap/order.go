package keymap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/pgcloak/pgcloak/policy"
)

// The order encoding of an ordered type maps a canonical value to bytes
// whose bytes.Compare order is PostgreSQL's order of the values (text in
// COLLATE "C", byte order). Values PostgreSQL calls equal (float8 -0 and 0,
// numeric 1.5 and 1.50) get identical encodings, and no encoding is a
// proper prefix of another: the CLWW term of an encoding compares by the
// first bit where two encodings differ, so there must be one within both.
// Every encoding is at least one byte long.

// errOrderForm is a canonical value orderBytes cannot encode: the wrong
// length, or a form the codec would never produce.
var errOrderForm = errors.New("keymap: not a canonical value of the ordered type")

// orderBytes returns the order encoding of a canonical value of t.
func orderBytes(t policy.LogicalType, canonical []byte) ([]byte, error) {
	return appendOrderBytes(nil, t, canonical)
}

// orderWidth is the encoding width of the fixed-width ordered types (their
// canonical width too), 0 for the variable-width ones.
func orderWidth(t policy.LogicalType) int {
	switch t {
	case policy.TypeInt2:
		return 2
	case policy.TypeInt4, policy.TypeDate:
		return 4
	case policy.TypeInt8, policy.TypeFloat8, policy.TypeTimestamp, policy.TypeTimestamptz:
		return 8
	}
	return 0
}

// appendOrderBytes appends the order encoding of a canonical value of t to
// dst.
func appendOrderBytes(dst []byte, t policy.LogicalType, canonical []byte) ([]byte, error) {
	switch t {
	case policy.TypeInt2, policy.TypeInt4, policy.TypeInt8,
		policy.TypeDate, policy.TypeTimestamp, policy.TypeTimestamptz:
		// Two's complement big-endian with the sign bit flipped is offset
		// binary: unsigned order is signed order. date's and timestamp's
		// ±infinity are the extreme integers, so they land at the ends.
		if len(canonical) != orderWidth(t) {
			return nil, errOrderForm
		}
		n := len(dst)
		dst = append(dst, canonical...)
		dst[n] ^= 0x80
		return dst, nil
	case policy.TypeFloat8:
		if len(canonical) != 8 {
			return nil, errOrderForm
		}
		return binary.BigEndian.AppendUint64(dst, float8Order(binary.BigEndian.Uint64(canonical))), nil
	case policy.TypeNumeric:
		return appendNumericOrder(dst, canonical)
	case policy.TypeText:
		// The terminator sorts a value before its extensions ("a" < "a\x01"),
		// as byte order does, and makes the encodings prefix-free; it cannot
		// occur inside text, which PostgreSQL keeps free of NUL.
		for _, c := range canonical {
			if c == 0 {
				return nil, errOrderForm
			}
		}
		return append(append(dst, canonical...), 0), nil
	}
	return nil, fmt.Errorf("keymap: type %s cannot be ordered", t)
}

// float8Order maps IEEE 754 bits to a uint64 whose unsigned order is
// float8_cmp's: -Inf < negatives < ±0 < positives < +Inf < NaN, every NaN
// equal to every other, and -0 equal to 0.
func float8Order(bits uint64) uint64 {
	f := math.Float64frombits(bits)
	switch {
	case f != f:
		return math.MaxUint64
	case f == 0:
		bits = 0
	}
	if bits&(1<<63) == 0 {
		return bits | 1<<63
	}
	// A larger magnitude is a smaller negative number.
	return ^bits
}

// Tags of the numeric encoding, in PostgreSQL's order (cmp_numerics).
const (
	numOrderNInf = 0x00
	numOrderNeg  = 0x01
	numOrderZero = 0x02
	numOrderPos  = 0x03
	numOrderPInf = 0x04
	numOrderNaN  = 0x05
)

// appendNumericOrder encodes a numeric by value, ignoring the display
// scale: a tag, then for a finite nonzero value the weight of its first
// nonzero base-10000 digit (offset by 0x8000 so it sorts unsigned), the
// digits up to the last nonzero one as uint16 codes, and a terminator. With
// the first digit nonzero the weight orders magnitudes of different size;
// with the last one nonzero a shorter digit string is a smaller magnitude,
// so the terminator sorts below every digit code. Negative values invert
// the weight and the digit codes and end in a terminator above every code,
// so that larger magnitudes sort first (-1.0001 < -1, -1.23 < -1.2).
func appendNumericOrder(dst, canonical []byte) ([]byte, error) {
	if len(canonical) < 8 {
		return nil, errOrderForm
	}
	nd := int(binary.BigEndian.Uint16(canonical))
	weight := int(int16(binary.BigEndian.Uint16(canonical[2:])))
	sign := binary.BigEndian.Uint16(canonical[4:])
	if len(canonical) != 8+2*nd {
		return nil, errOrderForm
	}
	switch sign {
	case numericNInf:
		return append(dst, numOrderNInf), nil
	case numericPInf:
		return append(dst, numOrderPInf), nil
	case numericNaN:
		return append(dst, numOrderNaN), nil
	case numericPos, numericNeg:
	default:
		return nil, errOrderForm
	}
	if nd == 0 {
		// Zero, whatever its sign and display scale (0.00 = 0).
		return append(dst, numOrderZero), nil
	}
	digits := canonical[8:]
	digit := func(i int) uint16 { return binary.BigEndian.Uint16(digits[2*i:]) }
	// The codec strips leading and trailing zero digits (so the display
	// scale is all that tells 1.5 from 1.50). An unstripped form is not
	// canonical: its encoding would still order right, but its length
	// would not follow from the canonical length, which Decrypt relies on.
	if digit(0) == 0 || digit(nd-1) == 0 {
		return nil, errOrderForm
	}
	exp := uint16(weight + 0x8000)
	if sign == numericPos {
		dst = binary.BigEndian.AppendUint16(append(dst, numOrderPos), exp)
		for i := range nd {
			d := digit(i)
			if d >= nbase {
				return nil, errOrderForm
			}
			// d+1 keeps 0 free for the terminator.
			dst = binary.BigEndian.AppendUint16(dst, d+1)
		}
		return binary.BigEndian.AppendUint16(dst, 0x0000), nil
	}
	dst = binary.BigEndian.AppendUint16(append(dst, numOrderNeg), ^exp)
	for i := range nd {
		d := digit(i)
		if d >= nbase {
			return nil, errOrderForm
		}
		// 10000-d is in 1..10000, decreasing in d, below the terminator.
		dst = binary.BigEndian.AppendUint16(dst, nbase-d)
	}
	return binary.BigEndian.AppendUint16(dst, 0xFFFF), nil
}
