package proxy

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// Array parameters compared with a deterministic column (col = ANY($n),
// col <> ALL($n); see sqlrewrite.ParamRule.Array) are decoded here: the
// array in the client's format, its elements converted one by one to the
// column's type as PostgreSQL would convert them for the comparison, and
// the candidates of all of them sent, in one flat bytea[], as the hidden
// parameter. The client's parameter itself goes to PostgreSQL as NULL.

// arrayElemOIDs maps the array types of the registered types (those
// values may arrive as, keymap.KnownType) to their element types
// (pg_type.typelem), and arrayOIDs the element types to their arrays:
// indexes of policy's type registry.
var arrayElemOIDs, arrayOIDs = arrayIndexes()

func arrayIndexes() (elems, arrays map[uint32]uint32) {
	elems, arrays = map[uint32]uint32{}, map[uint32]uint32{}
	for t := range policy.NumPGTypes {
		if arr := t.ArrayOID(); arr != 0 {
			elems[arr] = t.OID()
			arrays[t.OID()] = arr
		}
	}
	return elems, arrays
}

// arrayElemSource is what PostgreSQL takes the elements of array
// parameter i (from 0) as: the element type of the declared array type
// (none when undeclared: the first cast's, else the column's, reads
// them) and the element types of the casts written on it. binaryElem is
// the element type a binary array must carry: PostgreSQL's type of the
// parameter's elements.
func (p *preparedStmt) arrayElemSource(i int, pr *sqlrewrite.ParamRule) (src keymap.Source, binaryElem uint32, err error) {
	src = sourceOf(0, pr.Casts)
	var declared uint32
	if i < len(p.declared) {
		declared = p.declared[i]
	}
	switch {
	case declared != 0 && declared != pgtype.UnknownOID:
		elem, ok := arrayElemOIDs[declared]
		switch {
		case ok:
			src.OID = elem
			return src, elem, nil
		case keymap.KnownType(declared):
			return src, 0, newSQLError("42809", "op ANY/ALL (array) requires array on right side")
		}
		// An array of a type pgcloak does not convert, or no array: the
		// error names the type.
		return src, 0, columnValueError(pr.Rule, keymap.Convertible(keymap.Source{OID: declared}, pr.Rule.Type, keymap.UseCompare))
	case len(pr.Casts) > 0:
		return src, pr.Casts[0].OID, nil
	}
	return src, pr.Rule.Type.OID(), nil
}

// arrayCandidatesParam is the value of the hidden parameter of an array
// parameter: the candidates of every element, flattened into one binary
// bytea[]. A NULL element stays a NULL element, an element no value of
// the column's type can equal becomes one no stored value equals (so NULL
// semantics stay PostgreSQL's), an empty array stays empty, and a NULL
// array gives NULL.
func (ss *session) arrayCandidatesParam(cs *ciphers, h *sqlrewrite.ParamRule, st *preparedStmt, format int16, raw []byte, tc *keymap.TextContext) ([]byte, error) {
	if raw == nil {
		return nil, nil
	}
	i := h.Source - 1
	var pr *sqlrewrite.ParamRule
	if i < len(st.plan.Params) {
		pr = st.plan.Params[i]
	}
	if pr == nil || !pr.Array {
		return nil, newSQLError("XX000", "parameter $%d is not an array parameter", h.Source)
	}
	src, elemOID, err := st.arrayElemSource(i, pr)
	if err != nil {
		return nil, err
	}
	elems, err := arrayElements(format, raw, elemOID)
	if err != nil {
		return nil, err
	}
	cands, err := cs.elementCandidates(h.Rule, src, format, elems, tc)
	if err != nil {
		return nil, err
	}
	return encodeByteaArray(cands), nil
}

// elementCandidates returns the candidates of every element of an array
// compared with rule's column, flattened: a NULL element stays a NULL
// element, and elements no value of the column's type can equal become
// one element no stored value equals (so NULL semantics stay
// PostgreSQL's).
func (cs *ciphers) elementCandidates(rule *policy.ColumnRule, src keymap.Source, format int16, elems [][]byte, tc *keymap.TextContext) ([][]byte, error) {
	cands := make([][]byte, 0, len(elems))
	nothing := false
	for _, e := range elems {
		if e == nil {
			cands = append(cands, nil)
			continue
		}
		c, err := cs.candidates(rule, clientValue{src: src, format: format, raw: e}, tc)
		if err != nil {
			return nil, err
		}
		if len(c) == 0 {
			if !nothing {
				cands = append(cands, matchesNothing)
				nothing = true
			}
			continue
		}
		cands = append(cands, c...)
	}
	return cands, nil
}

// arrayElements returns the elements of an array parameter in the
// client's format, flattened in storage order (as = ANY reads a
// multi-dimensional array), nil for a NULL element.
func arrayElements(format int16, raw []byte, elemOID uint32) ([][]byte, error) {
	switch format {
	case keymap.TextFormat:
		return parseArrayText(raw)
	case keymap.BinaryFormat:
		return decodeArrayBinary(raw, elemOID)
	}
	return nil, newSQLError("22023", "unsupported format code: %d", format)
}

// maxArrayDims is PostgreSQL's MAXDIM.
const maxArrayDims = 6

// decodeArrayBinary reads an array in PostgreSQL's binary format
// (array_send): the header is checked as array_recv checks it, and
// pgtype's array codec walks the elements, each of which is the element
// type's binary form, given back as it is.
func decodeArrayBinary(raw []byte, elemOID uint32) ([][]byte, error) {
	if len(raw) < 12 {
		return nil, newSQLError("08P01", "insufficient data left in message")
	}
	ndim := int32(binary.BigEndian.Uint32(raw))
	flags := int32(binary.BigEndian.Uint32(raw[4:]))
	elem := binary.BigEndian.Uint32(raw[8:])
	switch {
	case ndim < 0:
		return nil, newSQLError("22P03", "invalid number of dimensions: %d", ndim)
	case ndim > maxArrayDims:
		return nil, newSQLError("54000", "number of array dimensions (%d) exceeds the maximum allowed (%d)", ndim, maxArrayDims)
	case flags != 0 && flags != 1:
		return nil, newSQLError("22P03", "invalid array flags")
	case elem != elemOID:
		return nil, newSQLError("42804", "wrong element type")
	}
	if len(raw) < 12+8*int(ndim) {
		return nil, newSQLError("08P01", "insufficient data left in message")
	}
	for d := range int(ndim) {
		length := int32(binary.BigEndian.Uint32(raw[12+8*d:]))
		lower := int32(binary.BigEndian.Uint32(raw[16+8*d:]))
		if length < 0 {
			return nil, newSQLError("54000", "array size exceeds the maximum allowed")
		}
		if int64(lower)+int64(length) > 1<<31-1 {
			return nil, newSQLError("54000", "array lower bound is too large: %d", lower)
		}
	}
	// Read as a bytea[], whose elements' binary form is their bytes: each
	// element comes back as it was sent.
	codec := &pgtype.ArrayCodec{ElementType: &pgtype.Type{Name: "bytea", OID: pgtype.ByteaOID, Codec: pgtype.ByteaCodec{}}}
	m := byteaArrays.Get().(*pgtype.Map)
	defer byteaArrays.Put(m)
	var out pgtype.FlatArray[[]byte]
	plan := codec.PlanScan(m, byteaArrayOID, pgtype.BinaryFormatCode, &out)
	if plan == nil {
		return nil, newSQLError("XX000", "cannot decode a binary array")
	}
	if err := plan.Scan(raw, &out); err != nil {
		return nil, newSQLError("22P03", "incorrect binary data format in array parameter")
	}
	if out == nil {
		out = pgtype.FlatArray[[]byte]{}
	}
	return out, nil
}

// parseArrayText reads an array literal as PostgreSQL's array_in does
// (PostgreSQL 17's rules, which differ from earlier versions' only on
// malformed literals: 17 takes empty sub-arrays, {{}}, for an empty
// array, and reports a bound out of range as such): optional dimension
// decoration ([1:2]={…}),
// elements separated by commas in braces, nested for more dimensions,
// which must be rectangular; an element is double-quoted (backslash
// escapes any character) or not (backslash escapes, whitespace around it
// dropped, NULL in any case is NULL). pgx's own parser is laxer (it keeps
// the whitespace around unquoted elements, knows no escapes outside
// quotes, nor NULL in lower case), which would change what an element
// is. Errors never quote the value.
func parseArrayText(s []byte) ([][]byte, error) {
	if !utf8.Valid(s) {
		return nil, newSQLError("22021", "invalid byte sequence for encoding \"UTF8\"")
	}
	p := &arrayLexer{s: s}
	dims, err := p.dimensions()
	if err != nil {
		return nil, err
	}
	if len(dims) == 0 {
		if p.peek() != '{' {
			return nil, malformedArray("Array value must start with \"{\" or dimension information.")
		}
	} else {
		if p.peek() != '=' {
			return nil, malformedArray("Missing \"=\" after array dimensions.")
		}
		p.i++
		p.skipSpace()
		if p.peek() != '{' {
			return nil, malformedArray("Array contents must start with \"{\".")
		}
	}
	elems, err := p.contents(dims)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i < len(p.s) {
		return nil, malformedArray("Junk after closing right brace.")
	}
	return elems, nil
}

func malformedArray(detail string) error {
	return newSQLError("22P02", "malformed array literal: %s", detail)
}

// arrayLexer walks an array literal.
type arrayLexer struct {
	s []byte
	i int
}

// peek is the next byte, or 0 at the end (a NUL cannot be in the text).
func (p *arrayLexer) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *arrayLexer) skipSpace() {
	for p.i < len(p.s) && isArraySpace(p.s[p.i]) {
		p.i++
	}
}

// isArraySpace is PostgreSQL's scanner_isspace.
func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// dimensions reads the optional [lb:ub] or [ub] items, returning each
// dimension's length.
func (p *arrayLexer) dimensions() ([]int, error) {
	var dims []int
	for {
		p.skipSpace()
		if p.peek() != '[' {
			return dims, nil
		}
		p.i++
		if len(dims) >= maxArrayDims {
			return nil, newSQLError("54000", "number of array dimensions exceeds the maximum allowed (%d)", maxArrayDims)
		}
		lower, ok, err := p.dimensionInt()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, malformedArray("\"[\" must introduce explicitly-specified array dimensions.")
		}
		upper := lower
		if p.peek() == ':' {
			p.i++
			if upper, ok, err = p.dimensionInt(); err != nil {
				return nil, err
			}
			if !ok {
				return nil, malformedArray("Missing array dimension value.")
			}
		} else {
			lower = 1
		}
		if p.peek() != ']' {
			return nil, malformedArray("Missing \"]\" after array dimensions.")
		}
		p.i++
		if upper < lower {
			return nil, newSQLError("2202E", "upper bound cannot be less than lower bound")
		}
		if upper == 1<<31-1 {
			return nil, newSQLError("54000", "array upper bound is too large: %d", upper)
		}
		dims = append(dims, int(upper-lower+1))
	}
}

// dimensionInt reads a signed integer of a dimension; ok is false when
// there are no digits.
func (p *arrayLexer) dimensionInt() (int64, bool, error) {
	neg := false
	switch p.peek() {
	case '-':
		neg = true
		p.i++
	case '+':
		p.i++
	}
	start := p.i
	var v int64
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		v = v*10 + int64(p.s[p.i]-'0')
		if v > 1<<31 {
			return 0, false, newSQLError("22003", "array bound is out of integer range")
		}
		p.i++
	}
	if p.i == start {
		return 0, false, nil
	}
	if neg {
		v = -v
	}
	if v > 1<<31-1 || v < -1<<31 {
		return 0, false, newSQLError("22003", "array bound is out of integer range")
	}
	return v, true, nil
}

// Array literal tokens.
const (
	tokLevelStart = iota
	tokLevelEnd
	tokDelim
	tokElem
	tokNull
)

// contents reads the braces (ReadArrayStr): the elements in order, the
// structure checked against dims when given.
func (p *arrayLexer) contents(dims []int) ([][]byte, error) {
	ndim := len(dims)
	specified := ndim > 0
	dim := make([]int, maxArrayDims)
	for d := range dim {
		dim[d] = -1
	}
	copy(dim, dims)
	var nelems [maxArrayDims]int
	frozen := specified
	expectDelim := false
	level := 0
	out := [][]byte{}
	dimensionError := func() error {
		if specified {
			return malformedArray("Specified array dimensions do not match array contents.")
		}
		return malformedArray("Multidimensional arrays must have sub-arrays with matching dimensions.")
	}
	for {
		tok, elem, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case tokLevelStart:
			if expectDelim {
				return nil, malformedArray("Unexpected \"{\" character.")
			}
			if level >= maxArrayDims {
				return nil, newSQLError("54000", "number of array dimensions exceeds the maximum allowed (%d)", maxArrayDims)
			}
			nelems[level] = 0
			level++
			if level > ndim {
				if frozen {
					return nil, dimensionError()
				}
				ndim = level
			}
		case tokLevelEnd:
			if nelems[level-1] > 0 && !expectDelim {
				return nil, malformedArray("Unexpected \"}\" character.")
			}
			level--
			if level > 0 {
				nelems[level-1]++
			}
			if dim[level] < 0 {
				dim[level] = nelems[level]
			} else if nelems[level] != dim[level] {
				return nil, dimensionError()
			}
			expectDelim = true
		case tokDelim:
			if !expectDelim {
				return nil, malformedArray("Unexpected \",\" character.")
			}
			expectDelim = false
		case tokElem, tokNull:
			if expectDelim {
				return nil, malformedArray("Unexpected array element.")
			}
			if tok == tokNull {
				out = append(out, nil)
			} else {
				out = append(out, elem)
			}
			frozen = true
			if level != ndim {
				return nil, dimensionError()
			}
			nelems[level-1]++
			expectDelim = true
		}
		if level == 0 {
			return out, nil
		}
	}
}

// token reads the next token (ReadArrayToken), skipping whitespace before
// it.
func (p *arrayLexer) token() (int, []byte, error) {
	for {
		if p.i >= len(p.s) {
			return 0, nil, malformedArray("Unexpected end of input.")
		}
		switch c := p.s[p.i]; {
		case c == '{':
			p.i++
			return tokLevelStart, nil, nil
		case c == '}':
			p.i++
			return tokLevelEnd, nil, nil
		case c == '"':
			p.i++
			return p.quoted()
		case c == ',':
			p.i++
			return tokDelim, nil, nil
		case isArraySpace(c):
			p.i++
		default:
			return p.unquoted()
		}
	}
}

func (p *arrayLexer) quoted() (int, []byte, error) {
	elem := []byte{}
	for {
		if p.i >= len(p.s) {
			return 0, nil, malformedArray("Unexpected end of input.")
		}
		switch c := p.s[p.i]; c {
		case '\\':
			p.i++
			if p.i >= len(p.s) {
				return 0, nil, malformedArray("Unexpected end of input.")
			}
			elem = append(elem, p.s[p.i])
			p.i++
		case '"':
			p.i++
			p.skipSpace()
			if next := p.peek(); next != ',' && next != '{' && next != '}' {
				return 0, nil, malformedArray("Incorrectly quoted array element.")
			}
			return tokElem, elem, nil
		default:
			elem = append(elem, c)
			p.i++
		}
	}
}

func (p *arrayLexer) unquoted() (int, []byte, error) {
	elem := []byte{}
	kept := 0 // the length without trailing whitespace
	escapes := false
	for {
		if p.i >= len(p.s) {
			return 0, nil, malformedArray("Unexpected end of input.")
		}
		switch c := p.s[p.i]; c {
		case '{':
			return 0, nil, malformedArray("Unexpected \"{\" character.")
		case '"':
			return 0, nil, malformedArray("Incorrectly quoted array element.")
		case '\\':
			p.i++
			if p.i >= len(p.s) {
				return 0, nil, malformedArray("Unexpected end of input.")
			}
			elem = append(elem, p.s[p.i])
			p.i++
			kept = len(elem)
			escapes = true
		case ',', '}':
			elem = elem[:kept]
			if !escapes && len(elem) == 4 && (elem[0]|0x20) == 'n' && (elem[1]|0x20) == 'u' && (elem[2]|0x20) == 'l' && (elem[3]|0x20) == 'l' {
				return tokNull, nil, nil
			}
			return tokElem, elem, nil
		default:
			elem = append(elem, c)
			if !isArraySpace(c) {
				kept = len(elem)
			}
			p.i++
		}
	}
}
