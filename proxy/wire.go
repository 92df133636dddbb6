package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// msgReader frames PostgreSQL protocol messages of type T (wire.ClientType
// from the client, wire.ServerType from the server). Decoding the bodies is
// left to pgproto3's message types; framing ourselves lets the proxy
// forward the messages it does not need to change as raw bytes.
type msgReader[T msgType] struct {
	r   *bufio.Reader
	max int // largest body accepted
	buf []byte
}

func newMsgReader[T msgType](r io.Reader, maxBody int) *msgReader[T] {
	return &msgReader[T]{r: bufio.NewReaderSize(r, 32*1024), max: maxBody}
}

// tooLargeError reports a message over the size limit.
type tooLargeError struct {
	size, max int
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes", e.size, e.max)
}

// malformedError reports bytes that are not a protocol message.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

// next reads one message: its type byte and its body, which stays valid only
// until the next call.
func (m *msgReader[T]) next() (T, []byte, error) {
	hdr, err := m.r.Peek(5)
	if err != nil {
		return 0, nil, err
	}
	typ := T(hdr[0])
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, nil, &malformedError{fmt.Sprintf("invalid message length %d for message type %q", n, hdr[0])}
	}
	n -= 4
	if n > m.max {
		return 0, nil, &tooLargeError{size: n, max: m.max}
	}
	if _, err := m.r.Discard(5); err != nil {
		return 0, nil, err
	}
	body, err := m.body(n)
	if err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// discard skips the message next refused as too large, so that an error
// sent in its place is read by a client still writing it (instead of a
// reset connection), as PostgreSQL does. Larger than limit, it is not
// read, and the caller closes the connection.
func (m *msgReader[T]) discard(tl *tooLargeError, limit int) error {
	if tl.size > limit {
		return tl
	}
	_, err := m.r.Discard(5 + tl.size)
	return err
}

// startup reads an untyped startup-phase packet (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest) and returns its body.
func (m *msgReader[T]) startup() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	// PostgreSQL's own bounds for a startup packet.
	if n < 4 || n > 10000 {
		return nil, &malformedError{fmt.Sprintf("invalid startup packet length %d", n+4)}
	}
	return m.body(n)
}

func (m *msgReader[T]) body(n int) ([]byte, error) {
	if cap(m.buf) < n {
		m.buf = make([]byte, n)
	}
	// Shrink buffers that one huge message grew, so idle sessions stay small.
	if cap(m.buf) > 1<<20 && n < 64*1024 {
		m.buf = make([]byte, n, 64*1024)
	}
	b := m.buf[:n]
	if _, err := io.ReadFull(m.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// buffered reports whether more input is already waiting, so writers can
// delay flushing until a burst (a pipeline, a result set) is done.
func (m *msgReader[T]) buffered() bool { return m.r.Buffered() > 0 }

// writeBufSize is the most a msgWriter buffers before it writes out.
const writeBufSize = 32 * 1024

// writeBufs are the msgWriters' buffers, lent from a writer's first write
// to its next flush, so that an idle session holds none.
var writeBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufSize)
	return &b
}}

// msgWriter buffers messages of type T to one peer (wire.ServerType to the
// client, wire.ClientType to the server) until a flush. Both session
// goroutines may write to the upstream side, so writes are serialized. As
// with bufio.Writer, a write error sticks.
type msgWriter[T msgType] struct {
	mu  sync.Mutex
	dst io.Writer
	out *[]byte // what is buffered, in a lent buffer; nil when nothing is
	buf []byte  // encoding scratch
	err error
}

func newMsgWriter[T msgType](w io.Writer) *msgWriter[T] {
	return &msgWriter[T]{dst: w}
}

// write buffers p, writing out first what no longer fits; p itself goes
// straight out when it would fill a buffer on its own.
func (m *msgWriter[T]) write(p []byte) error {
	if m.err != nil {
		return m.err
	}
	if m.out != nil && len(*m.out)+len(p) > writeBufSize {
		if err := m.writeOut(); err != nil {
			return err
		}
	}
	if len(p) >= writeBufSize {
		return m.writeDirect(p)
	}
	if m.out == nil {
		m.out = writeBufs.Get().(*[]byte)
	}
	*m.out = append(*m.out, p...)
	return nil
}

// writeOut writes what is buffered and gives the buffer back.
func (m *msgWriter[T]) writeOut() error {
	if m.out == nil {
		return m.err
	}
	b := m.out
	m.out = nil
	err := m.writeDirect(*b)
	*b = (*b)[:0]
	writeBufs.Put(b)
	return err
}

func (m *msgWriter[T]) writeDirect(p []byte) error {
	if m.err != nil {
		return m.err
	}
	n, err := m.dst.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	m.err = err
	return err
}

// raw writes a framed message from its parts.
func (m *msgWriter[T]) raw(typ T, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rawLocked(typ, body)
}

func (m *msgWriter[T]) rawLocked(typ T, body []byte) error {
	var hdr [5]byte
	hdr[0] = byte(typ)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)+4))
	if err := m.write(hdr[:]); err != nil {
		return err
	}
	return m.write(body)
}

// encoder is any pgproto3 message.
type encoder interface {
	Encode(dst []byte) ([]byte, error)
}

// send encodes and writes messages.
func (m *msgWriter[T]) send(msgs ...encoder) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sendLocked(msgs...)
}

func (m *msgWriter[T]) sendLocked(msgs ...encoder) error {
	for _, msg := range msgs {
		var err error
		m.buf, err = msg.Encode(m.buf[:0])
		if err != nil {
			return err
		}
		if err := m.write(m.buf); err != nil {
			return err
		}
	}
	if cap(m.buf) > 1<<20 {
		m.buf = nil
	}
	return nil
}

func (m *msgWriter[T]) flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writeOut()
}

// flushLocked flushes for a caller that holds the writer's lock.
func (m *msgWriter[T]) flushLocked() error { return m.writeOut() }

// end flushes what is buffered and discards whatever is written after:
// nothing may follow a FATAL error.
func (m *msgWriter[T]) end() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.writeOut()
	m.dst, m.err = io.Discard, nil
	return err
}

// rawMessage writes an already framed message.
func (m *msgWriter[T]) rawMessage(msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.write(msg)
}
