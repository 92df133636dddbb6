package copydata

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
)

// This file is the text format's fields: splitting and de-escaping as
// PostgreSQL's CopyReadAttributesText does, escaping as CopyAttributeOutText.

// rewriteText appends the rewritten line (without terminator) to r.out.
// Untouched stretches of the line are copied in one piece.
func (r *Rewriter) rewriteText(row int64, line []byte) error {
	if r.ncols == 0 {
		return r.rewriteEmpty(row, line)
	}
	copied, start, col := 0, 0, 0
	for {
		end, rawEnd, more := textFieldEnd(line, start, r.f.Delimiter)
		if col < r.ncols && r.cols[col] {
			done, err := r.textField(row, col, line[start:end], line[start:rawEnd], line[copied:start])
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

// textField transforms one field. raw is the field as PostgreSQL compares it
// with the NULL marker (without a lone trailing backslash); field is all its
// bytes. When the value changed it appends before (the untouched bytes since
// the last rewritten field) and the new encoding, and returns true.
func (r *Rewriter) textField(row int64, col int, field, raw, before []byte) (bool, error) {
	null := bytes.Equal(raw, r.null)
	var value []byte
	if !null {
		// Capped, so a transform that appends to it cannot write into
		// the rest of the line.
		value = raw[:len(raw):len(raw)]
		if bytes.IndexByte(raw, '\\') >= 0 {
			r.scratch = unescapeText(r.scratch[:0], raw)
			value = r.scratch
		}
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
		r.out, err = r.appendTextBytea(r.out, out, row, col)
	} else {
		r.out, err = r.appendText(r.out, out, row, col)
	}
	return true, err
}

// appendTextBytea appends bytea v as its hex input, escaped: \\x and the
// hex digits, which is what appendText makes of \x and the digits. When
// that is the NULL marker, appendText's way out is taken.
func (r *Rewriter) appendTextBytea(dst, v []byte, row int64, col int) ([]byte, error) {
	mark := len(dst)
	dst = hex.AppendEncode(append(dst, '\\', '\\', 'x'), v)
	if !bytes.Equal(dst[mark:], r.null) {
		return dst, nil
	}
	r.byteaText = hex.AppendEncode(append(r.byteaText[:0], '\\', 'x'), v)
	return r.appendText(dst[:mark], r.byteaText, row, col)
}

// appendText escapes v. If the escaped form is the NULL marker itself (a
// custom marker such as "abc" and the value "abc"), the reader would take it
// for NULL, so the first byte is written as an octal escape instead: it
// decodes the same but no longer matches. PostgreSQL's own output has this
// ambiguity; the proxy must not turn values into NULLs.
func (r *Rewriter) appendText(dst, v []byte, row int64, col int) ([]byte, error) {
	mark := len(dst)
	dst = appendEscaped(dst, v, r.f.Delimiter)
	if !bytes.Equal(dst[mark:], r.null) {
		return dst, nil
	}
	if len(v) == 0 {
		return dst[:mark], &Error{Row: row, Msg: columnMsg(col, "an empty value cannot be written when the NULL marker is empty")}
	}
	b := v[0]
	dst = append(dst[:mark], '\\', '0'+b>>6, '0'+(b>>3)&7, '0'+b&7)
	return appendEscaped(dst, v[1:], r.f.Delimiter), nil
}

func columnMsg(col int, msg string) string {
	return "column " + itoa(col+1) + ": " + msg
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// textFieldEnd finds the field starting at line[start]. end is where it stops
// (the delimiter or the line end); rawEnd is end minus a lone backslash at
// the end of the line, which PostgreSQL ignores; more reports a delimiter.
// Escapes are skipped with their exact length, because a digit or hex letter
// after \ooo or \xh belongs to the escape even if it is the delimiter.
//
// The next delimiter is searched for once and kept while the escapes before
// it are skipped: it is still the next one from any later position before
// it. An escape that swallows it moves past it, and the search is redone.
func textFieldEnd(line []byte, start int, delim byte) (end, rawEnd int, more bool) {
	i := start
	d := -1 // the first delimiter at or after i, or len(line) for none
	for {
		if d < i {
			d = len(line)
			if k := bytes.IndexByte(line[i:], delim); k >= 0 {
				d = i + k
			}
		}
		b := bytes.IndexByte(line[i:d], '\\')
		if b < 0 {
			if d == len(line) {
				return len(line), len(line), false
			}
			return d, d, true
		}
		i += b
		if i+1 >= len(line) {
			return len(line), i, false
		}
		i = escapeEnd(line, i+1)
	}
}

// escapeEnd returns the index after the escape whose first byte after the
// backslash is line[j].
func escapeEnd(line []byte, j int) int {
	c := line[j]
	j++
	switch {
	case isOctal(c):
		for k := 0; k < 2 && j < len(line) && isOctal(line[j]); k++ {
			j++
		}
	case c == 'x':
		for k := 0; k < 2 && j < len(line) && isHex(line[j]); k++ {
			j++
		}
	}
	return j
}

// unescapeText appends the de-escaped raw to dst.
func unescapeText(dst, raw []byte) []byte {
	for {
		b := bytes.IndexByte(raw, '\\')
		if b < 0 || b+1 >= len(raw) {
			if b >= 0 {
				raw = raw[:b]
			}
			return append(dst, raw...)
		}
		dst = append(dst, raw[:b]...)
		end := escapeEnd(raw, b+1)
		dst = append(dst, escapeValue(raw[b+1:end]))
		raw = raw[end:]
	}
}

// escapeValue decodes one escape, given the bytes after the backslash.
func escapeValue(e []byte) byte {
	c := e[0]
	switch {
	case isOctal(c):
		var v byte
		for _, d := range e {
			v = v<<3 + d - '0' // wraps like PostgreSQL's "& 0377"
		}
		return v
	case c == 'x' && len(e) > 1:
		var v byte
		for _, d := range e[1:] {
			v = v<<4 | hexValue(d)
		}
		return v
	}
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'v':
		return '\v'
	}
	return c
}

// appendEscaped escapes v as CopyAttributeOutText does: control characters
// with a C escape get it, the delimiter and backslash get a backslash, and
// everything else is copied. Runs of bytes that need nothing (hex digits,
// most text) are skipped eight at a time and copied in one piece.
func appendEscaped(dst, v []byte, delim byte) []byte {
	bs, dl := lsb*uint64('\\'), lsb*uint64(delim)
	start, i := 0, 0
	for {
		for i+8 <= len(v) {
			x := binary.LittleEndian.Uint64(v[i:])
			// Bytes below '\r'+1 include every control character
			// with a C escape; the rest of them are copied below.
			if hasLess(x, '\r'+1)|hasZero(x^bs)|hasZero(x^dl) != 0 {
				break
			}
			i += 8
		}
		end := min(i+8, len(v))
		for ; i < end; i++ {
			c := v[i]
			var esc byte
			if c < 0x20 {
				esc = controlEscape(c)
			}
			if esc == 0 && (c == '\\' || c == delim) {
				esc = c
			}
			if esc == 0 {
				continue
			}
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', esc)
			start = i + 1
		}
		if i >= len(v) {
			return append(dst, v[start:]...)
		}
	}
}

// lsb and msb are a byte's lowest and highest bit in each byte of a word.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasZero is non-zero exactly when some byte of x is zero.
func hasZero(x uint64) uint64 { return (x - lsb) &^ x & msb }

// hasLess is non-zero exactly when some byte of x is below n (n <= 128).
func hasLess(x uint64, n byte) uint64 { return (x - lsb*uint64(n)) &^ x & msb }

func controlEscape(c byte) byte {
	switch c {
	case '\b':
		return 'b'
	case '\f':
		return 'f'
	case '\n':
		return 'n'
	case '\r':
		return 'r'
	case '\t':
		return 't'
	case '\v':
		return 'v'
	}
	return 0
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
