package proxy

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"
)

// countingWriter records each Write it gets.
type countingWriter struct {
	bytes.Buffer
	writes int
	err    error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes++
	return c.Buffer.Write(p)
}

// Messages wait for a flush, in one write; the buffer goes back to the
// pool at the flush, so an idle writer holds none.
func TestMsgWriterBuffersUntilFlushAndHoldsNothingIdle(t *testing.T) {
	dst := &countingWriter{}
	w := newMsgWriter[wire.ServerType](dst)
	if w.out != nil {
		t.Fatal("a new writer holds a buffer")
	}
	for range 10 {
		if err := w.raw(wire.ServerDataRow, []byte("row")); err != nil {
			t.Fatal(err)
		}
	}
	if dst.writes != 0 {
		t.Fatalf("%d writes before the flush", dst.writes)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if dst.writes != 1 || dst.Len() != 10*8 {
		t.Fatalf("%d writes of %d bytes after the flush, want 1 of 80", dst.writes, dst.Len())
	}
	if w.out != nil {
		t.Fatal("a flushed writer still holds its buffer")
	}
}

// A message larger than the buffer goes out on its own, after what was
// buffered before it and in order.
func TestMsgWriterWritesLargeMessagesInOrder(t *testing.T) {
	dst := &countingWriter{}
	w := newMsgWriter[wire.ServerType](dst)
	big := bytes.Repeat([]byte("x"), 3*writeBufSize)
	w.raw(wire.ServerDataRow, []byte("a"))
	w.raw(wire.ServerDataRow, big)
	w.raw(wire.ServerDataRow, []byte("b"))
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, body := range [][]byte{[]byte("a"), big, []byte("b")} {
		want.WriteByte(byte(wire.ServerDataRow))
		want.Write([]byte{0, 0, 0, 0})
		b := want.Bytes()
		n := len(body) + 4
		b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		want.Write(body)
	}
	if !bytes.Equal(dst.Bytes(), want.Bytes()) {
		t.Fatal("bytes out of order or lost")
	}
	// What was buffered, the large one, then the rest at the flush.
	if dst.writes != 3 {
		t.Fatalf("%d writes for three messages, want 3", dst.writes)
	}
}

// A write error sticks, as with bufio.Writer; after end, writes are
// discarded.
func TestMsgWriterErrorSticksAndEndDiscards(t *testing.T) {
	dst := &countingWriter{err: errors.New("broken pipe")}
	w := newMsgWriter[wire.ServerType](dst)
	w.raw(wire.ServerDataRow, []byte("a"))
	if err := w.flush(); err == nil {
		t.Fatal("flush to a broken peer: no error")
	}
	dst.err = nil
	if err := w.raw(wire.ServerDataRow, []byte("b")); err == nil {
		t.Fatal("the error did not stick")
	}
	w.end()
	if err := w.raw(wire.ServerDataRow, []byte("c")); err != nil {
		t.Fatalf("write after end: %v", err)
	}
	w.flush()
	if dst.Len() != 0 {
		t.Fatalf("%d bytes reached the peer after end", dst.Len())
	}
}
