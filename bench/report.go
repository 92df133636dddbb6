package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

func report(w io.Writer, o options, results, scaling []workloadResult, memory []memoryResult) {
	fmt.Fprintf(w, "\n%d clients (COPY: 1), %s per run, %d round(s); medians over rounds\n", o.clients, o.duration, o.rounds)
	for _, g := range []string{groupPlain, groupEncrypted} {
		printGroup(w, g, filterGroup(results, g))
	}
	printDetails(w, results)
	printScaling(w, scaling)
	printMemory(w, memory)
}

// printMemory prints the memory workloads: this process's resident set
// before and at its peak, and per idle connection.
func printMemory(w io.Writer, rs []memoryResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmemory of this process (pgcloak and the harness)\n\n")
	printHeader(w, []string{"workload", "seconds", "baseline RSS MiB", "peak RSS MiB", "RSS KiB per connection", "Go heap+stacks KiB per connection"})
	for _, r := range rs {
		printRow(w, []string{r.name, strconv.FormatFloat(r.seconds, 'f', 1, 64),
			strconv.FormatFloat(float64(r.baselineKB)/1024, 'f', 1, 64), strconv.FormatFloat(float64(r.peakKB)/1024, 'f', 1, 64),
			optCell(r.perConnKB, 1), optCell(r.goPerConnKB, 1)})
	}
}

func filterGroup(rs []workloadResult, group string) []workloadResult {
	var out []workloadResult
	for _, r := range rs {
		if r.group == group {
			out = append(out, r)
		}
	}
	return out
}

// columns lists, in first-seen order, the variant and ratio names of rs.
func columns(rs []workloadResult) (variants, ratios []string) {
	for _, r := range rs {
		for _, v := range r.variants {
			if !slices.Contains(variants, v.name) {
				variants = append(variants, v.name)
			}
		}
		for _, q := range r.ratios {
			if !slices.Contains(ratios, q.name) {
				ratios = append(ratios, q.name)
			}
		}
	}
	return variants, ratios
}

// printGroup prints one throughput table: the median per variant, then the
// ratios.
func printGroup(w io.Writer, group string, rs []workloadResult) {
	if len(rs) == 0 {
		return
	}
	variants, ratios := columns(rs)
	fmt.Fprintf(w, "\n%s (median per second)\n\n", group)
	printHeader(w, append(append([]string{"workload", "unit"}, variants...), ratios...))
	for _, r := range rs {
		cells := []string{r.name, r.unit}
		for _, name := range variants {
			cells = append(cells, valueCell(r, name))
		}
		for _, name := range ratios {
			cells = append(cells, ratioCell(r, name))
		}
		printRow(w, cells)
	}
}

func printHeader(w io.Writer, names []string) {
	printRow(w, names)
	seps := make([]string, len(names))
	for i := range seps {
		seps[i] = "---:"
	}
	seps[0] = "---"
	printRow(w, seps)
}

func printRow(w io.Writer, cells []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

func valueCell(r workloadResult, variant string) string {
	for _, v := range r.variants {
		if v.name == variant {
			return fmt.Sprintf("%.0f", v.median.value)
		}
	}
	return "—"
}

func ratioCell(r workloadResult, name string) string {
	for _, q := range r.ratios {
		if q.name == name {
			return fmt.Sprintf("%.2f", q.value)
		}
	}
	return "—"
}

// printDetails prints, per workload and variant, every round's value, the
// CPU per operation of pgcloak (this process) or PgBouncer (its pid), and the
// Go driver's latency percentiles.
func printDetails(w io.Writer, rs []workloadResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nper variant: rounds, proxy CPU per transaction or row (pgcloak: this process; PgBouncer: its pid), latency (the Go driver's, or pgbench's per-transaction log), medians\n\n")
	printHeader(w, []string{"workload", "variant", "rounds (per second)", "CPU µs/op", "p50 ms", "p99 ms", "pgbench connect ms"})
	for _, r := range rs {
		for _, v := range r.variants {
			printRow(w, []string{r.name, v.name, roundsCell(v.rounds), optCell(v.median.cpuUs, 2), optCell(v.median.p50Ms, 2), optCell(v.median.p99Ms, 2), optCell(v.median.connectMs, 0)})
		}
	}
}

func roundsCell(ms []measurement) string {
	vals := make([]string, len(ms))
	for i, m := range ms {
		vals[i] = strconv.FormatFloat(m.value, 'f', 0, 64)
	}
	return strings.Join(vals, ", ")
}

func optCell(v float64, prec int) string {
	if v == 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// printScaling prints one table per scaling workload: a row per client
// count.
func printScaling(w io.Writer, rs []workloadResult) {
	var names []string
	for _, r := range rs {
		if !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	for _, name := range names {
		var rows []workloadResult
		for _, r := range rs {
			if r.name == name {
				rows = append(rows, r)
			}
		}
		variants, ratios := columns(rows)
		fmt.Fprintf(w, "\nscaling: %s (median tx/s)\n\n", name)
		cpu := cpuColumns(rows)
		printHeader(w, slices.Concat([]string{"clients"}, variants, ratios, cpu))
		for _, r := range rows {
			cells := []string{strconv.Itoa(r.clients)}
			for _, v := range variants {
				cells = append(cells, valueCell(r, v))
			}
			for _, q := range ratios {
				cells = append(cells, ratioCell(r, q))
			}
			printRow(w, append(cells, cpuCells(r, cpu)...))
		}
	}
}

// cpuColumns names a "CPU µs/tx" column for each variant with a CPU figure.
func cpuColumns(rs []workloadResult) []string {
	var cols []string
	for _, r := range rs {
		for _, v := range r.variants {
			c := v.name + " CPU µs/tx"
			if v.median.cpuUs > 0 && !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

func cpuCells(r workloadResult, cols []string) []string {
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = "—"
		for _, v := range r.variants {
			if v.name+" CPU µs/tx" == c {
				cells[i] = optCell(v.median.cpuUs, 1)
			}
		}
	}
	return cells
}
