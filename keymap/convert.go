package keymap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/pgcloak/pgcloak/policy"
)

// Source is what a client value is before PostgreSQL would make it a value
// of the column's type: the type it arrives as and the explicit casts
// written around it. Through the proxy the column is bytea, so PostgreSQL
// cannot apply these conversions; Convert applies them as PostgreSQL's
// casts would.
type Source struct {
	// OID is the value's own type: a parameter's declared type, a
	// constant's (int4, int8, numeric, bool), or 0 or unknown (705) for a
	// string literal or an undeclared parameter, which the first cast's
	// type, or else the column's, reads.
	OID uint32
	// Casts are the casts written on the value, innermost first.
	Casts []Cast
}

// Cast is an explicit cast: the target type and its modifiers as written
// (varchar(3) has Mods [3]; numeric(10,2) has [10 2]).
type Cast struct {
	OID  uint32
	Mods []int32
}

// Use says what a converted value is for: storing follows PostgreSQL's
// assignment casts; comparing follows its operator resolution, where the
// column's value may be converted to the value's type instead.
type Use uint8

// The uses of a converted value.
const (
	UseStore Use = iota
	UseCompare
)

// typeCodecs are the codecs of the registered types, the logical types'
// and those a client value may only arrive as. TestEveryTypeHasItsPlaces
// checks none is missing.
var typeCodecs = [...]typeCodec{
	policy.PGText:        textCodec{},
	policy.PGVarchar:     textCodec{},
	policy.PGBPChar:      textCodec{},
	policy.PGInt2:        intCodec{bits: 16},
	policy.PGInt4:        intCodec{bits: 32},
	policy.PGInt8:        intCodec{bits: 64},
	policy.PGNumeric:     numericCodec{},
	policy.PGFloat8:      float8Codec{},
	policy.PGBool:        boolCodec{},
	policy.PGDate:        dateCodec{},
	policy.PGTimestamp:   timestampCodec{},
	policy.PGTimestamptz: timestampCodec{tz: true},
	policy.PGUUID:        uuidCodec{},
	policy.PGJSONB:       jsonbCodec{},
	policy.PGBytea:       byteaCodec{},
	policy.PGName:        textCodec{},
	policy.PGJSON:        jsonCodec{},
	policy.PGFloat4:      float4Codec{},
	policy.PGUnknown:     textCodec{},
}

// The compiler refuses this when a type is added at the end of the
// registry without its codec here.
var _ [policy.NumPGTypes]typeCodec = typeCodecs

// codecs are the logical types' codecs: those of their PostgreSQL types.
var codecs = func() map[policy.LogicalType]*Codec {
	m := map[policy.LogicalType]*Codec{}
	for t := range policy.NumPGTypes {
		if lt := t.Logical(); lt != "" {
			m[lt] = &Codec{typ: lt, impl: typeCodecs[t]}
		}
	}
	return m
}()

// KnownType reports whether values may arrive as, or be cast to, type oid.
func KnownType(oid uint32) bool {
	_, ok := policy.LookupPGType(oid)
	return ok
}

// pgTypeOf is the registry entry of a valid logical type.
func pgTypeOf(lt policy.LogicalType) policy.PGType {
	t, _ := lt.PGType()
	return t
}

// datum is a value of one type, in that type's canonical form.
type datum struct {
	t     policy.PGType
	canon []byte
}

// ConvError is a conversion PostgreSQL would refuse before looking at the
// value: no cast or operator joins the two types.
type ConvError struct {
	Code string
	Msg  string
}

func (e *ConvError) Error() string    { return e.Msg }
func (e *ConvError) SQLState() string { return e.Code }

// Convertible reports the error PostgreSQL would give, when it prepares
// the statement, for a value of src used as rule's logical type: nil when
// a cast or operator joins them. It does not look at any value.
func Convertible(src Source, to policy.LogicalType, use Use) error {
	from, casts, err := sourceType(src, to)
	if err != nil {
		return err
	}
	for _, c := range casts {
		t, ok := policy.LookupPGType(c.OID)
		if !ok {
			return &ConvError{"42704", fmt.Sprintf("type with OID %d is not supported for a value of an encrypted column", c.OID)}
		}
		if from != t && castContextOf(from, t) > ctxExplicit {
			return noCast(from, t, ctxExplicit)
		}
		from = t
	}
	target := pgTypeOf(to)
	if from == target {
		return nil
	}
	if use == UseStore {
		if castContextOf(from, target) > ctxAssignment {
			return noCast(from, target, ctxAssignment)
		}
		return nil
	}
	if castContextOf(from, target) > ctxImplicit && castContextOf(target, from) > ctxImplicit {
		return noCast(from, target, ctxImplicit)
	}
	return nil
}

// sourceType resolves the type a value is read as, and the casts left.
func sourceType(src Source, to policy.LogicalType) (policy.PGType, []Cast, error) {
	oid, casts := src.OID, src.Casts
	if oid == 0 || oid == policy.PGUnknown.OID() {
		switch {
		case len(casts) > 0:
			oid = casts[0].OID
		default:
			oid = to.OID()
		}
	}
	t, ok := policy.LookupPGType(oid)
	if !ok {
		return 0, nil, &ConvError{"42804", fmt.Sprintf("a value of type OID %d cannot be used for an encrypted column of type %s", oid, to)}
	}
	return t, casts, nil
}

// Convert reads a client value as src says PostgreSQL would, applies the
// casts, and converts it to the codec's logical type for use. It returns
// the canonical form; matches is false when use is UseCompare and no value
// of the logical type can equal the value (PostgreSQL would compare in the
// value's type and find nothing, as for int4 = 1.5).
func (c *Codec) Convert(src Source, format int16, value []byte, use Use, tc *TextContext) (canonical []byte, matches bool, err error) {
	if (src.OID == 0 || src.OID == policy.PGUnknown.OID()) && len(src.Casts) == 0 {
		out, err := c.Canonical(format, value, tc)
		return out, err == nil, err
	}
	if err := Convertible(src, c.typ, use); err != nil {
		return nil, false, err
	}
	from, casts, _ := sourceType(src, c.typ)
	d, err := read(from, format, value, tc)
	if err != nil {
		return nil, false, err
	}
	for _, cast := range casts {
		to, _ := policy.LookupPGType(cast.OID) // Convertible knows it
		if d, err = convert(d, to, ctxExplicit, tc); err != nil {
			return nil, false, err
		}
		if d, err = applyTypmod(d, cast.Mods); err != nil {
			return nil, false, err
		}
	}
	target := pgTypeOf(c.typ)
	if use == UseStore || d.t == target {
		out, err := convert(d, target, ctxAssignment, tc)
		return out.canon, err == nil, err
	}
	return compareForm(d, target, tc)
}

// compareForm converts a value compared with a column of type target. When
// PostgreSQL would convert the column's values to the value's type instead
// (int4 column = numeric value), the value matches only if it survives the
// round trip; where that conversion is lossy, several stored values could
// equal it, which one ciphertext cannot find, so it is refused.
func compareForm(d datum, target policy.PGType, tc *TextContext) ([]byte, bool, error) {
	if target == policy.PGBPChar && d.t == policy.PGText && bytes.HasSuffix(d.canon, []byte{' '}) {
		// PostgreSQL compares a character column with text as text, its
		// trailing spaces stripped: a value ending in a space equals none.
		return nil, false, nil
	}
	if target.Family() == policy.FamilyString && target != policy.PGBPChar && d.t == policy.PGBPChar {
		return nil, false, &ConvError{"0A000", fmt.Sprintf("comparing an encrypted %s column with a character value is not supported: PostgreSQL compares them as character, ignoring trailing spaces, where several stored values may be equal to it; cast the value to text", target.SQLName())}
	}
	if castContextOf(d.t, target) == ctxImplicit {
		out, err := convert(d, target, ctxImplicit, tc)
		return out.canon, err == nil, err
	}
	if lossyWidening(target, d) {
		return nil, false, &ConvError{"0A000", fmt.Sprintf("comparing an encrypted %s column with a %s value is not supported: PostgreSQL compares them as %s, where several stored values may be equal to it; cast the value to %s", target.SQLName(), d.t.SQLName(), d.t.SQLName(), target.SQLName())}
	}
	out, err := convert(d, target, ctxAssignment, tc)
	if err != nil {
		return nil, false, nil
	}
	back, err := convert(out, d.t, ctxImplicit, tc)
	if err != nil || !equalValues(back, d) {
		return nil, false, nil
	}
	return out.canon, true, nil
}

// equalValues is PostgreSQL's = on two values of one type, where that
// differs from equal canonical forms: numerics equal whatever their
// display scale (1.50 = 1.5), floats by value (-0 = 0, NaN = NaN).
func equalValues(a, b datum) bool {
	switch a.t {
	case policy.PGNumeric:
		x, errX := decodeNumeric(a.canon)
		y, errY := decodeNumeric(b.canon)
		if errX != nil || errY != nil {
			return false
		}
		x.dscale, y.dscale = 0, 0
		x.strip()
		y.strip()
		return bytes.Equal(x.encode(), y.encode())
	case policy.PGFloat4, policy.PGFloat8:
		f, g := floatOf(a), floatOf(b)
		return f == g || math.IsNaN(f) && math.IsNaN(g)
	}
	return bytes.Equal(a.canon, b.canon)
}

// EqualForms returns every canonical value PostgreSQL's = finds equal to
// canonical, itself first: float8's 0 and -0 are two values that compare
// equal. (Numerics that differ only in display scale, 1.5 and 1.50, are
// equal too, but have no bound; see the README's known limits.)
func (c *Codec) EqualForms(canonical []byte) [][]byte {
	if c.typ == policy.TypeFloat8 && len(canonical) == 8 && binary.BigEndian.Uint64(canonical)&^(1<<63) == 0 {
		return [][]byte{canonical, binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(canonical)^1<<63)}
	}
	return [][]byte{canonical}
}

// lossyWidening reports whether converting target's values to d's type
// can map several of them to d.
func lossyWidening(target policy.PGType, d datum) bool {
	switch d.t {
	case policy.PGFloat4, policy.PGFloat8:
		if target == policy.PGNumeric {
			return true
		}
		limit := 1 << 53
		if d.t == policy.PGFloat4 {
			limit = 1 << 24
		}
		f := floatOf(d)
		return target.Family() == policy.FamilyNumeric && !math.IsNaN(f) && math.Abs(f) >= float64(limit) && (target == policy.PGInt8 || d.t == policy.PGFloat4)
	}
	return false
}

// read decodes a value sent as type t.
func read(t policy.PGType, format int16, value []byte, tc *TextContext) (datum, error) {
	var out []byte
	var err error
	switch format {
	case TextFormat:
		out, err = typeCodecs[t].fromText(value, tc)
	case BinaryFormat:
		out, err = typeCodecs[t].fromBinary(value)
	default:
		return datum{}, &ValueError{Type: policy.LogicalType(t.SQLName()), Reason: "unsupported wire format code"}
	}
	if err != nil {
		return datum{}, typeValueError(t, err)
	}
	return datum{t, out}, nil
}

// typeValueError is Codec.valueError for any type a value arrives as.
func typeValueError(t policy.PGType, err error) error {
	var ve *ValueError
	if errors.As(err, &ve) {
		return err
	}
	return (&Codec{typ: errorType(t)}).valueError(err)
}

// errorType is the type a value error for t names: the logical type
// PostgreSQL reads the value as (an unknown or name value as text, json
// as jsonb, a logical type's as itself), else t's SQL name (real).
func errorType(t policy.PGType) policy.LogicalType {
	switch t {
	case policy.PGUnknown, policy.PGName:
		return policy.TypeText
	case policy.PGJSON:
		return policy.TypeJSONB
	}
	if lt := t.Logical(); lt != "" {
		return lt
	}
	return policy.LogicalType(t.SQLName())
}

// castContext is how freely PostgreSQL applies a cast (pg_cast.castcontext).
type castContext uint8

const (
	ctxImplicit castContext = iota
	ctxAssignment
	ctxExplicit
	ctxNone
)

// castContextOf is the context in which PostgreSQL casts from to to,
// after pg_cast and its rule that I/O conversion to a string type is an
// assignment cast and from one an explicit cast.
func castContextOf(from, to policy.PGType) castContext {
	if from == to {
		return ctxImplicit
	}
	if c, ok := castTable[typePair{from, to}]; ok {
		return c
	}
	switch {
	case from == policy.PGUnknown:
		return ctxImplicit
	case to.Family() == policy.FamilyString:
		return ctxAssignment
	case from.Family() == policy.FamilyString:
		return ctxExplicit
	}
	return ctxNone
}

// typePair is a cast's source and target.
type typePair struct{ from, to policy.PGType }

// castTable is pg_cast between the registered types (PostgreSQL 15).
var castTable = func() map[typePair]castContext {
	const (
		boolT, name, text, json, jsonb = policy.PGBool, policy.PGName, policy.PGText, policy.PGJSON, policy.PGJSONB
		int2, int4, int8, numeric      = policy.PGInt2, policy.PGInt4, policy.PGInt8, policy.PGNumeric
		float4, float8                 = policy.PGFloat4, policy.PGFloat8
		bpchar, varchar                = policy.PGBPChar, policy.PGVarchar
		date, timestamp, timestamptz   = policy.PGDate, policy.PGTimestamp, policy.PGTimestamptz
	)
	m := map[typePair]castContext{}
	add := func(c castContext, pairs ...typePair) {
		for _, p := range pairs {
			m[p] = c
		}
	}
	add(ctxImplicit,
		typePair{int2, int4}, typePair{int2, int8}, typePair{int4, int8},
		typePair{int2, float4}, typePair{int2, float8}, typePair{int2, numeric},
		typePair{int4, float4}, typePair{int4, float8}, typePair{int4, numeric},
		typePair{int8, float4}, typePair{int8, float8}, typePair{int8, numeric},
		typePair{float4, float8}, typePair{numeric, float4}, typePair{numeric, float8},
		typePair{date, timestamp}, typePair{date, timestamptz}, typePair{timestamp, timestamptz},
		typePair{text, bpchar}, typePair{text, varchar}, typePair{text, name},
		typePair{varchar, text}, typePair{varchar, bpchar}, typePair{varchar, name},
		typePair{bpchar, text}, typePair{bpchar, varchar}, typePair{bpchar, name},
		typePair{name, text},
	)
	add(ctxAssignment,
		typePair{int4, int2}, typePair{int8, int2}, typePair{int8, int4},
		typePair{float4, int2}, typePair{float4, int4}, typePair{float4, int8},
		typePair{float8, int2}, typePair{float8, int4}, typePair{float8, int8},
		typePair{float8, float4}, typePair{float4, numeric}, typePair{float8, numeric},
		typePair{numeric, int2}, typePair{numeric, int4}, typePair{numeric, int8},
		typePair{timestamp, date}, typePair{timestamptz, date}, typePair{timestamptz, timestamp},
		typePair{name, varchar}, typePair{name, bpchar},
		typePair{json, jsonb}, typePair{jsonb, json},
	)
	add(ctxExplicit, typePair{int4, boolT}, typePair{boolT, int4})
	for _, to := range []policy.PGType{boolT, float4, float8, int2, int4, int8, numeric} {
		add(ctxExplicit, typePair{jsonb, to})
	}
	return m
}()

// noCast is PostgreSQL's error for a value of from where to is needed.
func noCast(from, to policy.PGType, ctx castContext) error {
	switch ctx {
	case ctxExplicit:
		return &ConvError{"42846", fmt.Sprintf("cannot cast type %s to %s", from.SQLName(), to.SQLName())}
	case ctxAssignment:
		return &ConvError{"42804", fmt.Sprintf("the encrypted column is of type %s but the expression is of type %s", to.SQLName(), from.SQLName())}
	}
	return &ConvError{"42883", fmt.Sprintf("operator does not exist: %s = %s", to.SQLName(), from.SQLName())}
}

// convert casts d to type to, allowed in ctx.
func convert(d datum, to policy.PGType, ctx castContext, tc *TextContext) (datum, error) {
	if d.t == to {
		return d, nil
	}
	if castContextOf(d.t, to) > ctx {
		return datum{}, noCast(d.t, to, ctx)
	}
	out, err := castValue(d, to, tc)
	if err != nil {
		return datum{}, err
	}
	return datum{to, out}, nil
}

// castValue performs the cast function PostgreSQL would call.
func castValue(d datum, to policy.PGType, tc *TextContext) ([]byte, error) {
	from := d.t
	switch {
	case from == policy.PGBPChar && to.Family() == policy.FamilyString:
		return bytes.TrimRight(d.canon, " "), nil
	case from.Family() == policy.FamilyString && to.Family() == policy.FamilyString:
		return d.canon, nil
	case from == policy.PGBool && to.Family() == policy.FamilyString:
		// booltext, not boolout: true, not t.
		if d.canon[0] == 1 {
			return []byte("true"), nil
		}
		return []byte("false"), nil
	case to.Family() == policy.FamilyString:
		// I/O conversion: the value's text, as the session would see it.
		return typeCodecs[from].appendText(nil, d.canon, tc)
	case from.Family() == policy.FamilyString:
		out, err := typeCodecs[to].fromText(d.canon, tc)
		if err != nil {
			return nil, typeValueError(to, err)
		}
		return out, nil
	case from.Family() == policy.FamilyNumeric && to.Family() == policy.FamilyNumeric:
		return castNumber(d, to)
	case from.Family() == policy.FamilyDateTime && to.Family() == policy.FamilyDateTime:
		return castDateTime(d, to, tc)
	case from == policy.PGBool && to == policy.PGInt4:
		return binary.BigEndian.AppendUint32(nil, uint32(d.canon[0])), nil
	case from == policy.PGInt4 && to == policy.PGBool:
		return boolByte(binary.BigEndian.Uint32(d.canon) != 0), nil
	case from == policy.PGJSON && to == policy.PGJSONB:
		return typeCodecs[to].fromText(d.canon, tc)
	case from == policy.PGJSONB && to == policy.PGJSON:
		return d.canon, nil
	}
	return nil, noCast(from, to, ctxExplicit)
}

// castNumber converts between the numeric types as PostgreSQL's cast
// functions do: floats round half to even into integers (rint), numerics
// half away from zero; floats become numeric through their 15 (float8) or
// 6 (float4) significant digits; out of range is 22003.
func castNumber(d datum, to policy.PGType) ([]byte, error) {
	from := d.t
	switch {
	case isInt(from) && isInt(to):
		return intOut(intOf(d), to)
	case isInt(from) && isFloat(to):
		return floatOut(float64(intOf(d)), to, true)
	case isInt(from):
		return numericFromText([]byte(strconv.FormatInt(intOf(d), 10)))
	case isFloat(from) && isInt(to):
		f := math.RoundToEven(floatOf(d))
		if math.IsNaN(f) || f < math.MinInt64 || f >= -math.MinInt64 {
			return nil, outOfRange(to)
		}
		return intOut(int64(f), to)
	case isFloat(from) && isFloat(to):
		return floatOut(floatOf(d), to, false)
	case isFloat(from):
		prec := 15
		if from == policy.PGFloat4 {
			prec = 6
		}
		return numericFromFloat(floatOf(d), prec)
	case isInt(to):
		return numericToInt(d.canon, to)
	}
	return numericToFloat(d.canon, to)
}

func isInt(t policy.PGType) bool {
	return t == policy.PGInt2 || t == policy.PGInt4 || t == policy.PGInt8
}

func isFloat(t policy.PGType) bool { return t == policy.PGFloat4 || t == policy.PGFloat8 }

func intOf(d datum) int64 {
	return intCodec{bits: 8 * len(d.canon)}.get(d.canon)
}

func floatOf(d datum) float64 {
	if d.t == policy.PGFloat4 {
		return float64(math.Float32frombits(binary.BigEndian.Uint32(d.canon)))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(d.canon))
}

func intOut(v int64, to policy.PGType) ([]byte, error) {
	bits := 8 * int(to.Size())
	if v < -1<<(bits-1) || v > 1<<(bits-1)-1 {
		return nil, outOfRange(to)
	}
	return intCodec{bits: bits}.put(nil, v), nil
}

// floatOut stores f as to. Narrowing to float4 is checked for overflow
// and underflow as float8_to_float4 does; from integers it cannot fail.
func floatOut(f float64, to policy.PGType, exact bool) ([]byte, error) {
	if to == policy.PGFloat8 {
		return putFloat8(f), nil
	}
	g := float32(f)
	if !exact && (math.IsInf(float64(g), 0) && !math.IsInf(f, 0) || g == 0 && f != 0) {
		return nil, &ValueError{Type: "real", Reason: "value out of range", Code: SQLStateOutOfRange}
	}
	return putFloat4(g), nil
}

func outOfRange(t policy.PGType) error {
	return &ValueError{Type: policy.LogicalType(t.SQLName()), Reason: t.SQLName() + " out of range", Code: SQLStateOutOfRange}
}

// numericFromFloat is float8_numeric / float4_numeric: the float printed
// with %.{prec}g, read as numeric.
func numericFromFloat(f float64, prec int) ([]byte, error) {
	switch {
	case math.IsNaN(f):
		return numericVar{sign: numericNaN}.encode(), nil
	case math.IsInf(f, 1):
		return numericVar{sign: numericPInf}.encode(), nil
	case math.IsInf(f, -1):
		return numericVar{sign: numericNInf}.encode(), nil
	}
	return numericFromText(strconv.AppendFloat(nil, f, 'g', prec, 64))
}

func numericFromText(s []byte) ([]byte, error) {
	out, err := numericCodec{}.fromText(s, nil)
	if err != nil {
		return nil, typeValueError(policy.PGNumeric, err)
	}
	return out, nil
}

// numericToInt rounds half away from zero, as numeric_int4 does.
func numericToInt(canon []byte, to policy.PGType) ([]byte, error) {
	v, err := decodeNumeric(canon)
	if err != nil {
		return nil, err
	}
	switch v.sign {
	case numericNaN:
		return nil, &ConvError{"0A000", "cannot convert NaN to " + to.SQLName()}
	case numericPInf, numericNInf:
		return nil, &ConvError{"0A000", "cannot convert infinity to " + to.SQLName()}
	}
	text := v.appendText(nil)
	r, ok := roundDecimal(text, 0)
	if !ok {
		return nil, outOfRange(to)
	}
	n, err := strconv.ParseInt(string(r), 10, 64)
	if err != nil {
		return nil, outOfRange(to)
	}
	return intOut(n, to)
}

// numericToFloat is numeric_float8: the numeric's text read as a float.
func numericToFloat(canon []byte, to policy.PGType) ([]byte, error) {
	v, err := decodeNumeric(canon)
	if err != nil {
		return nil, err
	}
	var f float64
	switch v.sign {
	case numericNaN:
		f = math.NaN()
	case numericPInf:
		f = math.Inf(1)
	case numericNInf:
		f = math.Inf(-1)
	default:
		bits := 64
		if to == policy.PGFloat4 {
			bits = 32
		}
		f, err = strconv.ParseFloat(string(v.appendText(nil)), bits)
		if err != nil {
			return nil, outOfRange(to)
		}
	}
	return floatOut(f, to, true)
}

// roundDecimal rounds a plain decimal text (-?digits[.digits]) to scale
// fractional digits, half away from zero. ok is false for text it cannot
// read.
func roundDecimal(s []byte, scale int) ([]byte, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	intPart, frac, _ := bytes.Cut(s, []byte{'.'})
	if len(intPart) == 0 {
		return nil, false
	}
	digits := append(append([]byte{'0'}, intPart...), frac...)
	point := 1 + len(intPart)
	keep := point + scale
	if keep < len(digits) {
		up := digits[keep] >= '5'
		digits = digits[:keep]
		for i := keep - 1; up && i >= 0; i-- {
			if digits[i] == '9' {
				digits[i] = '0'
				continue
			}
			digits[i]++
			up = false
		}
	}
	for len(digits) < keep {
		digits = append(digits, '0')
	}
	out := bytes.TrimLeft(digits[:point], "0")
	if len(out) == 0 {
		out = []byte{'0'}
	}
	out = append([]byte(nil), out...)
	if scale > 0 {
		out = append(append(out, '.'), digits[point:keep]...)
	}
	if neg && bytes.ContainsAny(out, "123456789") {
		out = append([]byte{'-'}, out...)
	}
	return out, true
}

// applyTypmod applies a cast's type modifiers as its length coercion
// function does, explicitly: varchar(n) and char(n) truncate (char pads),
// numeric(p,s) rounds and checks the precision, timestamp(p) rounds.
func applyTypmod(d datum, mods []int32) (datum, error) {
	if len(mods) == 0 {
		return d, nil
	}
	switch d.t {
	case policy.PGVarchar:
		return datum{d.t, truncateChars(d.canon, int(mods[0]))}, nil
	case policy.PGBPChar:
		return datum{d.t, padChars(truncateChars(d.canon, int(mods[0])), int(mods[0]))}, nil
	case policy.PGNumeric:
		scale := int32(0)
		if len(mods) > 1 {
			scale = mods[1]
		}
		out, err := numericTypmod(d.canon, int(mods[0]), int(scale))
		return datum{d.t, out}, err
	case policy.PGTimestamp, policy.PGTimestamptz:
		out, err := timestampTypmod(d.canon, int(mods[0]))
		return datum{d.t, out}, err
	}
	return datum{}, &ConvError{"42601", fmt.Sprintf("type modifier is not allowed for type %s", d.t.SQLName())}
}

func truncateChars(s []byte, n int) []byte {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		if utf8.RuneStart(s[i]) {
			n--
		}
	}
	return s
}

func padChars(s []byte, n int) []byte {
	for have := utf8.RuneCount(s); have < n; have++ {
		s = append(s, ' ')
	}
	return s
}

// numericTypmod is apply_typmod: round to scale digits, then refuse a
// value with more than precision-scale integer digits (22003).
func numericTypmod(canon []byte, precision, scale int) ([]byte, error) {
	v, err := decodeNumeric(canon)
	if err != nil {
		return nil, err
	}
	switch v.sign {
	case numericNaN:
		return canon, nil
	case numericPInf, numericNInf:
		return nil, &ValueError{Type: "numeric", Reason: "numeric field overflow", Code: SQLStateOutOfRange}
	}
	r, ok := roundDecimal(v.appendText(nil), scale)
	if !ok {
		return nil, errSyntax
	}
	intDigits := len(bytes.TrimLeft(bytes.TrimPrefix(r, []byte{'-'}), "0"))
	if i := bytes.IndexByte(r, '.'); i >= 0 {
		intDigits = len(bytes.TrimLeft(bytes.TrimPrefix(r[:i], []byte{'-'}), "0"))
	}
	if intDigits > precision-scale {
		return nil, &ValueError{Type: "numeric", Reason: "numeric field overflow", Code: SQLStateOutOfRange}
	}
	return numericFromText(r)
}

// timestampTypmod is AdjustTimestampForTypmod: round to precision
// fractional digits, half away from zero.
func timestampTypmod(canon []byte, precision int) ([]byte, error) {
	if precision < 0 || precision >= 6 {
		return canon, nil
	}
	t, err := decodeTimestamp(canon)
	if err != nil {
		return nil, err
	}
	if t == math.MinInt64 || t == math.MaxInt64 {
		return canon, nil
	}
	scale := int64(math.Pow10(6 - precision))
	if t >= 0 {
		t = (t + scale/2) / scale * scale
	} else {
		t = -((-t + scale/2) / scale * scale)
	}
	return binary.BigEndian.AppendUint64(nil, uint64(t)), nil
}
