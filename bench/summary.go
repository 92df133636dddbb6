package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// summary is the document -json writes.
type summary struct {
	Started        time.Time    `json:"started"`
	ElapsedSeconds float64      `json:"elapsed_seconds"`
	Machine        machine      `json:"machine"`
	Flags          summaryFlags `json:"flags"`
	Workloads      []jsonResult `json:"workloads"`
	Scaling        []jsonResult `json:"scaling,omitempty"`
	Memory         []jsonMemory `json:"memory,omitempty"`
}

// jsonMemory is a memory workload: this process's resident set before it
// and at its peak (for idle connections: while they are held), in KiB.
type jsonMemory struct {
	Name             string   `json:"name"`
	Bytes            int64    `json:"bytes,omitempty"`
	Connections      int      `json:"connections,omitempty"`
	Seconds          float64  `json:"seconds"`
	BaselineRSSKiB   int64    `json:"baseline_rss_kib"`
	PeakRSSKiB       int64    `json:"peak_rss_kib"`
	RSSKiBPerConn    *float64 `json:"rss_kib_per_connection,omitempty"`
	GoHeldKiBPerConn *float64 `json:"go_heap_stacks_kib_per_connection,omitempty"`
}

type machine struct {
	CPUModel     string `json:"cpu_model"`
	Cores        int    `json:"cores"`
	RAMBytes     int64  `json:"ram_bytes"`
	Kernel       string `json:"kernel"`
	OS           string `json:"os"`
	PostgreSQL   string `json:"postgresql"`
	PgBouncer    string `json:"pgbouncer,omitempty"`
	Go           string `json:"go"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

type summaryFlags struct {
	Duration        string `json:"duration"`
	Clients         int    `json:"clients"`
	Scale           int    `json:"scale"`
	Rows            int    `json:"rows"`
	CopyRows        int    `json:"copyrows"`
	Rounds          int    `json:"rounds"`
	Scaling         []int  `json:"scaling,omitempty"`
	ScalingDuration string `json:"scaling_duration,omitempty"`
	Only            string `json:"only,omitempty"`
	MemoryBytes     int64  `json:"memory_bytes,omitempty"`
	Idle            int    `json:"idle,omitempty"`
}

type jsonResult struct {
	Name     string             `json:"name"`
	Group    string             `json:"group"`
	Unit     string             `json:"unit"`
	Clients  int                `json:"clients"`
	Variants []jsonVariant      `json:"variants"`
	Ratios   map[string]float64 `json:"ratios"`
}

// jsonVariant: Median and Rounds are per second (Unit); the CPU and latency
// fields are absent where not measured.
type jsonVariant struct {
	Name            string    `json:"name"`
	Median          float64   `json:"median"`
	Rounds          []float64 `json:"rounds"`
	Ops             []int64   `json:"ops"`
	CPUUsPerOp      *float64  `json:"cpu_us_per_op,omitempty"`
	CPUUsPerOpRound []float64 `json:"cpu_us_per_op_rounds,omitempty"`
	P50Ms           *float64  `json:"p50_ms,omitempty"`
	P99Ms           *float64  `json:"p99_ms,omitempty"`
	ConnectMs       *float64  `json:"pgbench_connect_ms,omitempty"`
}

func writeJSON(path string, started time.Time, m machine, o options, results, scaling []workloadResult, memory []memoryResult) error {
	m.LoadAvgEnd = loadAvg()
	flags := summaryFlags{Duration: o.duration.String(), Clients: o.clients, Scale: o.scale, Rows: o.rows,
		CopyRows: o.copyRows, Rounds: o.rounds, Scaling: o.scaling, Only: o.only,
		MemoryBytes: o.memoryBytes, Idle: o.idle}
	if len(o.scaling) > 0 {
		flags.ScalingDuration = o.scalingDuration.String()
	}
	s := summary{
		Started: started.UTC(), ElapsedSeconds: time.Since(started).Seconds(), Machine: m,
		Flags:     flags,
		Workloads: toJSON(results), Scaling: toJSON(scaling),
	}
	for _, r := range memory {
		s.Memory = append(s.Memory, jsonMemory{
			Name: r.name, Bytes: r.bytes, Connections: r.conns, Seconds: round3(r.seconds),
			BaselineRSSKiB: r.baselineKB, PeakRSSKiB: r.peakKB,
			RSSKiBPerConn: optional(r.perConnKB), GoHeldKiBPerConn: optional(r.goPerConnKB),
		})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func toJSON(rs []workloadResult) []jsonResult {
	out := []jsonResult{}
	for _, r := range rs {
		j := jsonResult{Name: r.name, Group: r.group, Unit: r.unit, Clients: r.clients, Ratios: map[string]float64{}}
		for _, q := range r.ratios {
			j.Ratios[q.name] = round3(q.value)
		}
		for _, v := range r.variants {
			j.Variants = append(j.Variants, variantJSON(v))
		}
		out = append(out, j)
	}
	return out
}

func variantJSON(v variantResult) jsonVariant {
	j := jsonVariant{Name: v.name, Median: round3(v.median.value)}
	for _, m := range v.rounds {
		j.Rounds = append(j.Rounds, round3(m.value))
		j.Ops = append(j.Ops, m.ops)
		if m.cpuUs > 0 {
			j.CPUUsPerOpRound = append(j.CPUUsPerOpRound, round3(m.cpuUs))
		}
	}
	j.CPUUsPerOp = optional(v.median.cpuUs)
	j.P50Ms = optional(v.median.p50Ms)
	j.P99Ms = optional(v.median.p99Ms)
	j.ConnectMs = optional(v.median.connectMs)
	return j
}

func optional(v float64) *float64 {
	if v == 0 {
		return nil
	}
	r := round3(v)
	return &r
}

func round3(v float64) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 3, 64), 64)
	return f
}

// describeMachine gathers what the figures depend on.
func describeMachine(e *env) machine {
	m := machine{
		CPUModel:     procField("/proc/cpuinfo", "model name"),
		Cores:        runtime.NumCPU(),
		Kernel:       strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		OS:           strings.Trim(procField("/etc/os-release", "PRETTY_NAME"), `"`),
		PostgreSQL:   commandVersion(filepath.Join(e.pg.BinDir, "postgres"), "-V"),
		Go:           runtime.Version(),
		LoadAvgStart: loadAvg(),
	}
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		m.RAMBytes = kb * 1024
	}
	if e.bouncer != "" {
		if p, err := exec.LookPath("pgbouncer"); err == nil {
			m.PgBouncer = commandVersion(p, "-V")
		}
	}
	return m
}

// procField returns the value of the first "key: value" or "key=value" line.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			k, v, ok = strings.Cut(sc.Text(), "=")
		}
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func commandVersion(bin string, arg string) string {
	out, err := execOutput(context.Background(), bin, arg)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
