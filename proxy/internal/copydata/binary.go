package copydata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// This file is the binary format: the file header, tuples of length-prefixed
// fields, and the trailer, as ReceiveCopyBinaryHeader and NextCopyFrom read
// them.

var binarySignature = []byte("PGCOPY\n\377\r\n\x00")

const (
	binaryHeaderLen = 11 + 4 + 4 // signature, flags, extension length
	flagOIDs        = 1 << 16
)

// processBinary rewrites the complete header and tuples at the start of data
// and returns how many bytes it consumed.
func (r *Rewriter) processBinary(data []byte) (int, error) {
	off := 0
	if !r.binHeader {
		n, err := r.binaryFileHeader(data)
		if err != nil || n == 0 {
			return 0, err
		}
		r.out = append(r.out, data[:n]...)
		r.binHeader = true
		off = n
	}
	for off < len(data) {
		if r.ended {
			return off, &Error{Row: r.rows + 1, Msg: "received copy data after EOF marker"}
		}
		n, err := r.binaryTuple(data[off:])
		if err != nil || n == 0 {
			return off, err
		}
		off += n
	}
	return off, nil
}

// binaryFileHeader checks the file header at the start of buf and returns its
// length, or 0 if it has not fully arrived.
func (r *Rewriter) binaryFileHeader(buf []byte) (int, error) {
	n := min(len(buf), len(binarySignature))
	if !bytes.Equal(buf[:n], binarySignature[:n]) {
		return 0, &Error{Msg: "COPY file signature not recognized"}
	}
	if len(buf) < binaryHeaderLen {
		return 0, nil
	}
	flags := binary.BigEndian.Uint32(buf[11:])
	if flags&flagOIDs != 0 {
		return 0, &Error{Msg: "invalid COPY file header (WITH OIDS)"}
	}
	if flags>>16 != 0 {
		return 0, &Error{Msg: "unrecognized critical flags in COPY file header"}
	}
	ext := int32(binary.BigEndian.Uint32(buf[15:]))
	if ext < 0 {
		return 0, &Error{Msg: "invalid COPY file header (negative extension length)"}
	}
	total := binaryHeaderLen + int(ext)
	if total > r.maxRow {
		return 0, &Error{Msg: fmt.Sprintf("file header exceeds %d bytes", r.maxRow)}
	}
	if len(buf) < total {
		return 0, nil
	}
	return total, nil
}

// binaryTuple rewrites the tuple (or trailer) at the start of buf and returns
// its length, or 0 if it has not fully arrived. The tuple is measured before
// any field is transformed, so the transform never sees a partial row.
func (r *Rewriter) binaryTuple(buf []byte) (int, error) {
	if len(buf) < 2 {
		return 0, nil
	}
	row := r.rows + 1
	count := int16(binary.BigEndian.Uint16(buf))
	if count == -1 {
		r.out = append(r.out, buf[:2]...)
		r.ended = true
		return 2, nil
	}
	if int(count) != r.ncols {
		return 0, countError(row, r.ncols, int(count))
	}
	size, err := r.binaryTupleSize(buf, row)
	if err != nil || size == 0 {
		return 0, err
	}
	if err := r.rewriteTuple(buf[:size], row); err != nil {
		return 0, err
	}
	r.rows = row
	return size, nil
}

// binaryTupleSize returns the length of the tuple at the start of buf, or 0
// if it has not fully arrived.
func (r *Rewriter) binaryTupleSize(buf []byte, row int64) (int, error) {
	pos := 2
	for col := 0; col < r.ncols; col++ {
		if len(buf) < pos+4 {
			return 0, nil
		}
		n := int32(binary.BigEndian.Uint32(buf[pos:]))
		pos += 4
		if n < -1 {
			return 0, &Error{Row: row, Msg: columnMsg(col, "invalid field size")}
		}
		if n > 0 {
			pos += int(n)
		}
		if pos > r.maxRow {
			return 0, r.tooLong(row)
		}
		if len(buf) < pos {
			return 0, nil
		}
	}
	return pos, nil
}

// rewriteTuple appends the complete tuple, with its transformed fields
// re-encoded, to r.out.
func (r *Rewriter) rewriteTuple(tuple []byte, row int64) error {
	copied, pos := 0, 2
	for col := 0; col < r.ncols; col++ {
		start := pos
		n := int32(binary.BigEndian.Uint32(tuple[pos:]))
		pos += 4
		null := n == -1
		var value []byte
		if !null {
			value = tuple[pos : pos+int(n) : pos+int(n)]
			pos += int(n)
		}
		if !r.cols[col] {
			continue
		}
		out, outNull, changed, err := r.apply(row, col, value, null)
		if err != nil {
			return err
		}
		if !changed {
			continue
		}
		if len(out) > math.MaxInt32 {
			return &Error{Row: row, Msg: columnMsg(col, "transformed value too long")}
		}
		r.out = append(r.out, tuple[copied:start]...)
		r.out = appendBinaryField(r.out, out, outNull)
		copied = pos
	}
	r.out = append(r.out, tuple[copied:]...)
	return nil
}

func appendBinaryField(dst, v []byte, null bool) []byte {
	if null {
		return binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}
