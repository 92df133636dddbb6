package keymap

import (
	"errors"
	"strings"
	"time"

	"github.com/pgcloak/pgcloak/policy"
)

// Wire format codes of the PostgreSQL protocol.
const (
	TextFormat   int16 = 0
	BinaryFormat int16 = 1
)

// TextContext is the session state text formats depend on.
type TextContext struct {
	// Location is the session's TimeZone; nil means UTC.
	Location *time.Location
	// FloatPrecision is how many significant digits float8 text has, as
	// float8out prints it (%.*g) when extra_float_digits is 0 or less:
	// 15 + extra_float_digits, at least 1. 0 means the shortest exact
	// form, PostgreSQL's default.
	FloatPrecision int
	// DateOrder is how DateStyle orders a date's day, month and year
	// fields when the input leaves it open (01/02/2024).
	DateOrder DateOrder
	// DateOutput is DateStyle's output format.
	DateOutput DateOutput
	// ByteaEscape is bytea_output = escape: bytea text in the
	// traditional escape format instead of hex.
	ByteaEscape bool
	// ServerMajor is the major version of the PostgreSQL behind the
	// proxy (15 for 15.4), whose input rules values follow: integers
	// with underscores or 0x/0o/0b prefixes are valid from 16 on. 0
	// means the newest rules.
	ServerMajor int
	// Now is the clock 'now', 'today', 'tomorrow' and 'yesterday' read;
	// nil means time.Now. PostgreSQL reads the transaction's start.
	Now func() time.Time
}

// DateOrder is the field order part of DateStyle.
type DateOrder uint8

// The DateStyle orders; the zero value is PostgreSQL's default, MDY.
const (
	DateOrderMDY DateOrder = iota
	DateOrderDMY
	DateOrderYMD
)

// DateOutput is the output format part of DateStyle.
type DateOutput uint8

// The DateStyle output formats; the zero value is PostgreSQL's default, ISO.
const (
	DateOutputISO DateOutput = iota
	DateOutputSQL
	DateOutputPostgres
	DateOutputGerman
)

// ParseDateStyle reads a DateStyle as PostgreSQL reports it in
// ParameterStatus ("ISO, MDY", "SQL, DMY", "Postgres, YMD", "German, DMY").
func ParseDateStyle(s string) (DateOutput, DateOrder, bool) {
	out, order, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, false
	}
	var o DateOutput
	switch strings.TrimSpace(out) {
	case "ISO":
		o = DateOutputISO
	case "SQL":
		o = DateOutputSQL
	case "Postgres":
		o = DateOutputPostgres
	case "German":
		o = DateOutputGerman
	default:
		return 0, 0, false
	}
	var d DateOrder
	switch strings.TrimSpace(order) {
	case "MDY":
		d = DateOrderMDY
	case "DMY":
		d = DateOrderDMY
	case "YMD":
		d = DateOrderYMD
	default:
		return 0, 0, false
	}
	return o, d, true
}

// modernNumbers reports whether integer input takes PostgreSQL 16's
// forms: underscores between digits and 0x, 0o, 0b prefixes.
func (tc *TextContext) modernNumbers() bool {
	return tc == nil || tc.ServerMajor == 0 || tc.ServerMajor >= 16
}

// ServerMajor reads the major version from a server_version report
// ("15.19 (Debian 15.19-0+deb12u1)", "16beta1"): 0 if it has none.
func ServerMajor(version string) int {
	n := 0
	for i := 0; i < len(version) && isDigit(version[i]); i++ {
		n = n*10 + int(version[i]-'0')
		if n > 1000 {
			return 0
		}
	}
	return n
}

func (tc *TextContext) now() time.Time {
	if tc == nil || tc.Now == nil {
		return time.Now()
	}
	return tc.Now()
}

func (tc *TextContext) location() *time.Location {
	if tc == nil || tc.Location == nil {
		return time.UTC
	}
	return tc.Location
}

// Codec converts the values of one logical type between the client's wire
// formats and the canonical form that gets encrypted: PostgreSQL's own binary
// encoding of the type (for jsonb, its normalised text). Canonicalising first
// is what lets a deterministic key match `007` sent as text and 7 sent as
// binary. A Codec is stateless and safe for concurrent use.
type Codec struct {
	typ  policy.LogicalType
	impl typeCodec
}

// typeCodec is one logical type's conversions. Its errors are reasons (see
// invalid), never messages that quote the value.
type typeCodec interface {
	fromText(src []byte, tc *TextContext) ([]byte, error)
	fromBinary(src []byte) ([]byte, error)
	appendText(dst, canonical []byte, tc *TextContext) ([]byte, error)
	appendBinary(dst, canonical []byte) ([]byte, error)
}

// CodecFor returns the codec of t, or nil if t is not a supported logical
// type (policy validation rules that out). Codecs are stateless and made
// once: this is called for every value.
func CodecFor(t policy.LogicalType) *Codec { return codecs[t] }

// Type is the logical type the codec handles.
func (c *Codec) Type() policy.LogicalType { return c.typ }

// Canonical parses a client value in wire format (0 text, 1 binary) into the
// canonical form that gets encrypted. Invalid input is a *ValueError
// (SQLSTATE 22P02) that names the type but never echoes the value.
func (c *Codec) Canonical(format int16, src []byte, tc *TextContext) ([]byte, error) {
	var out []byte
	var err error
	switch format {
	case TextFormat:
		out, err = c.impl.fromText(src, tc)
	case BinaryFormat:
		out, err = c.impl.fromBinary(src)
	default:
		return nil, &ValueError{Type: c.typ, Reason: "unsupported wire format code"}
	}
	if err != nil {
		return nil, c.valueError(err)
	}
	return out, nil
}

// AppendCanonical is Canonical appending to dst, for callers that convert
// many values into one reused buffer (COPY). A type whose codec can append
// (the text types) allocates nothing; others convert, then copy. On an
// error dst is returned as it was.
func (c *Codec) AppendCanonical(dst []byte, format int16, src []byte, tc *TextContext) ([]byte, error) {
	a, ok := c.impl.(canonicalAppender)
	if !ok {
		out, err := c.Canonical(format, src, tc)
		if err != nil {
			return dst, err
		}
		return append(dst, out...), nil
	}
	var out []byte
	var err error
	switch format {
	case TextFormat:
		out, err = a.appendFromText(dst, src, tc)
	case BinaryFormat:
		out, err = a.appendFromBinary(dst, src)
	default:
		return dst, &ValueError{Type: c.typ, Reason: "unsupported wire format code"}
	}
	if err != nil {
		return dst, c.valueError(err)
	}
	return out, nil
}

// canonicalAppender is a typeCodec whose fromText and fromBinary can
// append to a buffer.
type canonicalAppender interface {
	appendFromText(dst, src []byte, tc *TextContext) ([]byte, error)
	appendFromBinary(dst, src []byte) ([]byte, error)
}

// AppendText appends the text form of a canonical value, as PostgreSQL would
// print it in the session's time zone.
func (c *Codec) AppendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
	out, err := c.impl.appendText(dst, canonical, tc)
	if err != nil {
		return dst, c.storedError(err)
	}
	return out, nil
}

// AppendBinary appends the binary wire form of a canonical value.
func (c *Codec) AppendBinary(dst, canonical []byte) ([]byte, error) {
	out, err := c.impl.appendBinary(dst, canonical)
	if err != nil {
		return dst, c.storedError(err)
	}
	return out, nil
}

// valueError turns an implementation error into a *ValueError. Only our own
// reasons pass through: errors from libraries may quote the value.
func (c *Codec) valueError(err error) error {
	var r reason
	if !errors.As(err, &r) {
		return &ValueError{Type: c.typ}
	}
	ve := &ValueError{Type: c.typ, Reason: string(r)}
	switch {
	case r == errRange:
		ve.Code = SQLStateOutOfRange
	case r == errDateRange || r == errDateField || r == errTimeField:
		ve.Code = SQLStateDatetimeOverflow
	case r == errBadZone || r == errOddHex || r == errBadHex:
		ve.Code = SQLStateInvalidParameter
	case r == errTZDisplacement:
		ve.Code = SQLStateTZDisplacement
	case r == errJSONNul:
		ve.Code = SQLStateUntranslatable
	case r == errShortBin:
		ve.Code = SQLStateProtocolViolation
	case r == errLongBin || r == errBinaryForm:
		ve.Code = SQLStateBinaryFormat
	case r == errEncoding || r == errNUL:
		ve.Code = SQLStateBadEncoding
	case r == errJSONBVersion:
		ve.Code = SQLStateInternal
	case c.typ.IsDateTime() && r == errSyntax:
		ve.Code = SQLStateDatetimeFormat
	}
	return ve
}

// storedError reports a canonical value that does not decode: the column's
// stored data does not match its configured type.
func (c *Codec) storedError(err error) error {
	var r reason
	if !errors.As(err, &r) {
		r = "malformed"
	}
	return &ValueError{Type: c.typ, Reason: "stored value does not decode: " + string(r)}
}

// reason is why a value was refused, worded without the value.
type reason string

func (r reason) Error() string { return string(r) }

const (
	errSyntax    reason = ""
	errRange     reason = "value out of range"
	errDateRange reason = "date or time out of range"
	errDateField reason = "date field value out of range"
	errTimeField reason = "time field value out of range"
	errBadZone   reason = "time zone not recognized"
	errJSONNul   reason = "JSON \\u0000 cannot be stored in jsonb"
	errOddHex    reason = "odd number of hexadecimal digits"
	errBadHex    reason = "invalid hexadecimal digit"
	errLength    reason = "wrong binary length"
	errShortBin  reason = "insufficient data left in message"
	errLongBin   reason = "incorrect binary data format"
	// errJSONBVersion is an internal error (XX000) in PostgreSQL.
	errJSONBVersion reason = "unsupported jsonb version number"
	errEncoding     reason = "invalid UTF-8"
	errNUL          reason = "NUL bytes are not allowed"
	errBinaryForm   reason = "invalid binary encoding"
)

// binaryLength checks a binary value of a fixed-size type as its receive
// function would: too short runs out of message, too long is left over.
func binaryLength(src []byte, size int) error {
	switch {
	case len(src) < size:
		return errShortBin
	case len(src) > size:
		return errLongBin
	}
	return nil
}

// fixedBinary checks a fixed-size canonical value and appends it.
func fixedBinary(dst, canonical []byte, size int) ([]byte, error) {
	if len(canonical) != size {
		return nil, errLength
	}
	return append(dst, canonical...), nil
}

// isSpace is PostgreSQL's scanner_isspace, the whitespace its input
// functions skip.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// equalFold reports whether b equals the lower-case ASCII word w, ignoring
// ASCII case, without allocating.
func equalFold(b []byte, w string) bool {
	if len(b) != len(w) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}
