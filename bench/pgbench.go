package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txLine  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	// pgbench's threads connect their clients one after the other before
	// the first transaction; with many clients that takes seconds.
	connLine = regexp.MustCompile(`initial connection time = ([0-9.]+) ms`)
)

// pgbenchRun runs pgbench against addr with clients clients for the run
// duration; script is "" for the built-in select-only (-S), else a script
// file (-f).
func pgbenchRun(ctx context.Context, e *env, addr, mode, script string, clients int, d time.Duration) (measurement, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-S"}
	if script != "" {
		args = []string{"-f", script}
	}
	logDir, err := os.MkdirTemp(e.scriptDir, "pgbench-log-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(logDir)
	args = append(args, "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
		"-T", strconv.Itoa(max(int(d.Seconds()), 1)), "-n", "-l", "--log-prefix", filepath.Join(logDir, "tx"),
		"-h", host, "-p", port, "-U", "postgres", "bench")
	out, err := exec.CommandContext(ctx, e.pgbench, args...).CombinedOutput()
	tps, tx := tpsLine.FindSubmatch(out), txLine.FindSubmatch(out)
	if tx != nil && string(tx[1]) == "0" {
		// Recorded as 0 rather than ending the whole run.
		fmt.Printf("    warning: pgbench with %d clients completed no transaction in %s (connecting may take longer: raise -duration or -scaling-duration)\n", clients, d)
		return measurement{seconds: d.Seconds()}, nil
	}
	if err != nil {
		return measurement{}, fmt.Errorf("pgbench %v: %v\n%s", args, err, out)
	}
	if tps == nil || tx == nil {
		return measurement{}, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	var m measurement
	m.value, _ = strconv.ParseFloat(string(tps[1]), 64)
	m.ops, _ = strconv.ParseInt(string(tx[1]), 10, 64)
	m.seconds = d.Seconds()
	lat, err := pgbenchLatencies(logDir)
	if err != nil {
		return measurement{}, err
	}
	m.p50Ms, m.p99Ms = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
	if c := connLine.FindSubmatch(out); c != nil {
		m.connectMs, _ = strconv.ParseFloat(string(c[1]), 64)
		if m.connectMs > 0.25*float64(d.Milliseconds()) {
			fmt.Printf("    warning: connecting took %.0f ms of the %s run; raise the duration for a steady-state figure\n", m.connectMs, d)
		}
	}
	return m, nil
}

// pgbenchLatencies reads the transaction logs pgbench -l wrote in dir (one
// file per thread; a line per transaction, its latency in µs the third
// field) and returns the latencies, sorted.
func pgbenchLatencies(dir string) ([]time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("pgbench log %s: %q", f, line)
			}
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// pointReadScript writes a pgbench script doing the Go driver's point read
// (three encrypted columns by deterministic equality) on table, with the
// value as a literal: simple protocol only, since pgbench substitutes
// variables inside quotes only there.
func pointReadScript(dir, table string, rows int) (string, error) {
	body := fmt.Sprintf("\\set id random(1, %d)\nSELECT ssn, email, note FROM %s WHERE ssn = '900-00-:id';\n", rows, table)
	path := filepath.Join(dir, "point_read_"+table+".sql")
	return path, os.WriteFile(path, []byte(body), 0o644)
}

func execOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}
