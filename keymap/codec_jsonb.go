package keymap

import (
	"bytes"
	"cmp"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonbCodec: canonical is the JSON text PostgreSQL's jsonb prints for the
// value: object keys deduplicated (last wins) and sorted by length then bytes,
// ", " and ": " separators, strings re-escaped minimally, numbers printed as
// numeric prints them (jsonb stores numbers as numeric: 1e2 is 100, -0 is 0).
// The binary wire form is a version byte 1 followed by that text.
type jsonbCodec struct{}

const (
	jsonbVersion  = 1
	jsonMaxDepth  = 10000
	jsonbMaxBytes = 1<<28 - 1 // PostgreSQL's jsonb size limit
)

func (jsonbCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	return normalizeJSON(src)
}

func (jsonbCodec) fromBinary(src []byte) ([]byte, error) {
	if len(src) == 0 {
		return nil, errShortBin
	}
	if src[0] != jsonbVersion {
		return nil, errJSONBVersion
	}
	return normalizeJSON(src[1:])
}

func (jsonbCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	return appendValidText(dst, canonical)
}

func (jsonbCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	return appendValidText(append(dst, jsonbVersion), canonical)
}

// jsonValue is a parsed JSON value. Scalars keep their output text.
type jsonValue struct {
	kind    byte // '{', '[', '"' (text holds the decoded string) or 's' (other scalars, text as written)
	text    []byte
	items   []jsonValue
	members []jsonMember
}

type jsonMember struct {
	key []byte
	val jsonValue
}

func normalizeJSON(src []byte) ([]byte, error) {
	if len(src) > jsonbMaxBytes {
		return nil, reason("jsonb value too large")
	}
	if !utf8.Valid(src) {
		return nil, errEncoding
	}
	p := jsonParser{s: src}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, errSyntax
	}
	return v.appendTo(make([]byte, 0, len(src))), nil
}

type jsonParser struct {
	s []byte
	i int
}

func (p *jsonParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (jsonValue, error) {
	if depth > jsonMaxDepth {
		return jsonValue{}, reason("JSON nested too deeply")
	}
	if p.i >= len(p.s) {
		return jsonValue{}, errSyntax
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		str, err := p.str()
		return jsonValue{kind: '"', text: str}, err
	case c == '-' || isDigit(c):
		return p.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if bytes.HasPrefix(p.s[p.i:], []byte(lit)) {
			p.i += len(lit)
			return jsonValue{kind: 's', text: []byte(lit)}, nil
		}
	}
	return jsonValue{}, errSyntax
}

func (p *jsonParser) object(depth int) (jsonValue, error) {
	v := jsonValue{kind: '{'}
	p.i++
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v, nil
	}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return v, errSyntax
		}
		key, err := p.str()
		if err != nil {
			return v, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return v, errSyntax
		}
		p.i++
		p.space()
		val, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		v.members = append(v.members, jsonMember{key: key, val: val})
		if done, err := p.listEnd('}'); done || err != nil {
			v.members = dedupeMembers(v.members)
			return v, err
		}
	}
}

func (p *jsonParser) array(depth int) (jsonValue, error) {
	v := jsonValue{kind: '['}
	p.i++
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return v, nil
	}
	for {
		p.space()
		item, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		v.items = append(v.items, item)
		if done, err := p.listEnd(']'); done || err != nil {
			return v, err
		}
	}
}

// listEnd consumes the comma or closing bracket after a list element.
func (p *jsonParser) listEnd(closer byte) (bool, error) {
	p.space()
	if p.i >= len(p.s) {
		return false, errSyntax
	}
	switch p.s[p.i] {
	case ',':
		p.i++
		return false, nil
	case closer:
		p.i++
		return true, nil
	}
	return false, errSyntax
}

// dedupeMembers orders keys as jsonb does (shorter first, then bytewise) and
// keeps the last of duplicates; the stable sort keeps input order among equal
// keys, so the last of each run is the last written.
func dedupeMembers(ms []jsonMember) []jsonMember {
	slices.SortStableFunc(ms, func(a, b jsonMember) int {
		if c := cmp.Compare(len(a.key), len(b.key)); c != 0 {
			return c
		}
		return bytes.Compare(a.key, b.key)
	})
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(m.key, ms[i+1].key) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// number checks JSON number grammar and converts the literal as jsonb does:
// through numeric, so it prints as numeric_out prints it.
func (p *jsonParser) number() (jsonValue, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.digits() == 0:
		return jsonValue{}, errSyntax
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return jsonValue{}, errSyntax
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return jsonValue{}, errSyntax
		}
	}
	canonical, err := numericCodec{}.fromText(p.s[start:p.i], nil)
	if err != nil {
		return jsonValue{}, err
	}
	v, err := decodeNumeric(canonical)
	if err != nil {
		return jsonValue{}, err
	}
	return jsonValue{kind: 's', text: v.appendText(nil)}, nil
}

func (p *jsonParser) digits() int {
	start := p.i
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	return p.i - start
}

// str decodes a string literal. Like jsonb it refuses raw control
// characters, \u0000 and unpaired surrogates.
func (p *jsonParser) str() ([]byte, error) {
	p.i++ // opening quote
	var out []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return out, nil
		case c < 0x20:
			return nil, reason("unescaped control character in JSON string")
		case c == '\\':
			var err error
			if out, err = p.escape(out); err != nil {
				return nil, err
			}
		default:
			out = append(out, c)
			p.i++
		}
	}
	return nil, errSyntax
}

func (p *jsonParser) escape(out []byte) ([]byte, error) {
	if p.i+1 >= len(p.s) {
		return nil, errSyntax
	}
	c := p.s[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		return append(out, c), nil
	case 'b':
		return append(out, '\b'), nil
	case 'f':
		return append(out, '\f'), nil
	case 'n':
		return append(out, '\n'), nil
	case 'r':
		return append(out, '\r'), nil
	case 't':
		return append(out, '\t'), nil
	case 'u':
		r, err := p.unicodeEscape()
		if err != nil {
			return nil, err
		}
		return utf8.AppendRune(out, r), nil
	}
	return nil, reason("invalid JSON escape sequence")
}

func (p *jsonParser) unicodeEscape() (rune, error) {
	r, ok := p.hex4()
	switch {
	case !ok:
		return 0, reason("invalid JSON unicode escape")
	case r == 0:
		return 0, errJSONNul
	case utf16.IsSurrogate(r) && r < 0xDC00:
		if p.i+1 >= len(p.s) || p.s[p.i] != '\\' || p.s[p.i+1] != 'u' {
			return 0, reason("JSON high surrogate without low surrogate")
		}
		p.i += 2
		lo, ok := p.hex4()
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, reason("JSON high surrogate without low surrogate")
		}
		return utf16.DecodeRune(r, lo), nil
	case utf16.IsSurrogate(r):
		return 0, reason("JSON low surrogate without high surrogate")
	}
	return r, nil
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for _, c := range p.s[p.i : p.i+4] {
		var d byte
		switch {
		case isDigit(c):
			d = c - '0'
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			d = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	p.i += 4
	return r, true
}

// appendTo prints v the way jsonb_out does.
func (v jsonValue) appendTo(dst []byte) []byte {
	switch v.kind {
	case '{':
		dst = append(dst, '{')
		for i, m := range v.members {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendJSONString(dst, m.key)
			dst = append(dst, ": "...)
			dst = m.val.appendTo(dst)
		}
		return append(dst, '}')
	case '[':
		dst = append(dst, '[')
		for i, item := range v.items {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = item.appendTo(dst)
		}
		return append(dst, ']')
	case '"':
		return appendJSONString(dst, v.text)
	}
	return append(dst, v.text...)
}

// appendJSONString is PostgreSQL's escape_json: only quote, backslash and
// control characters are escaped.
func appendJSONString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
				continue
			}
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
