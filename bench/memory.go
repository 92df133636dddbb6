package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The memory workloads measure what the in-process pgcloak holds, not how
// fast it is: its peak resident set while -memory-bytes of encrypted
// values go through it (COPY FROM STDIN, SELECT, COPY TO STDOUT), and what
// each of -idle idle client connections costs. The drivers are child
// processes, so this process's memory is the proxy's plus the harness's
// small, constant share (the baseline printed beside each figure).

// memRowBytes is the size of one row's encrypted value (the note column of
// bench_mem_enc); the row count is -memory-bytes divided by it.
const memRowBytes = 1000

const (
	opMemCopyIn  = "memory copy in"
	opMemSelect  = "memory select"
	opMemCopyOut = "memory copy out"
	opIdle       = "idle connections"
)

// memoryResult is one memory workload's figures.
type memoryResult struct {
	name    string
	bytes   int64   // plaintext bytes the client moved; 0 for idle connections
	conns   int     // idle connections held; 0 otherwise
	seconds float64 // how long the client's part took
	// baselineKB and peakKB are this process's resident set before the
	// workload and its high-water mark during it.
	baselineKB, peakKB int64
	// perConnKB is the resident set each idle connection added; goPerConnKB
	// the Go runtime's share of it (heap in use and goroutine stacks).
	perConnKB, goPerConnKB float64
}

// memNote is row id's value in bench_mem_enc: memRowBytes of text.
func memNote(id int64) string {
	s := strconv.FormatInt(id, 10) + ":"
	return s + strings.Repeat("x", memRowBytes-len(s))
}

// runMemory runs the memory workloads whose names -only selects.
func runMemory(ctx context.Context, e *env) ([]memoryResult, error) {
	var out []memoryResult
	if e.o.memoryBytes > 0 {
		rows := e.o.memoryBytes / memRowBytes
		for _, op := range []string{opMemCopyIn, opMemSelect, opMemCopyOut} {
			name := fmt.Sprintf("%s, %d MiB, 1 encrypted column", op, e.o.memoryBytes>>20)
			if !strings.Contains(name, e.o.only) {
				continue
			}
			if op != opMemCopyIn {
				if err := loadMemTable(ctx, e, rows); err != nil {
					return out, err
				}
			}
			fmt.Printf("  %s…\n", name)
			r, err := peakDuring(name, func() (driveResult, error) {
				return runChild(ctx, driveSpec{Op: op, DSN: e.dsn(e.proxy), Table: "bench_mem_enc", CopyRows: int(rows)})
			})
			if err != nil {
				return out, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, r)
		}
	}
	if name := fmt.Sprintf("%s, %d", opIdle, e.o.idle); e.o.idle > 0 && strings.Contains(name, e.o.only) {
		fmt.Printf("  %s…\n", name)
		r, err := idleConnections(ctx, e, name)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// loadMemTable fills bench_mem_enc through pgcloak unless it holds rows
// rows already (the COPY FROM workload leaves them there).
func loadMemTable(ctx context.Context, e *env, rows int64) error {
	n, err := countRows(ctx, e, "bench_mem_enc")
	if err != nil || n == rows {
		return err
	}
	fmt.Printf("loading %d rows into bench_mem_enc…\n", rows)
	_, err = runChild(ctx, driveSpec{Op: opMemCopyIn, DSN: e.dsn(e.proxy), Table: "bench_mem_enc", CopyRows: int(rows)})
	return err
}

// peakDuring runs f with this process's peak resident set reset first, and
// reports the peak.
func peakDuring(name string, f func() (driveResult, error)) (memoryResult, error) {
	settle()
	base, err := statusKB("VmRSS")
	if err != nil {
		return memoryResult{}, err
	}
	if err := resetPeakRSS(); err != nil {
		return memoryResult{}, err
	}
	res, err := f()
	if err != nil {
		return memoryResult{}, err
	}
	peak, err := statusKB("VmHWM")
	if err != nil {
		return memoryResult{}, err
	}
	return memoryResult{name: name, bytes: res.Ops, seconds: res.Seconds, baselineKB: base, peakKB: peak}, nil
}

// idleConnections has a child open e.o.idle connections through pgcloak and
// hold them; the resident set they added, divided by their number, is what
// one idle connection costs.
func idleConnections(ctx context.Context, e *env, name string) (memoryResult, error) {
	settle()
	base, err := statusKB("VmRSS")
	if err != nil {
		return memoryResult{}, err
	}
	goBase := goHeldBytes()
	child, err := startIdleChild(ctx, driveSpec{Op: opIdle, DSN: e.dsn(e.proxy), Clients: e.o.idle})
	if err != nil {
		return memoryResult{}, err
	}
	defer child.stop()
	start := time.Now()
	if err := child.waitReady(); err != nil {
		return memoryResult{}, err
	}
	connected := time.Since(start).Seconds()
	time.Sleep(time.Second) // let the sessions' setup garbage become garbage
	settle()
	held, err := statusKB("VmRSS")
	if err != nil {
		return memoryResult{}, err
	}
	goHeld := goHeldBytes()
	n := float64(e.o.idle)
	return memoryResult{
		name: name, conns: e.o.idle, seconds: connected, baselineKB: base, peakKB: held,
		perConnKB:   float64(held-base) / n,
		goPerConnKB: float64(goHeld-goBase) / 1024 / n,
	}, child.finish()
}

// settle collects garbage and returns free memory to the OS, so that a
// resident-set reading shows what is held rather than what the collector
// has not yet given back.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// goHeldBytes is what the Go runtime holds for live objects and goroutine
// stacks.
func goHeldBytes() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// statusKB reads a "kB" field (VmRSS, VmHWM) of /proc/self/status.
func statusKB(field string) (int64, error) {
	v := procField("/proc/self/status", field)
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/status %s: %q", field, v)
	}
	return kb, nil
}

// resetPeakRSS sets this process's VmHWM to its current resident set
// (Linux ≥ 4.0, proc(5) clear_refs).
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// idleChild is a driver child holding idle connections until told to stop.
type idleChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startIdleChild(ctx context.Context, spec driveSpec) (*idleChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, childArg)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &idleChild{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if err := json.NewEncoder(stdin).Encode(spec); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitReady waits for the child's line saying its connections are open.
func (c *idleChild) waitReady() error {
	line, err := c.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("idle connections driver: %w", err)
	}
	if strings.TrimSpace(line) != idleReady {
		return fmt.Errorf("idle connections driver said %q", line)
	}
	return nil
}

// finish tells the child to close its connections and waits for it.
func (c *idleChild) finish() error {
	c.stdin.Close()
	io.Copy(io.Discard, c.out)
	return c.cmd.Wait()
}

func (c *idleChild) stop() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// idleReady is the line an idle-connections child prints once connected.
const idleReady = "connected"

// holdIdle (in the child) opens spec.Clients connections, says so on
// stdout, and keeps them until stdin closes.
func holdIdle(ctx context.Context, spec driveSpec, stdin io.Reader) error {
	conns := make([]*pgx.Conn, 0, spec.Clients)
	defer closeAll(conns)
	for range spec.Clients {
		c, err := pgx.Connect(ctx, spec.DSN)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(conns), err)
		}
		conns = append(conns, c)
	}
	// One round trip each, so every session is past its setup.
	for _, c := range conns {
		if err := c.Ping(ctx); err != nil {
			return err
		}
	}
	fmt.Println(idleReady)
	_, err := io.Copy(io.Discard, stdin)
	return err
}

// memCopyRows are the memory workloads' rows: "id\tnote".
func memCopyRows(n int64) *copyRows {
	return &copyRows{n: n, fields: func(id int64) []string { return []string{memNote(id)} }}
}

// memCopyIn (in the child) loads spec.CopyRows rows of memNote values.
func memCopyIn(ctx context.Context, spec driveSpec) (driveResult, error) {
	src := memCopyRows(int64(spec.CopyRows))
	rows, secs, err := timedCopyIn(ctx, spec, "(id, note)", src)
	if err == nil && rows != int64(spec.CopyRows) {
		err = fmt.Errorf("COPY FROM loaded %d rows, want %d", rows, spec.CopyRows)
	}
	return driveResult{Ops: src.valueBytes, Seconds: secs}, err
}

// memSelect (in the child) reads the whole table with one SELECT, row by
// row, checking each value.
func memSelect(ctx context.Context, spec driveSpec) (driveResult, error) {
	c, err := pgx.Connect(ctx, spec.DSN)
	if err != nil {
		return driveResult{}, err
	}
	defer c.Close(context.Background())
	start := time.Now()
	rows, err := c.Query(ctx, "SELECT id, note FROM "+spec.Table)
	if err != nil {
		return driveResult{}, err
	}
	var id int64
	var note string
	var n, bytes int64
	_, err = pgx.ForEachRow(rows, []any{&id, &note}, func() error {
		if note != memNote(id) {
			return fmt.Errorf("row %d came back as %.40q…", id, note)
		}
		n++
		bytes += int64(len(note))
		return nil
	})
	if err == nil && n != int64(spec.CopyRows) {
		err = fmt.Errorf("SELECT returned %d rows, want %d", n, spec.CopyRows)
	}
	return driveResult{Ops: bytes, Seconds: time.Since(start).Seconds()}, err
}

// memCopyOut (in the child) copies the whole table out.
func memCopyOut(ctx context.Context, spec driveSpec) (driveResult, error) {
	rows, bytes, secs, err := timedCopyOut(ctx, spec, "(id, note)")
	if err == nil && rows != int64(spec.CopyRows) {
		err = fmt.Errorf("COPY TO returned %d rows, want %d", rows, spec.CopyRows)
	}
	return driveResult{Ops: bytes, Seconds: secs}, err
}
