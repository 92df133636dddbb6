package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

// Logger writes records to one output from one goroutine, so that a
// statement pays for a channel send, not for encoding and I/O. A nil
// *Logger is the audit trail turned off: every method does nothing.
type Logger struct {
	out   io.Writer
	drop  bool // audit.on_full: drop
	queue chan *Record
	done  chan struct{} // closed when run has written the last record

	// mu makes closing the queue wait for the Writes sending on it:
	// Write holds it shared, Close exclusively.
	mu     sync.RWMutex
	closed bool

	closeOnce sync.Once
	closeErr  error

	errs errorLog
}

// OpenWriter returns a Logger that writes to w, for tests and for callers
// that own their output; cfg.Output is ignored. Close closes w if it is an
// io.Closer. Each record is one Write of one line.
func OpenWriter(w io.Writer, cfg policy.Audit, log *slog.Logger) *Logger {
	if log == nil {
		log = slog.Default()
	}
	buffer := cfg.Buffer
	if buffer <= 0 {
		buffer = policy.Defaults().Audit.Buffer
	}
	l := &Logger{
		out:   w,
		drop:  cfg.OnFull == policy.AuditDrop,
		queue: make(chan *Record, buffer),
		done:  make(chan struct{}),
		errs:  errorLog{log: log, every: errorLogInterval},
	}
	go l.run()
	return l
}

// Enabled reports whether records are being written.
func (l *Logger) Enabled() bool { return l != nil }

// Write queues r to be written; it takes r over, and stamps its Time if
// zero. When the buffer is full it waits for room (on_full: block) or drops
// r and counts it (on_full: drop). After Close it does nothing.
func (l *Logger) Write(r *Record) { l.WriteUnless(r, nil) }

// WriteUnless is Write, except that on_full: block waits for room only
// until stop is closed, and then drops r and counts it: a session the
// proxy is ending (a drain's deadline) must not wait for an output that
// hangs, or the drain never ends. A nil stop waits as Write does.
func (l *Logger) WriteUnless(r *Record, stop <-chan struct{}) {
	if l == nil || r == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	if !l.drop {
		select {
		case l.queue <- r:
		case <-stop:
			metrics.AuditDropped.Inc()
		}
		return
	}
	select {
	case l.queue <- r:
	default:
		metrics.AuditDropped.Inc()
	}
}

// Close stops accepting records, writes those queued, and closes the
// output. Later calls return the first call's result.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		<-l.done
		if c, ok := l.out.(io.Closer); ok {
			l.closeErr = c.Close()
		}
	})
	return l.closeErr
}

// run writes queued records until Close closes the queue. An output that
// fails costs its records, not the process: the error is counted and
// logged, and the next record is tried.
func (l *Logger) run() {
	defer close(l.done)
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false) // the trail is read by people and log tools, not browsers
	for r := range l.queue {
		line.Reset()
		err := enc.Encode(normalize(r))
		if err == nil {
			_, err = l.out.Write(line.Bytes())
		}
		if err != nil {
			metrics.AuditErrors.Inc()
			l.errs.report(err)
			continue
		}
		metrics.AuditRecords.Inc()
	}
}

// normalize gives every line the same shape: the time in UTC, and columns
// as a list even when there are none.
func normalize(r *Record) *Record {
	r.Time = r.Time.UTC()
	if r.Columns == nil {
		r.Columns = []Column{}
	}
	return r
}

// errorLogInterval is the least time between two logged write errors: a
// dead output fails every record, and the log must stay readable.
const errorLogInterval = 10 * time.Second

// errorLog logs write errors at most once an interval, with the number of
// those not logged since. It never logs a record: only run uses it.
type errorLog struct {
	log        *slog.Logger
	every      time.Duration
	last       time.Time
	suppressed int
}

func (e *errorLog) report(err error) {
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.suppressed++
		return
	}
	e.log.Error("audit: a record could not be written", "error", err, "errors_not_logged", e.suppressed)
	e.last, e.suppressed = now, 0
}
