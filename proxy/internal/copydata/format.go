package copydata

import (
	"errors"
	"fmt"
	"strings"
)

// normalize fills in PostgreSQL's defaults and rejects the option
// combinations PostgreSQL rejects (ProcessCopyOptions), plus a quote or
// escape of CR or LF, which PostgreSQL accepts but cannot parse sensibly.
// Refusing up front means the parser never has to guess.
func (f Format) normalize() (Format, error) {
	switch f.Kind {
	case Text, CSV:
	case Binary:
		return f, f.checkBinary()
	default:
		return f, fmt.Errorf("copydata: unknown format %v", f.Kind)
	}
	if f.Delimiter == 0 {
		f.Delimiter = '\t'
		if f.Kind == CSV {
			f.Delimiter = ','
		}
	}
	if !f.NullSet && f.Null == "" {
		if f.Kind == Text {
			f.Null = `\N`
		}
	}
	f.NullSet = true
	if f.Kind == CSV {
		if f.Quote == 0 {
			f.Quote = '"'
		}
		if f.Escape == 0 {
			f.Escape = f.Quote
		}
	}
	return f, f.checkTextLike()
}

func (f Format) checkBinary() error {
	if f.Delimiter != 0 || f.Null != "" || f.NullSet || f.Quote != 0 || f.Escape != 0 || f.Header {
		return errors.New("copydata: binary format takes no delimiter, null, quote, escape or header")
	}
	return nil
}

func (f Format) checkTextLike() error {
	d := f.Delimiter
	if d == '\r' || d == '\n' {
		return errors.New("copydata: delimiter cannot be newline or carriage return")
	}
	if strings.ContainsAny(f.Null, "\r\n") {
		return errors.New("copydata: null marker cannot contain newline or carriage return")
	}
	if strings.IndexByte(f.Null, d) >= 0 {
		return errors.New("copydata: delimiter must not appear in the null marker")
	}
	if f.Kind == Text {
		return f.checkText()
	}
	return f.checkCSV()
}

func (f Format) checkText() error {
	// Backslash escapes could swallow such a delimiter (\x4a, \101), so
	// PostgreSQL refuses them, and so do we.
	if strings.IndexByte(`\.abcdefghijklmnopqrstuvwxyz0123456789`, f.Delimiter) >= 0 {
		return errors.New("copydata: text delimiter cannot be a backslash, period, lower-case letter or digit")
	}
	if f.Quote != 0 || f.Escape != 0 {
		return errors.New("copydata: quote and escape require CSV format")
	}
	return f.checkTextNull()
}

// checkTextNull refuses a NULL marker that would not read back as one whole
// field when written out, such as "a\" (its backslash would escape the
// following delimiter) or one holding \. (an end-of-data marker). PostgreSQL
// accepts these and then misreads its own output; a NULL written by the
// Rewriter must never merge into the next, possibly encrypted, field.
func (f Format) checkTextNull() error {
	n := len(f.Null)
	probe := append([]byte(f.Null), f.Delimiter)
	end, rawEnd, _ := textFieldEnd(probe, 0, f.Delimiter)
	var s lineScanner
	s.init(f)
	le, err := s.scan(append([]byte(f.Null), '\n'), true)
	if end != n || rawEnd != n || err != nil || le.kind != fullLine || le.end != n {
		return errors.New("copydata: null marker would not read back as a single field")
	}
	return nil
}

func (f Format) checkCSV() error {
	if f.Delimiter == f.Quote {
		return errors.New("copydata: delimiter and quote must be different")
	}
	for _, c := range []byte{f.Quote, f.Escape} {
		if c == '\r' || c == '\n' {
			return errors.New("copydata: quote and escape cannot be newline or carriage return")
		}
	}
	if strings.IndexByte(f.Null, f.Quote) >= 0 {
		return errors.New("copydata: quote must not appear in the null marker")
	}
	return nil
}
