package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// readBufSize is the size of the read buffers msgReaders borrow: one
// read can take in a whole pipeline or many result rows.
const readBufSize = 32 * 1024

// readBufs are the msgReaders' buffers. A reader borrows one when bytes
// arrive and gives it back once it has framed them all and would wait for
// more, so that a session blocked on an idle peer holds none.
var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

// msgReader frames PostgreSQL protocol messages of type T (wire.ClientType
// from the client, wire.ServerType from the server). Decoding the bodies is
// left to pgproto3's message types; framing ourselves lets the proxy
// forward the messages it does not need to change as raw bytes.
type msgReader[T msgType] struct {
	src io.Reader
	// raw is src's socket when src is one (not TLS): reads wait for it to
	// be readable before borrowing a buffer.
	raw  syscall.RawConn
	lent *[]byte // the borrowed buffer; nil when none is
	r, w int     // the unread bytes are (*lent)[r:w]
	max  int     // largest body accepted
	err  error   // a read error, reported once the bytes before it are used
	// call and readFn (readSocket, bound once) are a socket read's.
	call   rawCall
	readFn func(fd uintptr) bool
	bytes  prometheus.Counter // bytes read, by direction
}

func newMsgReader[T msgType](src io.Reader, maxBody int) *msgReader[T] {
	m := &msgReader[T]{src: src, max: maxBody, bytes: trafficCounter[T](true)}
	if sc, ok := src.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			m.raw = raw
			m.readFn = m.readSocket
		}
	}
	return m
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
	if err := m.need(5); err != nil {
		return 0, nil, err
	}
	hdr := (*m.lent)[m.r : m.r+5]
	typ := T(hdr[0])
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, nil, &malformedError{fmt.Sprintf("invalid message length %d for message type %q", n, hdr[0])}
	}
	n -= 4
	if n > m.max {
		return 0, nil, &tooLargeError{size: n, max: m.max}
	}
	m.r += 5
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
	left := 5 + tl.size
	for {
		k := min(left, m.w-m.r)
		m.r += k
		if left -= k; left == 0 {
			return nil
		}
		if err := m.fill(); err != nil {
			return unexpectedEOF(err)
		}
	}
}

// startup reads an untyped startup-phase packet (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest) and returns its body.
func (m *msgReader[T]) startup() ([]byte, error) {
	if err := m.need(4); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32((*m.lent)[m.r:]))) - 4
	// PostgreSQL's own bounds for a startup packet.
	if n < 4 || n > 10000 {
		return nil, &malformedError{fmt.Sprintf("invalid startup packet length %d", n+4)}
	}
	m.r += 4
	return m.body(n)
}

// body returns the next n bytes: in the borrowed buffer when they fit,
// else in a buffer of their own (which the collector takes back once the
// message is handled, so one huge message does not stay with the session).
func (m *msgReader[T]) body(n int) ([]byte, error) {
	if n <= readBufSize {
		if err := m.need(n); err != nil {
			return nil, unexpectedEOF(err)
		}
		b := (*m.lent)[m.r : m.r+n : m.r+n]
		m.r += n
		return b, nil
	}
	b := make([]byte, n)
	k := copy(b, (*m.lent)[m.r:m.w])
	m.r += k
	for k < n {
		if m.err != nil {
			return nil, unexpectedEOF(m.err)
		}
		got, err := m.read(b[k:])
		k += got
		m.err = err
	}
	return b, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// need makes sure n ≤ readBufSize unread bytes are in the buffer.
func (m *msgReader[T]) need(n int) error {
	for m.w-m.r < n {
		if err := m.fill(); err != nil {
			return err
		}
	}
	return nil
}

// fill reads more bytes after the unread ones.
func (m *msgReader[T]) fill() error {
	if m.lent != nil && m.r > 0 {
		// Move the start of a message to the front, making room for
		// the rest of it.
		m.w = copy(*m.lent, (*m.lent)[m.r:m.w])
		m.r = 0
	}
	if m.err != nil {
		return m.err
	}
	n, err := m.read(nil)
	m.w += n
	if err != nil {
		m.err = err
		if n == 0 {
			return err
		}
	}
	return nil
}

// read reads into dst, or, when dst is nil, into the borrowed buffer after
// its unread bytes (borrowing one first if none is). An empty buffer goes
// back to the pool while the reader waits.
func (m *msgReader[T]) read(dst []byte) (int, error) {
	n, err := m.readOnce(dst)
	if n > 0 {
		m.bytes.Add(float64(n))
	}
	return n, err
}

func (m *msgReader[T]) readOnce(dst []byte) (int, error) {
	if m.raw == nil {
		if dst == nil {
			m.borrow()
			dst = (*m.lent)[m.w:]
		}
		return m.src.Read(dst)
	}
	m.call.p = dst
	err := m.raw.Read(m.readFn)
	n, errno := m.call.n, m.call.errno
	m.call = rawCall{}
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readSocket is the reader's RawConn callback: it reads into call.p, or
// when that is nil into a buffer it borrows now that bytes may be there.
func (m *msgReader[T]) readSocket(fd uintptr) bool {
	into := m.call.p
	if into == nil {
		m.borrow()
		into = (*m.lent)[m.w:]
	}
	m.call.n, m.call.errno = rawRead(fd, into)
	if m.call.errno == syscall.EAGAIN {
		m.returnIfEmpty()
		return false // the poller waits for the socket to be readable
	}
	return true
}

// rawCall is a socket read or write in progress through a RawConn
// callback. It lives in the reader or writer, and the callback is bound
// once, so that a call allocates nothing.
type rawCall struct {
	p     []byte
	n     int
	errno syscall.Errno
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without the runtime's system-call bookkeeping. They return at once
// (EAGAIN when they would block), so the scheduler need not be told: told,
// it hands the thread's processor to another thread whenever a call
// outlasts a sysmon tick, which a loopback write often does, and at tens
// of thousands of calls a second those hand-offs (futex wakes, sysmon at
// its fastest tick) cost more than the calls.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	return rawIO(syscall.SYS_READ, fd, p)
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	return rawIO(syscall.SYS_WRITE, fd, p)
}

func rawIO(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			if errno != 0 {
				return 0, errno
			}
			return int(n), 0
		}
	}
}

func (m *msgReader[T]) borrow() {
	if m.lent == nil {
		m.lent = readBufs.Get().(*[]byte)
		m.r, m.w = 0, 0
	}
}

// returnIfEmpty gives the buffer back when it holds nothing unread.
func (m *msgReader[T]) returnIfEmpty() {
	if m.lent != nil && m.r == m.w {
		readBufs.Put(m.lent)
		m.lent = nil
		m.r, m.w = 0, 0
	}
}

// buffered reports whether more input is already waiting, so writers can
// delay flushing until a burst (a pipeline, a result set) is done.
func (m *msgReader[T]) buffered() bool { return m.r < m.w }

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
	mu   sync.Mutex
	dst  io.Writer
	sock syscall.RawConn // dst's socket when dst is one (not TLS)
	// call and writeFn (writeSocket, bound once) are a socket write's.
	call    rawCall
	writeFn func(fd uintptr) bool
	out     *[]byte // what is buffered, in a lent buffer; nil when nothing is
	buf     []byte  // encoding scratch
	err     error
	bytes   prometheus.Counter // bytes written, by direction
}

func newMsgWriter[T msgType](w io.Writer) *msgWriter[T] {
	m := &msgWriter[T]{dst: w, bytes: trafficCounter[T](false)}
	if sc, ok := w.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			m.sock = raw
			m.writeFn = m.writeSocket
		}
	}
	return m
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
	if m.sock != nil {
		m.err = m.writeRaw(p)
	} else {
		n, err := m.dst.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		m.err = err
	}
	if m.err == nil {
		m.bytes.Add(float64(len(p)))
	}
	return m.err
}

// trafficCounter is the bytes counter of a reader (read) or writer of
// messages of type T: client messages are read from clients and written to
// the server, server messages the other way.
func trafficCounter[T msgType](read bool) prometheus.Counter {
	_, client := any(*new(T)).(wire.ClientType)
	dir := map[[2]bool]string{
		{true, true}: metrics.FromClient, {true, false}: metrics.FromServer,
		{false, true}: metrics.ToServer, {false, false}: metrics.ToClient,
	}[[2]bool{read, client}]
	return metrics.Bytes.WithLabelValues(dir)
}

// writeRaw writes all of p to the socket, waiting for room when it is
// full.
func (m *msgWriter[T]) writeRaw(p []byte) error {
	defer func() { m.call = rawCall{} }()
	for len(p) > 0 {
		m.call.p = p
		if err := m.sock.Write(m.writeFn); err != nil {
			return err
		}
		if m.call.errno != 0 {
			return os.NewSyscallError("write", m.call.errno)
		}
		p = p[m.call.n:]
	}
	return nil
}

// writeSocket is the writer's RawConn callback.
func (m *msgWriter[T]) writeSocket(fd uintptr) bool {
	m.call.n, m.call.errno = rawWrite(fd, m.call.p)
	return m.call.errno != syscall.EAGAIN
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
	m.dst, m.sock, m.err = io.Discard, nil, nil
	return err
}

// rawMessage writes an already framed message.
func (m *msgWriter[T]) rawMessage(msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.write(msg)
}
