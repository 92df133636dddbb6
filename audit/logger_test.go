package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

// The tests below read the package's global counters before and after, so
// none of them runs in parallel.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// lines is an output that keeps what it is given, one Write a line.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, string(p))
	return len(p), nil
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// stalled is an output whose writes wait until resume, so that a test can
// hold the writer goroutine inside a write while the buffer fills.
type stalled struct {
	lines
	release chan struct{}
	once    sync.Once
}

func newStalled() *stalled { return &stalled{release: make(chan struct{})} }

func (s *stalled) Write(p []byte) (int, error) {
	<-s.release
	return s.lines.Write(p)
}

func (s *stalled) resume() { s.once.Do(func() { close(s.release) }) }

// openStalled opens a Logger on a stalled output. A test that fails while
// the output stalls still ends its goroutines, as synctest requires.
func openStalled(t *testing.T, cfg policy.Audit) (*Logger, *stalled) {
	out := newStalled()
	l := OpenWriter(out, cfg, quiet)
	t.Cleanup(func() {
		out.resume()
		l.Close()
	})
	return l, out
}

func record(session uint64) *Record {
	return &Record{
		Time:      time.Date(2026, 12, 5, 17, 6, 16, 123456789, time.UTC),
		Session:   session,
		User:      "alice",
		Role:      "billing",
		Client:    "10.0.0.7:51234",
		Database:  "clinic",
		Statement: "SELECT ssn FROM patients WHERE ssn = $1",
		Kind:      KindSelect,
		Columns:   []Column{{Table: "public.patients", Column: "ssn", Key: "ssn", Action: Decrypted, Rows: 1}},
		Outcome:   OutcomeOK,
	}
}

// sessions decodes lines and returns their session ids, in order.
func sessions(t *testing.T, lines []string) []uint64 {
	t.Helper()
	var ids []uint64
	for _, l := range lines {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ids = append(ids, r.Session)
	}
	return ids
}

func count(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func TestRecordIsOneJSONLineWithSnakeCaseFields(t *testing.T) {
	out := &lines{}
	l := OpenWriter(out, policy.Audit{}, quiet)
	in := record(7)
	in.Time = time.Date(2026, 12, 5, 18, 6, 16, 5, time.FixedZone("CET", 3600))
	in.Application = "psql"
	in.Columns = append(in.Columns, Column{Table: "public.patients", Column: "diagnosis", Key: "clinical", Action: Denied, Rows: 3})
	in.Outcome, in.SQLState, in.Reason = OutcomeRefused, "42501", "no write grant on key clinical"
	l.Write(in)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.all()
	if len(got) != 1 || !strings.HasSuffix(got[0], "}\n") || strings.Count(got[0], "\n") != 1 {
		t.Fatalf("want one line ending in a newline, got %q", got)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(got[0]), &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"time", "session", "user", "role", "client", "database", "application",
		"statement", "kind", "columns", "outcome", "sqlstate", "reason"}
	for _, f := range want {
		if _, ok := fields[f]; !ok {
			t.Errorf("field %q missing from %s", f, got[0])
		}
	}
	if len(fields) != len(want) {
		t.Errorf("fields %v, want exactly %v", fields, want)
	}
	if ts := fields["time"]; ts != "2026-12-05T17:06:16.000000005Z" {
		t.Errorf("time = %v, want RFC 3339 in UTC with nanoseconds", ts)
	}
	column := fields["columns"].([]any)[1].(map[string]any)
	for f, v := range map[string]any{"table": "public.patients", "column": "diagnosis", "key": "clinical", "action": "denied", "rows": 3.0} {
		if column[f] != v {
			t.Errorf("column field %q = %v, want %v", f, column[f], v)
		}
	}
	var back Record
	if err := json.Unmarshal([]byte(got[0]), &back); err != nil {
		t.Fatal(err)
	}
	in.Time = in.Time.UTC()
	if !reflect.DeepEqual(&back, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, *in)
	}
}

func TestOptionalFieldsAreLeftOutAndColumnsAreAlwaysAList(t *testing.T) {
	out := &lines{}
	l := OpenWriter(out, policy.Audit{}, quiet)
	r := record(1)
	r.Columns = nil
	r.Statement = Fingerprint("SELECT 'unterminated")
	l.Write(r)
	l.Close()
	line := out.all()[0]
	for _, f := range []string{`"application"`, `"sqlstate"`, `"reason"`} {
		if strings.Contains(line, f) {
			t.Errorf("empty %s written: %s", f, line)
		}
	}
	if !strings.Contains(line, `"columns":[]`) {
		t.Errorf("no columns should be an empty list: %s", line)
	}
	if !strings.Contains(line, `"<unparsable statement, 20 bytes>"`) {
		t.Errorf("placeholder HTML-escaped or missing: %s", line)
	}
}

func TestWriteStampsTheTimeWhenZero(t *testing.T) {
	out := &lines{}
	l := OpenWriter(out, policy.Audit{}, quiet)
	before := time.Now()
	r := record(1)
	r.Time = time.Time{}
	l.Write(r)
	l.Close()
	var back Record
	if err := json.Unmarshal([]byte(out.all()[0]), &back); err != nil {
		t.Fatal(err)
	}
	if back.Time.Before(before.Add(-time.Second)) || back.Time.Location() != time.UTC {
		t.Errorf("time = %v, want about %v in UTC", back.Time, before)
	}
}

func TestBlockModeWaitsForRoomWhenTheBufferIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := openStalled(t, policy.Audit{Buffer: 2, OnFull: policy.AuditBlock})
		// The writer takes record 0 and stalls writing it; 1 and 2 fill
		// the buffer.
		for i := range uint64(3) {
			l.Write(record(i))
		}
		written := make(chan struct{})
		go func() {
			l.Write(record(3))
			close(written)
		}()
		synctest.Wait()
		select {
		case <-written:
			t.Fatal("Write returned with the buffer full")
		default:
		}
		out.resume()
		<-written
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := sessions(t, out.all()); !reflect.DeepEqual(got, []uint64{0, 1, 2, 3}) {
			t.Errorf("written %v, want 0 1 2 3", got)
		}
	})
}

func TestDropModeDropsAndCountsWhatDoesNotFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dropped, written := count(metrics.AuditDropped), count(metrics.AuditRecords)
		l, out := openStalled(t, policy.Audit{Buffer: 2, OnFull: policy.AuditDrop})
		l.Write(record(0))
		synctest.Wait() // the writer has taken record 0 and stalls
		for i := range uint64(7) {
			l.Write(record(1 + i)) // 1 and 2 fit; 3 to 7 do not
		}
		if got := count(metrics.AuditDropped) - dropped; got != 5 {
			t.Errorf("dropped %v records, want 5", got)
		}
		out.resume()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := sessions(t, out.all()); !reflect.DeepEqual(got, []uint64{0, 1, 2}) {
			t.Errorf("written %v, want 0 1 2", got)
		}
		if got := count(metrics.AuditRecords) - written; got != 3 {
			t.Errorf("audit_records_total rose by %v, want 3", got)
		}
	})
}

func TestCloseWritesEverythingQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := openStalled(t, policy.Audit{Buffer: 100})
		var want []uint64
		for i := range uint64(50) {
			l.Write(record(i))
			want = append(want, i)
		}
		closed := make(chan error)
		go func() { closed <- l.Close() }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned before the queued records were written")
		default:
		}
		out.resume()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if got := sessions(t, out.all()); !reflect.DeepEqual(got, want) {
			t.Errorf("written %v, want %v", got, want)
		}
	})
}

// closer records that it was closed.
type closer struct {
	lines
	closed int
}

func (c *closer) Close() error { c.closed++; return errors.New("close failed") }

func TestWriteAfterCloseIsIgnored(t *testing.T) {
	out := &closer{}
	l := OpenWriter(out, policy.Audit{}, quiet)
	l.Write(record(1))
	first := l.Close()
	l.Write(record(2))
	if second := l.Close(); first == nil || second != first {
		t.Errorf("Close = %v then %v, want the output's error both times", first, second)
	}
	if out.closed != 1 {
		t.Errorf("output closed %d times, want 1", out.closed)
	}
	if got := sessions(t, out.all()); !reflect.DeepEqual(got, []uint64{1}) {
		t.Errorf("written %v, want only 1", got)
	}
}

func TestNilLoggerIsAuditOff(t *testing.T) {
	l, err := Open(policy.Audit{Output: ""}, quiet)
	if err != nil || l != nil {
		t.Fatalf("Open with no output = %v, %v; want nil, nil", l, err)
	}
	if l.Enabled() {
		t.Error("a nil Logger says it is enabled")
	}
	l.Write(record(1))
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}

// failing fails its first n writes.
type failing struct {
	lines
	n int
}

func (f *failing) Write(p []byte) (int, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return 0, errors.New("disk full")
	}
	return f.lines.Write(p)
}

func TestAFailingOutputCountsErrorsAndKeepsWriting(t *testing.T) {
	errs, written := count(metrics.AuditErrors), count(metrics.AuditRecords)
	var log bytes.Buffer
	out := &failing{n: 3}
	l := OpenWriter(out, policy.Audit{}, slog.New(slog.NewTextHandler(&log, nil)))
	for i := range uint64(5) {
		l.Write(record(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := count(metrics.AuditErrors) - errs; got != 3 {
		t.Errorf("audit_write_errors_total rose by %v, want 3", got)
	}
	if got := count(metrics.AuditRecords) - written; got != 2 {
		t.Errorf("audit_records_total rose by %v, want 2", got)
	}
	if got := sessions(t, out.all()); !reflect.DeepEqual(got, []uint64{3, 4}) {
		t.Errorf("written %v, want 3 4", got)
	}
	// Three failures within 10 s are logged once, without the record.
	if n := strings.Count(log.String(), "disk full"); n != 1 {
		t.Errorf("error logged %d times, want once:\n%s", n, log.String())
	}
	for _, s := range []string{"alice", "patients", "10.0.0.7"} {
		if strings.Contains(log.String(), s) {
			t.Errorf("the error log holds the record's %q:\n%s", s, log.String())
		}
	}
}

func TestErrorLogIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log bytes.Buffer
		e := errorLog{log: slog.New(slog.NewTextHandler(&log, nil)), every: errorLogInterval}
		for range 3 {
			e.report(errors.New("boom"))
		}
		time.Sleep(errorLogInterval) // the bubble's clock: no real wait
		e.report(errors.New("boom"))
		got := log.String()
		if n := strings.Count(got, "boom"); n != 2 {
			t.Fatalf("logged %d times, want 2:\n%s", n, got)
		}
		if !strings.Contains(got, "errors_not_logged=2") {
			t.Errorf("the second message does not count the 2 not logged:\n%s", got)
		}
	})
}

func TestFileRotatesAtMaxSizeWithoutSplittingLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(policy.Audit{Output: path, MaxSizeMB: 1, MaxBackups: 3}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("Open did not create the file 0600: %v %v", info, err)
	}
	const n = 1500 // about 1.5 MB of ~1 KB lines
	for i := range uint64(n) {
		r := record(i)
		r.Statement = "SELECT " + strings.Repeat("padding_column, ", 60) + "ssn FROM patients"
		l.Write(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("files %v: want audit.log and a rotated backup", files)
	}
	seen := map[uint64]bool{}
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 || info.Size() > 1<<20 {
			t.Errorf("%s: mode %v, size %d; want 0600 and at most 1 MB", f, info.Mode().Perm(), info.Size())
		}
		for _, id := range sessions(t, readLines(t, f)) {
			seen[id] = true
		}
	}
	if len(seen) != n {
		t.Errorf("found %d distinct records across %v, want %d", len(seen), files, n)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenFailsOnAFileThatCannotBeCreated(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(policy.Audit{Output: filepath.Join(notADir, "audit.log")}, quiet); err == nil {
		l.Close()
		t.Fatal("Open succeeded under a file")
	}
}

func TestRemoteSyslogOverUDPGetsOneMessageARecord(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l, err := Open(policy.Audit{Output: "syslog+udp://" + conn.LocalAddr().String()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(3) {
		l.Write(record(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	buf := make([]byte, 64<<10)
	for range 3 {
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		msg := string(buf[:n])
		// <86> is LOG_AUTHPRIV|LOG_INFO.
		if !strings.HasPrefix(msg, "<86>") || !strings.Contains(msg, " pgcloak[") {
			t.Errorf("message %q lacks the priority or the tag", msg)
		}
		json := msg[strings.IndexByte(msg, '{'):]
		ids := sessions(t, []string{json})
		got[ids[0]] = true
	}
	if len(got) != 3 {
		t.Errorf("received sessions %v, want 0 1 2", got)
	}
}

func ExampleFingerprint() {
	fmt.Println(Fingerprint("SELECT name FROM patients WHERE ssn = '123-45-6789' -- Alice\nLIMIT 10"))
	// Output: SELECT name FROM patients WHERE ssn = $1 LIMIT $2
}

func TestRemoteSyslogOverTCPGetsOneLineARecord(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []string, 1)
	go func() {
		var msgs []string
		defer func() { received <- msgs }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			msgs = append(msgs, sc.Text())
		}
	}()
	l, err := Open(policy.Audit{Output: "syslog+tcp://" + ln.Addr().String()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(3) {
		l.Write(record(i))
	}
	if err := l.Close(); err != nil { // closing the connection ends the reader
		t.Fatal(err)
	}
	var msgs []string
	select {
	case msgs = <-received:
	case <-time.After(10 * time.Second):
		t.Fatal("no messages within 10 s")
	}
	var ids []uint64
	for _, m := range msgs {
		if !strings.HasPrefix(m, "<86>") {
			t.Errorf("message %q lacks the priority", m)
		}
		ids = append(ids, sessions(t, []string{m[strings.IndexByte(m, '{'):]})...)
	}
	if !reflect.DeepEqual(ids, []uint64{0, 1, 2}) {
		t.Errorf("received %v, want 0 1 2 in order", ids)
	}
}

func TestStdoutIsWrittenAndLeftOpen(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	t.Cleanup(func() { os.Stdout = saved })
	l, err := Open(policy.Audit{Output: policy.AuditStdout}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(record(9))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("still open\n")); err != nil {
		t.Fatalf("Close closed stdout: %v", err)
	}
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != 2 || !reflect.DeepEqual(sessions(t, got[:1]), []uint64{9}) {
		t.Errorf("stdout got %q", out)
	}
}
