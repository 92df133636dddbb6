// Command bench is pgcloak's benchmark harness (make bench). It starts a
// throwaway PostgreSQL, an in-process pgcloak and, when installed, PgBouncer
// in session mode, then measures, each workload's variants alternating in
// rounds (-rounds) and reported as medians:
//
//   - pgbench -S (select-only), simple and extended protocol: directly,
//     through PgBouncer and through pgcloak (no encrypted column involved);
//   - workloads on a table with three encrypted columns (ssn and email
//     deterministic, note randomized) through pgcloak, against the same
//     workload on a plaintext twin table through pgcloak and directly: a point
//     read by deterministic equality, an insert, a 20-row read by id range,
//     each returning or writing the three columns, driven from Go in a child
//     process (latency p50/p99 per operation); and COPY FROM STDIN / COPY TO
//     STDOUT of -copyrows rows with two encrypted columns;
//   - with -scaling, pgbench -S and a pgbench point-read script at several
//     client counts.
//
// For pgcloak (this process; the drivers are children) and PgBouncer (its
// pid) it reports CPU µs per transaction or row. It prints the medians and
// ratios and, with -json, writes them with every round's value.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/testenv"
)

type options struct {
	duration time.Duration
	clients  int
	scale    int
	rows     int
	copyRows int
	rounds   int
	scaling  []int
	// scalingDuration is each scaling run's length: pgbench connects
	// its clients inside it, which takes seconds at a few hundred.
	scalingDuration time.Duration
	// memoryBytes is how much the memory workloads move (0: none); idle
	// how many idle connections they hold (0: none).
	memoryBytes int64
	idle        int
	jsonPath    string
	cpuProfile  string
	only        string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain())
	}
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
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

func parseFlags() (options, error) {
	var o options
	var scaling string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each timed run (whole seconds for pgbench)")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor")
	flag.IntVar(&o.rows, "rows", 20000, "rows preloaded for the encrypted workloads")
	flag.IntVar(&o.copyRows, "copyrows", 1_000_000, "rows per COPY FROM STDIN / COPY TO STDOUT")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per workload; each round runs every variant once")
	flag.StringVar(&scaling, "scaling", "", "comma-separated client counts (e.g. 1,8,64,256) for the scaling runs; off when empty")
	flag.DurationVar(&o.scalingDuration, "scaling-duration", 0, "length of each scaling run (default -duration)")
	flag.Int64Var(&o.memoryBytes, "memory-bytes", 1<<30, "bytes of encrypted values the memory workloads move through pgcloak (COPY FROM, SELECT, COPY TO); 0 skips them")
	flag.IntVar(&o.idle, "idle", 1000, "idle connections whose memory is measured; 0 skips")
	flag.StringVar(&o.jsonPath, "json", "", "write a machine-readable summary to this file")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the proxy) to this file")
	flag.StringVar(&o.only, "only", "", "run only workloads whose name contains this")
	flag.Parse()
	if o.rounds < 1 || o.clients < 1 || o.copyRows < 1 || o.rows < rangeReadRows {
		return o, errors.New("-rounds, -clients and -copyrows must be positive, -rows at least 20")
	}
	if o.memoryBytes < 0 || (o.memoryBytes > 0 && o.memoryBytes < memRowBytes) || o.idle < 0 {
		return o, fmt.Errorf("-memory-bytes must be 0 or at least %d, -idle not negative", memRowBytes)
	}
	if o.scalingDuration == 0 {
		o.scalingDuration = o.duration
	}
	for _, s := range strings.Split(scaling, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return o, fmt.Errorf("-scaling: bad client count %q", s)
		}
		o.scaling = append(o.scaling, n)
	}
	return o, nil
}

// env is what the variants run against.
type env struct {
	o          options
	pg         *testenv.LocalServer
	pgbench    string
	direct     string // PostgreSQL's address
	proxy      string // pgcloak's
	bouncer    string // PgBouncer's, "" when not running
	bouncerPID int
	scriptDir  string
	nextID     map[string]int64 // per table, the last id inserts used
}

func (e *env) dsn(addr string) string {
	return "postgres://postgres@" + addr + "/bench?sslmode=disable"
}

func (e *env) maxClients() int {
	return max(e.o.clients, slices.Max(append([]int{1}, e.o.scaling...)))
}

func run(ctx context.Context, o options) error {
	started := time.Now()
	e := &env{o: o, nextID: map[string]int64{}}
	cleanup, err := e.start(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	machine := describeMachine(e)
	var results, scaling []workloadResult
	var memory []memoryResult
	err = runAll(ctx, e, &results, &scaling)
	if err == nil {
		memory, err = runMemory(ctx, e)
	}
	report(os.Stdout, o, results, scaling, memory)
	if o.jsonPath != "" {
		if jerr := writeJSON(o.jsonPath, started, machine, o, results, scaling, memory); jerr != nil && err == nil {
			err = jerr
		}
	}
	return err
}

// start brings up PostgreSQL, pgcloak and PgBouncer and loads the data; the
// returned function undoes whatever was started.
func (e *env) start(ctx context.Context) (func(), error) {
	var undo []func()
	cleanup := func() {
		for _, f := range slices.Backward(undo) {
			f()
		}
	}
	var err error
	if e.pgbench, err = findPgbench(); err != nil {
		return cleanup, err
	}
	fmt.Println("starting PostgreSQL…")
	e.pg, err = testenv.StartLocalServer(ctx, testenv.LocalServerOptions{
		// The clients, PgBouncer's pool (whose server connections
		// outlive them) and the idle connections.
		ExtraConf: map[string]string{"max_connections": strconv.Itoa(max(200, 2*e.maxClients()+60) + e.o.idle)},
	})
	if err != nil {
		return cleanup, err
	}
	undo = append(undo, func() { e.pg.Stop() })
	e.direct = net.JoinHostPort(e.pg.Host, strconv.Itoa(e.pg.Port))
	e.scriptDir = e.pg.Dir
	if err := createDatabase(ctx, e); err != nil {
		return cleanup, err
	}
	proxyAddr, closeProxy, err := startProxy(e.pg)
	if err != nil {
		return cleanup, err
	}
	e.proxy = proxyAddr
	undo = append(undo, closeProxy)
	addr, pid, stopBouncer, err := startPgBouncer(ctx, e.pg, e.maxClients())
	if err != nil {
		fmt.Printf("PgBouncer reference skipped: %v\n", err)
	} else {
		e.bouncer, e.bouncerPID = addr, pid
		undo = append(undo, stopBouncer)
	}
	if err := initPgbench(ctx, e); err != nil {
		return cleanup, err
	}
	return cleanup, createTables(ctx, e)
}

func createDatabase(ctx context.Context, e *env) error {
	admin, err := pgx.Connect(ctx, e.pg.DSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	_, err = admin.Exec(ctx, "CREATE DATABASE bench")
	return err
}

func initPgbench(ctx context.Context, e *env) error {
	fmt.Printf("pgbench -i -s %d…\n", e.o.scale)
	host, port, _ := net.SplitHostPort(e.direct)
	out, err := execOutput(ctx, e.pgbench, "-i", "-q", "-s", strconv.Itoa(e.o.scale), "-h", host, "-p", port, "-U", "postgres", "bench")
	if err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	return nil
}

// runAll runs every selected workload, then the scaling runs, appending
// results as they complete so a failure still leaves the earlier ones.
func runAll(ctx context.Context, e *env, results, scaling *[]workloadResult) error {
	ws, scal := selected(mainWorkloads(e), e.o.only), selected(scalingWorkloads(e), e.o.only)
	printPlan(e.o, ws, scal)
	for _, w := range ws {
		if w.prepare != nil {
			if err := w.prepare(ctx); err != nil {
				return err
			}
		}
		r, err := runRounds(ctx, w.workload, e.o.rounds)
		if err != nil {
			return err
		}
		*results = append(*results, r)
	}
	for _, w := range scal {
		r, err := runRounds(ctx, w.workload, e.o.rounds)
		if err != nil {
			return err
		}
		*scaling = append(*scaling, r)
	}
	return nil
}

func selected(ws []preparedWorkload, only string) []preparedWorkload {
	var out []preparedWorkload
	for _, w := range ws {
		if strings.Contains(w.name, only) {
			out = append(out, w)
		}
	}
	return out
}

// printPlan says how many timed runs are ahead and roughly how long they
// take (COPY runs are counted by rows, not time).
func printPlan(o options, ws, scaling []preparedWorkload) {
	var timed time.Duration
	var runs, copies int
	for _, w := range ws {
		n := len(w.variants) * o.rounds
		if w.unit == "rows/s" {
			copies += n
			continue
		}
		runs += n
		timed += time.Duration(n) * o.duration
	}
	for _, w := range scaling {
		n := len(w.variants) * o.rounds
		runs += n
		timed += time.Duration(n) * o.scalingDuration
	}
	fmt.Printf("%d timed runs (%s in all) and %d COPY runs of %d rows ahead\n", runs, timed, copies, o.copyRows)
}
