package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// The Go-driven workloads run in a child process (this binary started with
// childArg) so that the CPU this process uses during a pgcloak run is the
// proxy's alone.
const childArg = "-drive-child"

// driveSpec tells the child what to run; driveResult is its answer.
type driveSpec struct {
	Op       string        `json:"op"` // a name in goOps, or copyIn / copyOut
	DSN      string        `json:"dsn"`
	Table    string        `json:"table"`
	Clients  int           `json:"clients"`
	Duration time.Duration `json:"duration"`
	Rows     int           `json:"rows"`      // preloaded rows (ids 1..Rows)
	CopyRows int           `json:"copy_rows"` // rows per COPY
	NextID   int64         `json:"next_id"`   // first id an insert may use
}

type driveResult struct {
	Ops     int64         `json:"ops"`
	Seconds float64       `json:"seconds"`
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	NextID  int64         `json:"next_id"`
}

const (
	opPointRead = "point read"
	opInsert    = "insert"
	opRangeRead = "range read"
	opOrdered   = "ordered range read"
	opCopyIn    = "copy in"
	opCopyOut   = "copy out"
)

// goOp is one operation of a Go-driven workload on table.
type goOp func(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, next *atomic.Int64, rows int) error

var goOps = map[string]goOp{
	opPointRead: pointRead,
	opInsert:    insertRow,
	opRangeRead: rangeRead,
	opOrdered:   orderedRead,
}

// pointRead selects one row by deterministic equality, returning the three
// encrypted columns.
func pointRead(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, _ *atomic.Int64, rows int) error {
	var ssn, email, note string
	return c.QueryRow(ctx, "SELECT ssn, email, note FROM "+table+" WHERE ssn = $1",
		ssnFor(int64(rng.IntN(rows)+1))).Scan(&ssn, &email, &note)
}

// insertRow inserts a row with the three encrypted columns.
func insertRow(ctx context.Context, c *pgx.Conn, table string, _ *rand.Rand, next *atomic.Int64, _ int) error {
	id := next.Add(1)
	_, err := c.Exec(ctx, "INSERT INTO "+table+" (id, ssn, email, note) VALUES ($1, $2, $3, $4)",
		id, ssnFor(id), emailFor(id), noteFor(id))
	return err
}

// rangeReadRows is the width of a range read.
const rangeReadRows = 20

// rangeRead selects 20 consecutive ids, returning the three encrypted columns.
func rangeRead(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, _ *atomic.Int64, rows int) error {
	lo := rng.IntN(max(rows-rangeReadRows, 1)) + 1
	rs, err := c.Query(ctx, "SELECT ssn, email, note FROM "+table+" WHERE id >= $1 AND id < $2", lo, lo+rangeReadRows)
	if err != nil {
		return err
	}
	var ssn, email, note string
	n := 0
	_, err = pgx.ForEachRow(rs, []any{&ssn, &email, &note}, func() error { n++; return nil })
	if err == nil && n != rangeReadRows && rows >= rangeReadRows {
		err = fmt.Errorf("range read returned %d rows, want %d", n, rangeReadRows)
	}
	return err
}

// orderedRead selects the 20 rows from a random timestamp on, ordered by
// it: on bench_enc a range and an ORDER BY on an ordered column, answered
// by its index.
func orderedRead(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, _ *atomic.Int64, rows int) error {
	from := atFor(int64(rng.IntN(max(rows-rangeReadRows, 1)) + 1))
	rs, err := c.Query(ctx, "SELECT id, at FROM "+table+" WHERE at >= $1 ORDER BY at LIMIT 20", from)
	if err != nil {
		return err
	}
	var id int32
	var at, last time.Time
	n := 0
	_, err = pgx.ForEachRow(rs, []any{&id, &at}, func() error {
		if at.Before(last) || !at.Equal(atFor(int64(id))) {
			return fmt.Errorf("ordered range read: row %d at %v after %v", id, at, last)
		}
		last = at
		n++
		return nil
	})
	if err == nil && n != rangeReadRows && rows >= 2*rangeReadRows {
		err = fmt.Errorf("ordered range read returned %d rows, want %d", n, rangeReadRows)
	}
	return err
}

// runChild runs spec in a child process and waits for its answer.
func runChild(ctx context.Context, spec driveSpec) (driveResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return driveResult{}, err
	}
	in, err := json.Marshal(spec)
	if err != nil {
		return driveResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe, childArg)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return driveResult{}, fmt.Errorf("workload driver: %w", err)
	}
	var res driveResult
	return res, json.Unmarshal(out, &res)
}

// childMain is the child process: a driveSpec on stdin, a driveResult on
// stdout.
func childMain() int {
	var spec driveSpec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		fmt.Fprintln(os.Stderr, "bench driver:", err)
		return 1
	}
	ctx := context.Background()
	var res driveResult
	var err error
	switch spec.Op {
	case opCopyIn:
		res, err = copyIn(ctx, spec)
	case opCopyOut:
		res, err = copyOut(ctx, spec)
	case opMemCopyIn:
		res, err = memCopyIn(ctx, spec)
	case opMemSelect:
		res, err = memSelect(ctx, spec)
	case opMemCopyOut:
		res, err = memCopyOut(ctx, spec)
	case opIdle:
		err = holdIdle(ctx, spec, os.Stdin)
	default:
		res, err = drive(ctx, spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench driver: %s on %s: %v\n", spec.Op, spec.Table, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "bench driver:", err)
		return 1
	}
	return 0
}

// drive runs a goOp from spec.Clients connections for spec.Duration,
// timing every operation.
func drive(ctx context.Context, spec driveSpec) (driveResult, error) {
	op, ok := goOps[spec.Op]
	if !ok {
		return driveResult{}, fmt.Errorf("unknown workload %q", spec.Op)
	}
	conns, err := connectAll(ctx, spec.DSN, spec.Clients)
	defer closeAll(conns)
	if err != nil {
		return driveResult{}, err
	}
	var next atomic.Int64
	next.Store(spec.NextID)
	runCtx, cancel := context.WithTimeout(ctx, spec.Duration)
	defer cancel()
	lat := make([][]time.Duration, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = loop(runCtx, c, op, spec, uint64(i), &next)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return driveResult{}, err
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return driveResult{Ops: int64(len(all)), Seconds: elapsed, P50: percentile(all, 0.50), P99: percentile(all, 0.99), NextID: next.Load()}, nil
}

// loop runs op on c until ctx ends and returns each operation's latency.
func loop(ctx context.Context, c *pgx.Conn, op goOp, spec driveSpec, seed uint64, next *atomic.Int64) ([]time.Duration, error) {
	rng := rand.New(rand.NewPCG(seed, 42))
	lat := make([]time.Duration, 0, 1<<14)
	for ctx.Err() == nil {
		t := time.Now()
		if err := op(ctx, c, spec.Table, rng, next, spec.Rows); err != nil {
			if ctx.Err() != nil {
				break // the deadline interrupted the operation
			}
			return nil, err
		}
		lat = append(lat, time.Since(t))
	}
	return lat, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func connectAll(ctx context.Context, dsn string, n int) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, 0, n)
	for range n {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*pgx.Conn) {
	for _, c := range conns {
		c.Close(context.Background())
	}
}

// copyIn empties the table, then times COPY FROM STDIN (text format) of
// spec.CopyRows rows with the values of ids 1..CopyRows.
func copyIn(ctx context.Context, spec driveSpec) (driveResult, error) {
	rows, secs, err := timedCopyIn(ctx, spec, "(id, ssn, note)", benchCopyRows(int64(spec.CopyRows)))
	return driveResult{Ops: rows, Seconds: secs}, err
}

// copyOut times COPY TO STDOUT (text format) of the whole table.
func copyOut(ctx context.Context, spec driveSpec) (driveResult, error) {
	rows, _, secs, err := timedCopyOut(ctx, spec, "(id, ssn, note)")
	return driveResult{Ops: rows, Seconds: secs}, err
}

// timedCopyIn empties spec.Table, then times COPY of its columns FROM
// STDIN from src; it returns the rows loaded.
func timedCopyIn(ctx context.Context, spec driveSpec, columns string, src io.Reader) (int64, float64, error) {
	c, err := pgx.Connect(ctx, spec.DSN)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "TRUNCATE "+spec.Table); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	tag, err := c.PgConn().CopyFrom(ctx, src, "COPY "+spec.Table+" "+columns+" FROM STDIN")
	if err != nil {
		return 0, 0, err
	}
	return tag.RowsAffected(), time.Since(start).Seconds(), nil
}

// timedCopyOut times COPY of spec.Table's columns TO STDOUT; it returns
// the rows and the bytes that came out.
func timedCopyOut(ctx context.Context, spec driveSpec, columns string) (int64, int64, float64, error) {
	c, err := pgx.Connect(ctx, spec.DSN)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close(context.Background())
	var sink countingWriter
	start := time.Now()
	tag, err := c.PgConn().CopyTo(ctx, &sink, "COPY "+spec.Table+" "+columns+" TO STDOUT")
	if err != nil {
		return 0, 0, 0, err
	}
	return tag.RowsAffected(), sink.n, time.Since(start).Seconds(), nil
}

// copyRows generates COPY text rows for ids 1..n: the id, then
// fields(id), tab-separated, and counts the fields' bytes.
type copyRows struct {
	id, n, valueBytes int64
	fields            func(id int64) []string
	buf               []byte
}

// benchCopyRows are the COPY workloads' rows: "id\tssn\tnote".
func benchCopyRows(n int64) *copyRows {
	return &copyRows{n: n, fields: func(id int64) []string { return []string{ssnFor(id), noteFor(id)} }}
}

func (r *copyRows) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.id < r.n {
		r.id++
		r.buf = strconv.AppendInt(r.buf, r.id, 10)
		for _, f := range r.fields(r.id) {
			r.valueBytes += int64(len(f))
			r.buf = append(append(r.buf, '\t'), f...)
		}
		r.buf = append(r.buf, '\n')
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[:copy(r.buf, r.buf[n:])]
	return n, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
