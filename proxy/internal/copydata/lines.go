package copydata

import (
	"bytes"
	"errors"
)

// This file splits text and CSV data into lines the way PostgreSQL's
// CopyReadLineText does, including its newline-style rules and the \.
// end-of-data marker.

type eolStyle uint8

const (
	eolUnknown eolStyle = iota
	eolNL
	eolCR
	eolCRNL
)

type lineKind uint8

const (
	needMore  lineKind = iota // the line's end has not arrived yet
	fullLine                  // content buf[:end], terminator buf[end:next]
	lastLine                  // at the end of the data, with no terminator
	endMarker                 // the \. marker line, buf[:next]
)

type lineEnd struct {
	kind      lineKind
	end, next int
}

var (
	errMarkerNotAlone = errors.New("end-of-copy marker is not alone on its line")
	errMarkerStyle    = errors.New("end-of-copy marker does not match previous newline style")
)

// lineScanner finds line ends. The newline style is fixed by the first line
// and kept for the stream; the other fields are the resumable state of the
// current line, so a long line arriving in many chunks is scanned once.
type lineScanner struct {
	csv       bool
	quote     byte
	escape    byte
	hasEscape bool   // escape differs from quote
	special   []byte // bytes that need a look; the rest are plain data
	eol       eolStyle

	pos        int // next byte to examine, relative to the line start
	inQuote    bool
	lastWasEsc bool
}

func (s *lineScanner) init(f Format) {
	s.csv = f.Kind == CSV
	s.special = []byte{'\n', '\r', '\\'}
	if !s.csv {
		return
	}
	s.quote, s.escape = f.Quote, f.Escape
	s.hasEscape = f.Escape != f.Quote
	s.special = append(s.special, s.quote)
	if s.hasEscape {
		s.special = append(s.special, s.escape)
	}
}

// nextSpecial returns the index of the first special byte at or after i, or
// len(buf). Each search only covers the stretch before the earliest special
// byte found so far, so a line is scanned a few times with IndexByte's
// vectorized loop rather than once byte by byte.
func (s *lineScanner) nextSpecial(buf []byte, i int) int {
	seg := buf[i:]
	for _, c := range s.special {
		if k := bytes.IndexByte(seg, c); k >= 0 {
			seg = seg[:k]
		}
	}
	return i + len(seg)
}

// eolBytes returns the stream's line terminator.
func (s *lineScanner) eolBytes() []byte {
	switch s.eol {
	case eolCR:
		return []byte{'\r'}
	case eolCRNL:
		return []byte{'\r', '\n'}
	}
	return []byte{'\n'}
}

func (s *lineScanner) reset() {
	s.pos, s.inQuote, s.lastWasEsc = 0, false, false
}

func (s *lineScanner) crError() error {
	if s.csv {
		return errors.New("unquoted carriage return found in data")
	}
	return errors.New("literal carriage return found in data")
}

func (s *lineScanner) nlError() error {
	if s.csv {
		return errors.New("unquoted newline found in data")
	}
	return errors.New("literal newline found in data")
}

// scan looks for the end of the line that starts at buf[0]. eof says no more
// data will come.
func (s *lineScanner) scan(buf []byte, eof bool) (lineEnd, error) {
	i := s.pos
	for {
		j := s.nextSpecial(buf, i)
		if j > i {
			// Any byte but the escape clears it, as in PostgreSQL.
			s.lastWasEsc = false
			i = j
		}
		if i >= len(buf) {
			if !eof {
				s.pos = i
				return lineEnd{kind: needMore}, nil
			}
			return lineEnd{kind: lastLine, end: len(buf), next: len(buf)}, nil
		}
		if !eof && s.needsLookahead(buf, i) {
			s.pos = i
			return lineEnd{kind: needMore}, nil
		}
		le, next, err := s.step(buf, i)
		if err != nil || le.kind != needMore {
			return le, err
		}
		i = next
	}
}

// step handles the special byte at buf[i]. It returns a line end, or the
// index to continue from (with kind needMore).
func (s *lineScanner) step(buf []byte, i int) (lineEnd, int, error) {
	c := buf[i]
	if s.csv {
		s.toggleQuote(c)
	}
	if (c == '\r' || c == '\n') && !s.inQuote {
		le, err := s.terminator(buf, i)
		return le, 0, err
	}
	if c != '\\' || (s.csv && i != 0) {
		return lineEnd{}, i + 1, nil
	}
	// In CSV, \ is only special as the first byte of a line, where \. may
	// be the end-of-data marker.
	if i+1 >= len(buf) {
		// A backslash at the very end of the data is data.
		return lineEnd{kind: lastLine, end: len(buf), next: len(buf)}, 0, nil
	}
	if buf[i+1] == '.' {
		le, ok, err := s.marker(buf, i)
		if err != nil || ok {
			return le, 0, err
		}
		return lineEnd{}, i + 1, nil // CSV: \. followed by data is data
	}
	if s.csv {
		return lineEnd{}, i + 1, nil
	}
	// Text: the byte after a backslash is data whatever it is, even CR/LF.
	return lineEnd{}, i + 2, nil
}

// toggleQuote tracks CSV quoting exactly as CopyReadLineText does.
func (s *lineScanner) toggleQuote(c byte) {
	isEsc := s.hasEscape && c == s.escape
	if s.inQuote && isEsc {
		s.lastWasEsc = !s.lastWasEsc
	}
	if c == s.quote && !s.lastWasEsc {
		s.inQuote = !s.inQuote
	}
	if !isEsc {
		s.lastWasEsc = false
	}
}

// needsLookahead reports whether the byte at buf[i] can only be judged with
// bytes that have not arrived yet. It is checked before any state changes,
// so scanning can resume at i.
func (s *lineScanner) needsLookahead(buf []byte, i int) bool {
	switch buf[i] {
	case '\r':
		if s.csv && s.inQuote {
			return false
		}
		return (s.eol == eolUnknown || s.eol == eolCRNL) && i+1 >= len(buf)
	case '\\':
		if s.csv && i != 0 {
			return false
		}
		if i+1 >= len(buf) {
			return true
		}
		if buf[i+1] != '.' {
			return false
		}
		if i+2 >= len(buf) {
			return true
		}
		return s.eol == eolCRNL && buf[i+2] == '\r' && i+3 >= len(buf)
	}
	return false
}

// terminator handles an unquoted CR or LF at buf[i]. The first line fixes
// the newline style; later lines must use it.
func (s *lineScanner) terminator(buf []byte, i int) (lineEnd, error) {
	if buf[i] == '\n' {
		if s.eol == eolCR || s.eol == eolCRNL {
			return lineEnd{}, s.nlError()
		}
		s.eol = eolNL
		return lineEnd{kind: fullLine, end: i, next: i + 1}, nil
	}
	switch s.eol {
	case eolNL:
		return lineEnd{}, s.crError()
	case eolCR:
		return lineEnd{kind: fullLine, end: i, next: i + 1}, nil
	}
	if i+1 < len(buf) && buf[i+1] == '\n' {
		s.eol = eolCRNL
		return lineEnd{kind: fullLine, end: i, next: i + 2}, nil
	}
	if s.eol == eolCRNL {
		return lineEnd{}, s.crError()
	}
	s.eol = eolCR
	return lineEnd{kind: fullLine, end: i, next: i + 1}, nil
}

// marker judges \. at buf[i]. In text it must be alone on its line, as
// PostgreSQL 18 requires (older versions would take the data before it as a
// row and stop, so the two readings differ and we refuse). In CSV it is only
// a marker when followed by the line terminator; otherwise it is data.
func (s *lineScanner) marker(buf []byte, i int) (lineEnd, bool, error) {
	at := func(k int) byte {
		if k < len(buf) {
			return buf[k]
		}
		return 0
	}
	j := i + 2
	if s.eol == eolCRNL {
		c := at(j)
		j++
		if c != '\r' {
			if s.csv {
				return lineEnd{}, false, nil
			}
			if c == '\n' {
				return lineEnd{}, false, errMarkerStyle
			}
			return lineEnd{}, false, errMarkerNotAlone
		}
	}
	c := at(j)
	j++
	if c != '\r' && c != '\n' {
		if s.csv {
			return lineEnd{}, false, nil
		}
		return lineEnd{}, false, errMarkerNotAlone
	}
	if (s.eol == eolNL || s.eol == eolCRNL) && c != '\n' || s.eol == eolCR && c != '\r' {
		return lineEnd{}, false, errMarkerStyle
	}
	if i > 0 {
		return lineEnd{}, false, errMarkerNotAlone
	}
	return lineEnd{kind: endMarker, next: j}, true, nil
}

// processLines rewrites the complete lines at the start of data and returns
// how many bytes it consumed.
func (r *Rewriter) processLines(data []byte, eof bool) (int, error) {
	off := 0
	for off < len(data) {
		buf := data[off:]
		le, err := r.ls.scan(buf, eof)
		if err != nil {
			return off, &Error{Row: r.lineRow(), Msg: err.Error()}
		}
		switch le.kind {
		case needMore:
			if len(buf) > r.maxRow {
				return off, r.tooLong(r.lineRow())
			}
			return off, nil
		case endMarker:
			r.endData(buf[:le.next])
			return len(data), nil
		}
		if le.next > r.maxRow {
			return off, r.tooLong(r.lineRow())
		}
		if err := r.line(buf[:le.end], buf[le.end:le.next]); err != nil {
			return off, err
		}
		r.ls.reset()
		off += le.next
	}
	return off, nil
}

// endData handles the \. marker. In text every PostgreSQL version stops
// there, so the marker is passed on. In CSV, PostgreSQL 17 and older stop
// there too, but 18 reads it as a data row, which we have not transformed;
// not sending it gives both the same, safe result. What follows is dropped:
// the server ignores it, and it was never transformed.
func (r *Rewriter) endData(marker []byte) {
	r.ended = true
	if r.f.Kind == Text {
		r.out = append(r.out, marker...)
	}
}

// lineRow is the row number for errors in the line being read.
func (r *Rewriter) lineRow() int64 {
	if r.header {
		return 0
	}
	return r.rows + 1
}

func (r *Rewriter) line(content, term []byte) error {
	if r.header {
		r.header = false
		r.out = append(r.out, content...)
		r.out = append(r.out, term...)
		return nil
	}
	row := r.rows + 1
	mark := len(r.out)
	var err error
	if r.f.Kind == CSV {
		err = r.rewriteCSV(row, content)
	} else {
		err = r.rewriteText(row, content)
	}
	if err != nil {
		return err
	}
	if len(term) == 0 && len(r.out) == mark {
		// The last line, rewritten to nothing (an empty NULL marker):
		// without a terminator the reader would see no row at all.
		term = r.ls.eolBytes()
	}
	r.out = append(r.out, term...)
	r.rows = row
	return nil
}

// rewriteEmpty handles a zero-column table, whose lines must be empty.
func (r *Rewriter) rewriteEmpty(row int64, line []byte) error {
	if len(line) != 0 {
		return &Error{Row: row, Msg: "extra data after last expected column"}
	}
	return nil
}
