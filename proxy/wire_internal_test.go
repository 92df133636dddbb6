package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/iotest"
	"time"

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

// frame is a protocol message of type typ.
func frame(typ byte, body []byte) []byte {
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
	return append(out, body...)
}

// tcpPair is a connected loopback TCP pair: what the proxy reads from.
func tcpPair(t *testing.T) (reader, writer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	writer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	reader = <-accepted
	if reader == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { reader.Close(); writer.Close() })
	return reader, writer
}

// readerMessages are messages around the read buffer's size, so that
// headers and bodies straddle reads and the buffer's end.
func readerMessages() [][]byte {
	var msgs [][]byte
	for i, n := range []int{0, 1, 4, 100, readBufSize - 5, readBufSize, readBufSize + 1, 3*readBufSize + 7, 2, 70000} {
		msgs = append(msgs, frame('D', bytes.Repeat([]byte{byte('a' + i)}, n)))
	}
	return msgs
}

// expectMessages reads msgs back from m, in order and intact.
func expectMessages(t *testing.T, m *msgReader[wire.ServerType], msgs [][]byte) {
	t.Helper()
	for i, want := range msgs {
		typ, body, err := m.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if byte(typ) != want[0] || !bytes.Equal(body, want[5:]) {
			t.Fatalf("message %d: got type %q and %d bytes, want %q and %d", i, byte(typ), len(body), want[0], len(want)-5)
		}
	}
}

// Every message comes out whole however the bytes arrive: in one burst,
// one byte at a time, through a socket or another reader (TLS).
func TestMsgReaderFramesMessagesHoweverTheyArrive(t *testing.T) {
	msgs := readerMessages()
	all := bytes.Join(msgs, nil)
	t.Run("socket, one burst", func(t *testing.T) {
		r, w := tcpPair(t)
		go w.Write(all)
		expectMessages(t, newMsgReader[wire.ServerType](r, 1<<20), msgs)
	})
	t.Run("socket, small pieces", func(t *testing.T) {
		r, w := tcpPair(t)
		go func() {
			for p := all; len(p) > 0; {
				n := min(len(p), 3001)
				w.Write(p[:n])
				p = p[n:]
				time.Sleep(time.Millisecond / 10)
			}
		}()
		expectMessages(t, newMsgReader[wire.ServerType](r, 1<<20), msgs)
	})
	t.Run("other reader, one byte at a time", func(t *testing.T) {
		expectMessages(t, newMsgReader[wire.ServerType](iotest.OneByteReader(bytes.NewReader(all)), 1<<20), msgs)
	})
	t.Run("other reader, data with EOF", func(t *testing.T) {
		m := newMsgReader[wire.ServerType](iotest.DataErrReader(bytes.NewReader(all)), 1<<20)
		expectMessages(t, m, msgs)
		if _, _, err := m.next(); err != io.EOF {
			t.Fatalf("after the last message: %v, want EOF", err)
		}
	})
}

// A message cut short by the peer closing is an unexpected EOF; nothing
// at all is a plain EOF (the peer left between messages).
func TestMsgReaderReportsTruncatedMessages(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing", nil, io.EOF},
		{"half a header", []byte{'D', 0, 0}, io.EOF},
		{"half a body", frame('D', []byte("abcdef"))[:8], io.ErrUnexpectedEOF},
		{"half a large body", frame('D', make([]byte, 2*readBufSize))[:readBufSize+100], io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, w := tcpPair(t)
			w.Write(c.in)
			w.Close()
			_, _, err := newMsgReader[wire.ServerType](r, 1<<20).next()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// A reader waiting on an idle socket has given its buffer back, and so
// has one whose deadline passed while it waited; after the wait it reads
// on as before.
func TestMsgReaderHoldsNoBufferWhileWaiting(t *testing.T) {
	r, w := tcpPair(t)
	m := newMsgReader[wire.ServerType](r, 1<<20)
	w.Write(frame('Z', []byte("I")))
	if _, _, err := m.next(); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := m.next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v", err)
	}
	if m.lent != nil {
		t.Fatal("the reader held its buffer while waiting for the peer")
	}
	r.SetReadDeadline(time.Time{})
	m.err = nil // a deadline error sticks, as in the sessions (which end)
	msgs := readerMessages()
	go w.Write(bytes.Join(msgs, nil))
	expectMessages(t, m, msgs)
}

// An oversized message is refused before its body is read, and discard
// skips exactly it.
func TestMsgReaderDiscardsTheOversizedMessage(t *testing.T) {
	in := append(frame('Q', make([]byte, 50000)), frame('S', nil)...)
	m := newMsgReader[wire.ServerType](iotest.HalfReader(bytes.NewReader(in)), 1000)
	_, _, err := m.next()
	var tl *tooLargeError
	if !errors.As(err, &tl) || tl.size != 50000 {
		t.Fatalf("got %v, want the message refused as too large", err)
	}
	if err := m.discard(tl, 100000); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := m.next(); err != nil || byte(typ) != 'S' || len(body) != 0 {
		t.Fatalf("after the discarded message: %q %q %v", byte(typ), body, err)
	}
}
