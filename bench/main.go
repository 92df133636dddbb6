// Command bench is pgcloak's benchmark harness (make bench). It starts a
// throwaway PostgreSQL and an in-process pgcloak, then measures:
//
//   - pgbench -S (select-only), simple and extended protocol, directly
//     against PostgreSQL and through pgcloak with no encrypted columns;
//   - a workload on a table with two encrypted columns through pgcloak
//     (insert; select by deterministic equality; select by id returning both
//     encrypted columns) against the same workload on a plaintext table
//     directly.
//
// It prints transactions per second and the ratio proxy/direct for each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

const benchPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: notes, kind: randomized}
  columns:
    - {table: public.bench_enc, column: ssn, key: ssn, type: text}
    - {table: public.bench_enc, column: note, key: notes, type: text}
  roles:
    - {role: postgres, read: [ssn, notes], write: [ssn, notes]}
`

const benchSchema = `
CREATE TABLE bench_enc   (id int PRIMARY KEY, ssn bytea, note bytea);
CREATE INDEX ON bench_enc (ssn);
CREATE TABLE bench_plain (id int PRIMARY KEY, ssn text,  note text);
CREATE INDEX ON bench_plain (ssn);
`

type options struct {
	duration   time.Duration
	clients    int
	scale      int
	rows       int
	cpuProfile string
	only       string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of each run")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor")
	flag.IntVar(&o.rows, "rows", 20000, "rows preloaded for the encrypted workload")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (proxy included) to this file")
	flag.StringVar(&o.only, "only", "", "run only workloads whose name contains this")
	flag.Parse()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type result struct {
	name          string
	direct, proxy float64
	bouncer       float64 // PgBouncer for reference, 0 when not run
}

func run(ctx context.Context, o options) error {
	pgbench, err := findPgbench()
	if err != nil {
		return err
	}
	fmt.Println("starting PostgreSQL…")
	pg, err := testenv.StartLocalServer(ctx, testenv.LocalServerOptions{})
	if err != nil {
		return err
	}
	defer pg.Stop()
	admin, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE bench"); err != nil {
		return err
	}
	admin.Close(ctx)

	proxyAddr, closeProxy, err := startProxy(pg)
	if err != nil {
		return err
	}
	defer closeProxy()
	direct := net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port))
	bouncerAddr, stopBouncer, err := startPgBouncer(ctx, pg)
	if err != nil {
		fmt.Printf("PgBouncer reference skipped: %v\n", err)
	} else {
		defer stopBouncer()
	}

	fmt.Printf("pgbench -i -s %d…\n", o.scale)
	if out, err := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(o.scale), "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", "postgres", "bench").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	var results []result
	for _, mode := range []string{"simple", "extended"} {
		r := result{name: "pgbench -S -M " + mode}
		if !strings.Contains(r.name, o.only) {
			continue
		}
		if r.direct, err = pgbenchTPS(ctx, pgbench, direct, mode, o); err != nil {
			return err
		}
		if r.proxy, err = pgbenchTPS(ctx, pgbench, proxyAddr, mode, o); err != nil {
			return err
		}
		if bouncerAddr != "" {
			if r.bouncer, err = pgbenchTPS(ctx, pgbench, bouncerAddr, mode, o); err != nil {
				return err
			}
		}
		results = append(results, r)
	}
	wl, err := encryptedWorkloads(ctx, direct, proxyAddr, o)
	if err != nil {
		return err
	}
	results = append(results, wl...)
	report(os.Stdout, o, results)
	return nil
}

func findPgbench() (string, error) {
	if bin, err := testenv.FindBinDir(context.Background()); err == nil {
		if p := filepath.Join(bin, "pgbench"); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", errors.New("pgbench not found (install postgresql-contrib or the PostgreSQL server package)")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startProxy runs pgcloak in this process with a local keystore.
func startProxy(pg *testenv.LocalServer) (string, func(), error) {
	cfg, err := policy.Load([]byte(benchPolicy))
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "pgcloak-bench-")
	if err != nil {
		return "", nil, err
	}
	store, _, err := keymap.NewLocalStoreInDir(dir)
	if err != nil {
		return "", nil, err
	}
	if _, err := keymap.CreateMissing(context.Background(), store, cfg.Policy.Keys); err != nil {
		return "", nil, err
	}
	srv, err := proxy.NewServer(proxy.Config{
		Server:   policy.Server{Listen: "127.0.0.1:0", MaxMessageBytes: 64 << 20, TLS: policy.ServerTLS{Mode: "disable"}},
		Upstream: policy.Upstream{Address: net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)), TLS: policy.UpstreamTLS{Mode: "disable"}},
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keymap.NewKeyring(store, 5*time.Minute),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close(); os.RemoveAll(dir) }, nil
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func pgbenchTPS(ctx context.Context, pgbench, addr, mode string, o options) (float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-S", "-M", mode, "-c", strconv.Itoa(o.clients), "-j", "2", "-T", strconv.Itoa(int(o.duration.Seconds())),
		"-n", "-h", host, "-p", port, "-U", "postgres", "bench"}
	fmt.Printf("pgbench %v\n", args)
	out, err := exec.CommandContext(ctx, pgbench, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// workload is one operation of the encrypted-columns benchmark; table is
// bench_enc through the proxy and bench_plain directly.
type workload struct {
	name string
	op   func(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, next *atomic.Int64, rows int) error
}

var workloads = []workload{
	{"insert (2 encrypted columns)", func(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, next *atomic.Int64, _ int) error {
		id := next.Add(1)
		_, err := c.Exec(ctx, "INSERT INTO "+table+" (id, ssn, note) VALUES ($1, $2, $3)", id, ssnFor(id), "note for patient "+strconv.FormatInt(id, 10))
		return err
	}},
	{"select by deterministic equality", func(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, _ *atomic.Int64, rows int) error {
		var id int
		return c.QueryRow(ctx, "SELECT id FROM "+table+" WHERE ssn = $1", ssnFor(int64(rng.IntN(rows)+1))).Scan(&id)
	}},
	{"select by id, both encrypted columns", func(ctx context.Context, c *pgx.Conn, table string, rng *rand.Rand, _ *atomic.Int64, rows int) error {
		var ssn, note string
		return c.QueryRow(ctx, "SELECT ssn, note FROM "+table+" WHERE id = $1", rng.IntN(rows)+1).Scan(&ssn, &note)
	}},
}

func ssnFor(id int64) string {
	return fmt.Sprintf("%03d-%02d-%04d", id%1000, id%100, id%10000) + "-" + strconv.FormatInt(id, 10)
}

func encryptedWorkloads(ctx context.Context, direct, proxyAddr string, o options) ([]result, error) {
	directDSN := "postgres://postgres@" + direct + "/bench?sslmode=disable"
	proxyDSN := "postgres://postgres@" + proxyAddr + "/bench?sslmode=disable"
	setup, err := pgx.Connect(ctx, directDSN)
	if err != nil {
		return nil, err
	}
	defer setup.Close(context.Background())
	if _, err := setup.Exec(ctx, benchSchema); err != nil {
		return nil, err
	}
	fmt.Printf("loading %d rows into each table…\n", o.rows)
	if err := preload(ctx, directDSN, "bench_plain", o.rows); err != nil {
		return nil, err
	}
	if err := preload(ctx, proxyDSN, "bench_enc", o.rows); err != nil {
		return nil, err
	}
	var results []result
	for _, w := range workloads {
		r := result{name: w.name}
		if !strings.Contains(r.name, o.only) {
			continue
		}
		var next atomic.Int64
		next.Store(int64(o.rows) + 1_000_000)
		if r.direct, err = drive(ctx, directDSN, "bench_plain", w, &next, o); err != nil {
			return nil, fmt.Errorf("%s direct: %w", w.name, err)
		}
		next.Store(int64(o.rows) + 1_000_000)
		if r.proxy, err = drive(ctx, proxyDSN, "bench_enc", w, &next, o); err != nil {
			return nil, fmt.Errorf("%s through pgcloak: %w", w.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func preload(ctx context.Context, dsn, table string, rows int) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	src := make([][]any, rows)
	for i := range src {
		id := int64(i + 1)
		src[i] = []any{int32(id), ssnFor(id), "note for patient " + strconv.FormatInt(id, 10)}
	}
	_, err = c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "ssn", "note"}, pgx.CopyFromRows(src))
	return err
}

// drive runs a workload from o.clients connections for o.duration and
// returns operations per second.
func drive(ctx context.Context, dsn, table string, w workload, next *atomic.Int64, o options) (float64, error) {
	conns := make([]*pgx.Conn, o.clients)
	for i := range conns {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	fmt.Printf("%s on %s for %s…\n", w.name, table, o.duration)
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var ops atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for runCtx.Err() == nil {
				if err := w.op(runCtx, c, table, rng, next, o.rows); err != nil {
					if runCtx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(ops.Load()) / time.Since(start).Seconds(), nil
}

func report(w io.Writer, o options, results []result) {
	fmt.Fprintf(w, "\n%d clients, %s per run\n\n", o.clients, o.duration)
	fmt.Fprintf(w, "| workload | direct TPS | pgcloak TPS | pgcloak/direct | PgBouncer TPS | PgBouncer/direct |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		bouncer, ratio := "—", "—"
		if r.bouncer > 0 {
			bouncer, ratio = fmt.Sprintf("%.0f", r.bouncer), fmt.Sprintf("%.2f", r.bouncer/r.direct)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2f | %s | %s |\n", r.name, r.direct, r.proxy, r.proxy/r.direct, bouncer, ratio)
	}
}

// startPgBouncer runs PgBouncer, when installed, in session pooling mode
// (one server connection per client, as pgcloak) as a reference point for
// the cost of a proxy hop.
func startPgBouncer(ctx context.Context, pg *testenv.LocalServer) (string, func(), error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", nil, errors.New("pgbouncer is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := filepath.Join(pg.Dir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", nil, err
	}
	ini := fmt.Sprintf(`[databases]
bench = host=%s port=%d dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 100
logfile = %s/pgbouncer.log
`, pg.Host, pg.Port, port, dir, dir)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return "", nil, err
	}
	args := []string{iniPath}
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root.
		args = append([]string{"-u", "postgres"}, args...)
		os.Chmod(dir, 0o777)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; i < 50; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return addr, func() { cmd.Process.Kill(); cmd.Wait() }, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return "", nil, errors.New("pgbouncer did not start listening")
}
