package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measurement is one run of one variant.
type measurement struct {
	value   float64 // operations (transactions or rows) per second
	ops     int64
	seconds float64
	cpuUs   float64 // CPU µs per operation of the measured process; 0 = not measured
	p50Ms   float64 // latency percentiles; 0 = not measured
	p99Ms   float64
	// pgbench's initial connection time (ms); 0 = not a pgbench run
	connectMs float64
}

// variant is one way of running a workload (directly, through PgBouncer,
// through pgcloak on the plaintext or the encrypted table).
type variant struct {
	name string
	cpu  cpuClock // the process charged for the variant's CPU; nil = none
	run  func(ctx context.Context) (measurement, error)
}

// ratio names two variants whose medians are divided, num/den, and the
// label the ratio is printed under.
type ratio struct{ label, num, den string }

// workload is something measured in rounds across its variants.
type workload struct {
	name     string
	group    string // the printed table it belongs to
	unit     string // "tx/s" or "rows/s"
	clients  int
	variants []variant
	ratios   []ratio
}

type variantResult struct {
	name   string
	rounds []measurement
	median measurement // per field, the median over rounds
}

type ratioResult struct {
	name  string
	value float64
}

type workloadResult struct {
	name, group, unit string
	clients           int
	variants          []variantResult
	ratios            []ratioResult
}

// runRounds runs w's variants alternately, rounds times: round r starts at
// variant r mod n, so drift on a shared machine and the position after
// another variant hit every variant alike.
func runRounds(ctx context.Context, w workload, rounds int) (workloadResult, error) {
	res := workloadResult{name: w.name, group: w.group, unit: w.unit, clients: w.clients}
	res.variants = make([]variantResult, len(w.variants))
	for i, v := range w.variants {
		res.variants[i].name = v.name
	}
	for r := 0; r < rounds; r++ {
		for k := range w.variants {
			i := (r + k) % len(w.variants)
			fmt.Printf("  round %d/%d: %s — %s, %d client(s)\n", r+1, rounds, w.name, w.variants[i].name, w.clients)
			m, err := measure(ctx, w.variants[i])
			if err != nil {
				return res, fmt.Errorf("%s, %s: %w", w.name, w.variants[i].name, err)
			}
			res.variants[i].rounds = append(res.variants[i].rounds, m)
		}
	}
	for i := range res.variants {
		res.variants[i].median = medianOf(res.variants[i].rounds)
	}
	res.ratios = computeRatios(res, w.ratios)
	return res, nil
}

func measure(ctx context.Context, v variant) (measurement, error) {
	var before time.Duration
	if v.cpu != nil {
		var err error
		if before, err = v.cpu(); err != nil {
			return measurement{}, err
		}
	}
	m, err := v.run(ctx)
	if err != nil || v.cpu == nil {
		return m, err
	}
	after, err := v.cpu()
	if err != nil {
		return m, err
	}
	if m.ops > 0 {
		m.cpuUs = float64((after - before).Microseconds()) / float64(m.ops)
	}
	return m, nil
}

func medianOf(ms []measurement) measurement {
	pick := func(f func(measurement) float64) float64 {
		vals := make([]float64, len(ms))
		for i, m := range ms {
			vals[i] = f(m)
		}
		return median(vals)
	}
	return measurement{
		value:     pick(func(m measurement) float64 { return m.value }),
		ops:       int64(pick(func(m measurement) float64 { return float64(m.ops) })),
		seconds:   pick(func(m measurement) float64 { return m.seconds }),
		cpuUs:     pick(func(m measurement) float64 { return m.cpuUs }),
		p50Ms:     pick(func(m measurement) float64 { return m.p50Ms }),
		p99Ms:     pick(func(m measurement) float64 { return m.p99Ms }),
		connectMs: pick(func(m measurement) float64 { return m.connectMs }),
	}
}

// median of vals: the middle one, or the mean of the two middle ones.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func computeRatios(res workloadResult, specs []ratio) []ratioResult {
	byName := map[string]float64{}
	for _, v := range res.variants {
		byName[v.name] = v.median.value
	}
	var out []ratioResult
	for _, s := range specs {
		num, okN := byName[s.num]
		den, okD := byName[s.den]
		if okN && okD && den > 0 {
			out = append(out, ratioResult{name: s.label, value: num / den})
		}
	}
	return out
}

// cpuClock returns the CPU time (user + system) a process has used so far.
type cpuClock func() (time.Duration, error)

// selfCPU is this process's CPU time: the in-process pgcloak's, since the
// workload drivers run in child processes and pgbench is its own process.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// userHZ is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// pidCPU reads utime and stime of pid from /proc/<pid>/stat (10 ms
// resolution).
func pidCPU(pid int) cpuClock {
	return func() (time.Duration, error) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, err
		}
		// The command name (field 2) is in parentheses and may hold spaces.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		// rest starts at field 3 (state); utime and stime are fields 14, 15.
		if len(f) < 13 {
			return 0, fmt.Errorf("short /proc/%d/stat", pid)
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad /proc/%d/stat", pid)
		}
		return time.Duration(ut+st) * time.Second / userHZ, nil
	}
}
