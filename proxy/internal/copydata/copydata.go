// Package copydata rewrites PostgreSQL COPY data streams field by field.
//
// It owns the three COPY formats (text, CSV, binary) exactly as PostgreSQL
// parses and prints them: it splits a CopyData stream, chunked at arbitrary
// byte boundaries, into rows; decodes the fields the caller wants to
// transform; and re-encodes the transformed values so that the reader on the
// other side (PostgreSQL for COPY FROM STDIN, the client for COPY TO STDOUT)
// sees exactly the values the transform returned. Everything else is copied
// through byte for byte. It knows nothing about keys, SQL or the wire
// protocol: the proxy feeds it CopyData payloads and forwards what it emits.
//
// Parsing follows PostgreSQL so that the proxy and the server always agree on
// where each field starts and ends: a disagreement could put an untransformed
// value into an encrypted column. Where PostgreSQL versions disagree (the \.
// end-of-data marker changed in PostgreSQL 18) the Rewriter takes the reading
// under which no untransformed data can reach the other side, and reports an
// error where no such reading exists.
package copydata

import (
	"bytes"
	"errors"
	"fmt"
)

// Kind is a COPY format.
type Kind uint8

// The COPY formats. Text is the zero value, as it is PostgreSQL's default.
const (
	Text Kind = iota
	CSV
	Binary
)

// String returns the format's name as COPY spells it.
func (k Kind) String() string {
	switch k {
	case Text:
		return "text"
	case CSV:
		return "csv"
	case Binary:
		return "binary"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Format holds the COPY options that decide how rows are encoded.
type Format struct {
	Kind      Kind   // Text, CSV or Binary
	Delimiter byte   // 0 → tab for Text, ',' for CSV
	Null      string // NULL marker; used when NullSet or non-empty
	NullSet   bool   // Null was given explicitly (needed to set "" for Text)
	Quote     byte   // CSV only; 0 → '"'
	Escape    byte   // CSV only; 0 → Quote
	Header    bool   // the first line is a header, passed through untouched
}

// FieldFunc transforms field col (0-based) of data row row (1-based, the
// header not counted). value is the decoded field (unescaped, unquoted, or the
// raw binary bytes) and is nil when null is true. value is only valid during
// the call and must not be modified or retained: for binary data it points
// into the input. The returned out is copied before FieldFunc is called again.
// Returning value and null unchanged leaves the field's bytes untouched.
// In text and CSV a row is checked for its field count as it is rewritten, so
// FieldFunc may see the leading fields of a row that then fails; nothing of
// that row is emitted.
type FieldFunc func(row int64, col int, value []byte, null bool) (out []byte, outNull bool, err error)

// DefaultMaxRowBytes bounds how much of one row (or one binary header) the
// Rewriter buffers while waiting for its end.
const DefaultMaxRowBytes = 64 << 20

// shrinkAbove is the buffer capacity above which an emptied buffer is
// released, so one huge row does not pin its memory for the whole session.
const shrinkAbove = 1 << 20

// Option configures a Rewriter.
type Option func(*Rewriter)

// WithMaxRowBytes sets the largest row, in encoded bytes, that the Rewriter
// accepts. n <= 0 selects DefaultMaxRowBytes.
func WithMaxRowBytes(n int) Option {
	return func(r *Rewriter) {
		if n > 0 {
			r.maxRow = n
		}
	}
}

// WithByteaOutput says the transform returns bytea values, the bytes
// themselves: the Rewriter writes each as PostgreSQL's bytea hex input
// (\x and lower-case hex digits) in the COPY's text or CSV encoding, and
// binary COPY takes the bytes as they are. In text and CSV a transformed
// field is then always rewritten, even when the bytes equal the input.
// The hex goes straight into the output: in text it needs no escaping
// but for its backslash (the delimiter is never a digit, a lower-case
// letter or a backslash).
func WithByteaOutput() Option {
	return func(r *Rewriter) { r.bytea = true }
}

// Error reports malformed COPY data. Msg never contains field contents, which
// may be plaintext secrets.
type Error struct {
	Row int64 // 1-based data row; 0 for the header or the binary file header
	Msg string
}

func (e *Error) Error() string {
	if e.Row == 0 {
		return "COPY header: " + e.Msg
	}
	return fmt.Sprintf("COPY row %d: %s", e.Row, e.Msg)
}

// SQLState returns bad_copy_file_format.
func (e *Error) SQLState() string { return "22P04" }

// FieldError wraps an error returned by the FieldFunc with the position of
// the field. Col is 0-based; the message counts columns from 1.
type FieldError struct {
	Row int64
	Col int
	Err error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("COPY row %d, column %d: %v", e.Row, e.Col+1, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// SQLState returns the wrapped error's SQLSTATE, or internal_error when it
// has none, so the field position does not hide the transform's own code.
func (e *FieldError) SQLState() string {
	var s interface{ SQLState() string }
	if errors.As(e.Err, &s) {
		return s.SQLState()
	}
	return "XX000"
}

var errClosed = errors.New("copydata: Rewriter used after Close")

// Rewriter rewrites one COPY data stream. It is not safe for concurrent use.
type Rewriter struct {
	f      Format // normalized
	null   []byte
	ncols  int
	cols   []bool // len ncols
	fn     FieldFunc
	maxRow int
	bytea  bool // WithByteaOutput

	byteaText []byte // \x and hex of the current bytea output (CSV, rare text)

	rows   int64
	header bool // a header line is still expected
	ended  bool // end-of-data marker or binary trailer seen
	closed bool
	err    error // sticky

	pending []byte // the start of a row whose end has not arrived
	out     []byte // output not yet emitted
	scratch []byte // decoded value of the current field

	ls        lineScanner
	binHeader bool // binary file header seen
}

// NewRewriter makes a streaming rewriter for rows of exactly ncols fields;
// transform is called only for the columns col where cols[col] is true
// (missing entries of cols count as false).
func NewRewriter(f Format, ncols int, cols []bool, transform FieldFunc, opts ...Option) (*Rewriter, error) {
	nf, err := f.normalize()
	if err != nil {
		return nil, err
	}
	if ncols < 0 || ncols > 32767 {
		return nil, fmt.Errorf("copydata: invalid column count %d", ncols)
	}
	if len(cols) > ncols {
		return nil, fmt.Errorf("copydata: %d column flags for %d columns", len(cols), ncols)
	}
	all := make([]bool, ncols)
	copy(all, cols)
	if nf.Kind == CSV && ncols == 1 && nf.Null == `\.` {
		// A NULL would be written as a line holding only \., which
		// PostgreSQL 17 and older take for the end of the data.
		return nil, errors.New("copydata: null marker \\. is ambiguous in a one-column CSV")
	}
	if transform == nil && anyTrue(all) {
		return nil, errors.New("copydata: columns to transform but no transform")
	}
	r := &Rewriter{
		f:      nf,
		null:   []byte(nf.Null),
		ncols:  ncols,
		cols:   all,
		fn:     transform,
		maxRow: DefaultMaxRowBytes,
		header: nf.Header,
	}
	for _, o := range opts {
		o(r)
	}
	r.ls.init(nf)
	return r, nil
}

func anyTrue(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}

// Rows returns the number of data rows rewritten so far (a header line and
// the end-of-data marker are not rows).
func (r *Rewriter) Rows() int64 { return r.rows }

// Write consumes the next chunk of the data stream. It calls emit at most
// once, with the re-encoded output of every row the chunk completed; it does
// not call emit when only part of a row has arrived. The slice passed to emit
// is only valid during the call. After an error, Write and Close return that
// error and emit nothing more; the output of the failing call is not emitted.
// Data after the end-of-data marker (text, CSV) is dropped, since the server
// ignores it and it was never transformed.
func (r *Rewriter) Write(chunk []byte, emit func([]byte) error) error {
	if err := r.usable(); err != nil {
		return err
	}
	if r.ended {
		return r.afterEnd(len(chunk))
	}
	data := chunk
	if len(r.pending) > 0 {
		r.pending = append(r.pending, chunk...)
		data = r.pending
	}
	n, err := r.process(data, false)
	if err != nil {
		return r.fail(err)
	}
	r.keep(data[n:])
	return r.flush(emit)
}

// Close ends the stream (at CopyDone): it rewrites a final text or CSV row
// that has no line terminator, emits what is left, and reports an error if
// the data ends inside a row, a quoted CSV field or the binary header.
func (r *Rewriter) Close(emit func([]byte) error) error {
	if err := r.usable(); err != nil {
		return err
	}
	r.closed = true
	if !r.ended {
		if err := r.finish(); err != nil {
			return r.fail(err)
		}
	}
	r.pending = nil
	return r.flush(emit)
}

func (r *Rewriter) finish() error {
	n, err := r.process(r.pending, true)
	if err != nil {
		return err
	}
	if r.f.Kind != Binary {
		return nil
	}
	if !r.binHeader {
		return &Error{Msg: "data ended inside the binary file header"}
	}
	if n < len(r.pending) {
		return &Error{Row: r.rows + 1, Msg: "data ended inside a binary tuple"}
	}
	return nil
}

func (r *Rewriter) usable() error {
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return errClosed
	}
	return nil
}

func (r *Rewriter) fail(err error) error {
	r.err = err
	r.out = r.out[:0]
	return err
}

// afterEnd handles data that follows the end of the data. PostgreSQL
// ignores it in text and CSV; in binary it rejects it, and so do we.
func (r *Rewriter) afterEnd(n int) error {
	if r.f.Kind == Binary && n > 0 {
		return r.fail(&Error{Row: r.rows + 1, Msg: "received copy data after EOF marker"})
	}
	return nil
}

func (r *Rewriter) process(data []byte, eof bool) (int, error) {
	if r.f.Kind == Binary {
		return r.processBinary(data)
	}
	return r.processLines(data, eof)
}

// keep stores the unconsumed rest of the input for the next Write.
func (r *Rewriter) keep(rest []byte) {
	if len(rest) == 0 && cap(r.pending) > shrinkAbove {
		r.pending = nil
		return
	}
	// rest may alias r.pending; append moves it down with memmove semantics.
	r.pending = append(r.pending[:0], rest...)
}

func (r *Rewriter) flush(emit func([]byte) error) error {
	if len(r.out) == 0 {
		return nil
	}
	err := emit(r.out)
	r.out = r.out[:0]
	if cap(r.out) > shrinkAbove {
		r.out = nil
	}
	if err != nil {
		return r.fail(err)
	}
	return nil
}

// apply calls the transform and reports whether the field must be
// re-encoded. An unchanged value keeps its original bytes, which is what
// makes an identity transform reproduce its input exactly.
func (r *Rewriter) apply(row int64, col int, value []byte, null bool) (out []byte, outNull, changed bool, err error) {
	out, outNull, err = r.fn(row, col, value, null)
	if err != nil {
		return nil, false, false, &FieldError{Row: row, Col: col, Err: err}
	}
	if outNull != null {
		return out, outNull, true, nil
	}
	if null {
		return nil, true, false, nil
	}
	if r.bytea && r.f.Kind != Binary {
		return out, false, true, nil
	}
	return out, false, !bytes.Equal(out, value), nil
}

func countError(row int64, want, got int) error {
	return &Error{Row: row, Msg: fmt.Sprintf("expected %d columns, got %d", want, got)}
}

func (r *Rewriter) tooLong(row int64) error {
	return &Error{Row: row, Msg: fmt.Sprintf("row exceeds %d bytes", r.maxRow)}
}
