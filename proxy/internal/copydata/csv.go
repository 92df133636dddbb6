package copydata

import (
	"bytes"
	"encoding/hex"
	"errors"
)

// This file is the CSV format's fields: splitting and unquoting as
// PostgreSQL's CopyReadAttributesCSV does, quoting as CopyAttributeOutCSV.

var errUnterminated = errors.New("unterminated CSV quoted field")

// rewriteCSV appends the rewritten line (without terminator) to r.out. Only
// transformed fields are re-quoted; the rest keep their bytes.
func (r *Rewriter) rewriteCSV(row int64, line []byte) error {
	if r.ncols == 0 {
		return r.rewriteEmpty(row, line)
	}
	copied, start, col := 0, 0, 0
	for {
		want := col < r.ncols && r.cols[col]
		end, quoted, more, err := r.csvField(line, start, want)
		if err != nil {
			return &Error{Row: row, Msg: err.Error()}
		}
		if want {
			null := !quoted && bytes.Equal(line[start:end], r.null)
			done, err := r.csvTransform(row, col, null, line[copied:start])
			if err != nil {
				return err
			}
			if done {
				copied = end
			}
		}
		col++
		if !more {
			break
		}
		start = end + 1
	}
	if col != r.ncols {
		return countError(row, r.ncols, col)
	}
	r.out = append(r.out, line[copied:]...)
	return nil
}

// csvTransform transforms the field decoded into r.scratch. When the value
// changed it appends before and the new encoding, and returns true.
func (r *Rewriter) csvTransform(row int64, col int, null bool, before []byte) (bool, error) {
	var value []byte
	if !null {
		value = r.scratch
	}
	out, outNull, changed, err := r.apply(row, col, value, null)
	if err != nil || !changed {
		return false, err
	}
	r.out = append(r.out, before...)
	if outNull {
		r.out = append(r.out, r.null...)
		return true, nil
	}
	if r.bytea {
		r.byteaText = hex.AppendEncode(append(r.byteaText[:0], '\\', 'x'), out)
		out = r.byteaText
	}
	r.out = r.appendCSV(r.out, out)
	return true, nil
}

// csvField finds the field starting at line[start]; with decode it leaves the
// unquoted value in r.scratch. end is the delimiter or line end; quoted says
// a quote was seen (so the field cannot be NULL); more reports a delimiter.
// A quote may open anywhere in a field, and a field may hold several quoted
// stretches, as in PostgreSQL.
func (r *Rewriter) csvField(line []byte, start int, decode bool) (end int, quoted, more bool, err error) {
	delim, quote, escape := r.f.Delimiter, r.f.Quote, r.f.Escape
	if decode {
		r.scratch = r.scratch[:0]
	}
	i := start
	for {
		seg := line[i:]
		k := bytes.IndexByte(seg, delim)
		if k >= 0 {
			seg = seg[:k]
		}
		q := bytes.IndexByte(seg, quote)
		if q < 0 {
			if decode {
				r.scratch = append(r.scratch, seg...)
			}
			if k < 0 {
				return len(line), quoted, false, nil
			}
			return i + k, quoted, true, nil
		}
		if decode {
			r.scratch = append(r.scratch, seg[:q]...)
		}
		quoted = true
		i, err = r.csvQuoted(line, i+q+1, decode, quote, escape)
		if err != nil {
			return 0, false, false, err
		}
	}
}

// csvQuoted reads a quoted stretch starting after its opening quote and
// returns the index after its closing quote.
func (r *Rewriter) csvQuoted(line []byte, i int, decode bool, quote, escape byte) (int, error) {
	for i < len(line) {
		c := line[i]
		i++
		if c == escape && i < len(line) && (line[i] == escape || line[i] == quote) {
			c = line[i]
			i++
		} else if c == quote {
			return i, nil
		}
		if decode {
			r.scratch = append(r.scratch, c)
		}
	}
	return 0, errUnterminated
}

// appendCSV writes v as CopyAttributeOutCSV does: quoted when it holds the
// delimiter, the quote, CR or LF, when it equals the NULL marker, or when it
// is \. alone on a one-column line (an end-of-data marker to PostgreSQL 17
// and older); inside quotes, quote and escape characters get the escape.
func (r *Rewriter) appendCSV(dst, v []byte) []byte {
	if !r.csvNeedsQuotes(v) {
		return append(dst, v...)
	}
	quote, escape := r.f.Quote, r.f.Escape
	dst = append(dst, quote)
	start := 0
	for i, c := range v {
		if c == quote || c == escape {
			dst = append(dst, v[start:i]...)
			dst = append(dst, escape)
			start = i
		}
	}
	dst = append(dst, v[start:]...)
	return append(dst, quote)
}

func (r *Rewriter) csvNeedsQuotes(v []byte) bool {
	if bytes.Equal(v, r.null) {
		return true
	}
	if r.ncols == 1 && string(v) == `\.` {
		return true
	}
	for _, c := range v {
		if c == r.f.Delimiter || c == r.f.Quote || c == '\n' || c == '\r' {
			return true
		}
	}
	return false
}
