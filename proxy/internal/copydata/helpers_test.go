package copydata

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// field is a decoded value as a test sees it; null wins over v.
type field struct {
	v    string
	null bool
}

func val(s string) field { return field{v: s} }

var null = field{null: true}

func (f field) String() string {
	if f.null {
		return "NULL"
	}
	return fmt.Sprintf("%q", f.v)
}

// recorder is a FieldFunc that records what it saw and returns what next
// says (or the value unchanged when next is nil).
type recorder struct {
	seen [][]field // per row, in column order of the calls
	rows []int64
	next func(row int64, col int, in field) field
}

func (rc *recorder) fn(row int64, col int, value []byte, isNull bool) ([]byte, bool, error) {
	in := field{v: string(value), null: isNull}
	if isNull && value != nil {
		return nil, false, fmt.Errorf("non-nil value for NULL")
	}
	if len(rc.rows) == 0 || rc.rows[len(rc.rows)-1] != row {
		rc.rows = append(rc.rows, row)
		rc.seen = append(rc.seen, nil)
	}
	rc.seen[len(rc.seen)-1] = append(rc.seen[len(rc.seen)-1], in)
	if rc.next == nil {
		return value, isNull, nil
	}
	out := rc.next(row, col, in)
	if out.null {
		return nil, true, nil
	}
	return []byte(out.v), false, nil
}

// setAll returns a next func that replaces every transformed value with to.
func setAll(to field) func(int64, int, field) field {
	return func(int64, int, field) field { return to }
}

func allCols(n int) []bool {
	c := make([]bool, n)
	for i := range c {
		c[i] = true
	}
	return c
}

func onlyCol(n, col int) []bool {
	c := make([]bool, n)
	c[col] = true
	return c
}

// feed runs chunks through a fresh Rewriter and returns the concatenated
// output, the number of emit calls, and the first error.
func feed(t testing.TB, f Format, ncols int, cols []bool, fn FieldFunc, chunks ...string) (string, int, error) {
	t.Helper()
	r, err := NewRewriter(f, ncols, cols, fn)
	if err != nil {
		t.Fatalf("NewRewriter: %v", err)
	}
	var out strings.Builder
	emits := 0
	emit := func(b []byte) error {
		if len(b) == 0 {
			t.Errorf("emit called with no data")
		}
		emits++
		out.Write(b)
		return nil
	}
	for _, c := range chunks {
		if err := r.Write([]byte(c), emit); err != nil {
			return out.String(), emits, err
		}
	}
	err = r.Close(emit)
	return out.String(), emits, err
}

// binFile builds a binary COPY stream from rows of fields.
func binFile(rows ...[]field) string {
	b := []byte("PGCOPY\n\377\r\n\x00")
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	for _, row := range rows {
		b = append(b, binTuple(row...)...)
	}
	return string(append(b, 0xff, 0xff))
}

// binFileExt is binFile with an n-byte header extension and non-critical
// flags set.
func binFileExt(n int, rows ...[]field) string {
	b := []byte("PGCOPY\n\377\r\n\x00")
	b = binary.BigEndian.AppendUint32(b, 0x0000ffff)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, strings.Repeat("e", n)...)
	for _, row := range rows {
		b = append(b, binTuple(row...)...)
	}
	return string(append(b, 0xff, 0xff))
}

func binTuple(fields ...field) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		b = appendBinaryField(b, []byte(f.v), f.null)
	}
	return b
}

// splits returns every way to cut s into two pieces.
func splits(s string) [][]string {
	var out [][]string
	for i := 0; i <= len(s); i++ {
		out = append(out, []string{s[:i], s[i:]})
	}
	return out
}

// bytewise cuts s into one-byte chunks.
func bytewise(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}
