package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p := percentile(d, 0.5); p != 50 {
		t.Errorf("p50 = %v, want 50", p)
	}
	if p := percentile(d, 0.99); p != 99 {
		t.Errorf("p99 = %v, want 99", p)
	}
	if p := percentile(d[:1], 0.99); p != 1 {
		t.Errorf("p99 of one = %v, want 1", p)
	}
}

func TestRatiosSkipMissingAndZero(t *testing.T) {
	r := workloadResult{variants: []variantResult{
		{name: "a", median: measurement{value: 50}},
		{name: "b", median: measurement{value: 100}},
		{name: "z", median: measurement{value: 0}},
	}}
	got := computeRatios(r, []ratio{{"a/b", "a", "b"}, {"a/z", "a", "z"}, {"a/missing", "a", "m"}})
	if len(got) != 1 || got[0].name != "a/b" || got[0].value != 0.5 {
		t.Errorf("ratios = %+v", got)
	}
}

func TestRunRoundsRotatesOrder(t *testing.T) {
	var order []string
	v := func(name string) variant {
		return variant{name: name, run: func(ctx context.Context) (measurement, error) {
			order = append(order, name)
			return measurement{value: float64(len(order)), ops: 1}, nil
		}}
	}
	res, err := runRounds(context.Background(), workload{name: "w", variants: []variant{v("a"), v("b"), v("c")}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "abcbcacab" {
		t.Errorf("order %s, want abcbcacab", got)
	}
	if len(res.variants[0].rounds) != 3 {
		t.Errorf("a ran %d times", len(res.variants[0].rounds))
	}
}

// The harness reads CPU times from /proc (Linux), where it runs.
func TestPidCPUReadsSelf(t *testing.T) {
	if _, err := pidCPU(os.Getpid())(); err != nil {
		t.Fatal(err)
	}
	if _, err := selfCPU(); err != nil {
		t.Fatal(err)
	}
}

func TestBenchCopyRows(t *testing.T) {
	b, err := io.ReadAll(benchCopyRows(3))
	if err != nil {
		t.Fatal(err)
	}
	want := "1\t900-00-1\tnote for patient 1\n2\t900-00-2\tnote for patient 2\n3\t900-00-3\tnote for patient 3\n"
	if string(b) != want {
		t.Errorf("got %q", b)
	}
}

// Each memory-workload row carries memRowBytes of value, and the reader
// counts exactly the value bytes it generated.
func TestMemCopyRowsCountValueBytes(t *testing.T) {
	r := memCopyRows(3)
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.valueBytes != 3*memRowBytes {
		t.Errorf("counted %d value bytes, want %d", r.valueBytes, 3*memRowBytes)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || lines[1] != "2\t"+memNote(2) || len(memNote(2)) != memRowBytes {
		t.Errorf("rows %q…", b[:min(len(b), 60)])
	}
}

// The memory figures come from /proc/self/status, and the peak can be
// reset there (Linux, where the harness runs).
func TestPeakRSSCanBeReadAndReset(t *testing.T) {
	rss, err := statusKB("VmRSS")
	if err != nil || rss <= 0 {
		t.Fatalf("VmRSS %d, %v", rss, err)
	}
	if err := resetPeakRSS(); err != nil {
		t.Fatal(err)
	}
	peak, err := statusKB("VmHWM")
	if err != nil || peak < rss/2 {
		t.Fatalf("VmHWM %d after reset (VmRSS %d), %v", peak, rss, err)
	}
}

// pgbench's per-transaction logs (one file per thread) give the latency
// percentiles; a line that is not a log line is an error, not a zero.
func TestPgbenchLatenciesFromLogs(t *testing.T) {
	dir := t.TempDir()
	var a, b strings.Builder
	for i := 1; i <= 100; i++ {
		w := &a
		if i%2 == 0 {
			w = &b
		}
		fmt.Fprintf(w, "%d %d %d 0 1733400000 %d\n", i%8, i, i*10, i)
	}
	os.WriteFile(filepath.Join(dir, "tx.123"), []byte(a.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "tx.123.1"), []byte(b.String()), 0o644)
	lat, err := pgbenchLatencies(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 100 || percentile(lat, 0.5) != 500*time.Microsecond || percentile(lat, 0.99) != 990*time.Microsecond {
		t.Errorf("%d latencies, p50 %v, p99 %v", len(lat), percentile(lat, 0.5), percentile(lat, 0.99))
	}
	os.WriteFile(filepath.Join(dir, "tx.124"), []byte("0 1 garbage 0 1 2\n"), 0o644)
	if _, err := pgbenchLatencies(dir); err == nil {
		t.Error("a malformed log line was accepted")
	}
}
