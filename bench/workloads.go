package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The variants' names, as printed and in the JSON summary.
const (
	vDirect       = "direct"
	vBouncer      = "PgBouncer"
	vPgcloak      = "pgcloak"
	vDirectPlain  = "direct, plain table"
	vPgcloakPlain = "pgcloak, plain table"
	vPgcloakEnc   = "pgcloak, encrypted table"
)

const (
	groupPlain     = "plain traffic"
	groupEncrypted = "encrypted columns"
)

var (
	plainRatios = []ratio{
		{"pgcloak/direct", vPgcloak, vDirect},
		{"PgBouncer/direct", vBouncer, vDirect},
		{"pgcloak/PgBouncer", vPgcloak, vBouncer},
	}
	// The comparison first: the encrypted table against its
	// plaintext twin, both through pgcloak.
	encRatios = []ratio{
		{"enc/plain via pgcloak", vPgcloakEnc, vPgcloakPlain},
		{"enc via pgcloak/direct", vPgcloakEnc, vDirectPlain},
		{"plain via pgcloak/direct", vPgcloakPlain, vDirectPlain},
	}
)

// preparedWorkload is a workload with, optionally, setup to do before its
// rounds (outside any measurement).
type preparedWorkload struct {
	workload
	prepare func(ctx context.Context) error
}

func mainWorkloads(e *env) []preparedWorkload {
	var ws []preparedWorkload
	for _, mode := range []string{"simple", "extended"} {
		ws = append(ws, preparedWorkload{workload: pgbenchWorkload(e, "pgbench -S -M "+mode, mode, e.o.clients, e.o.duration)})
	}
	for _, g := range []struct{ name, op string }{
		{"point read by deterministic equality, 3 encrypted columns", opPointRead},
		{"insert, 3 encrypted columns", opInsert},
		{fmt.Sprintf("range read, %d rows by id, 3 encrypted columns", rangeReadRows), opRangeRead},
		{fmt.Sprintf("range read, %d rows from a timestamp ORDER BY it LIMIT %d, ordered key", rangeReadRows, rangeReadRows), opOrdered},
	} {
		ws = append(ws, preparedWorkload{workload: goWorkload(e, g.name, g.op)})
	}
	ws = append(ws,
		preparedWorkload{workload: copyWorkload(e, fmt.Sprintf("COPY FROM STDIN, %d rows, 2 encrypted columns", e.o.copyRows), opCopyIn)},
		preparedWorkload{
			workload: copyWorkload(e, fmt.Sprintf("COPY TO STDOUT, %d rows, 2 encrypted columns", e.o.copyRows), opCopyOut),
			prepare:  func(ctx context.Context) error { return fillCopyTables(ctx, e) },
		})
	return ws
}

// scalingWorkloads are pgbench -S and the point read as a pgbench script
// (simple protocol) at each -scaling client count.
func scalingWorkloads(e *env) []preparedWorkload {
	var ws []preparedWorkload
	for _, c := range e.o.scaling {
		ws = append(ws, preparedWorkload{workload: pgbenchWorkload(e, "pgbench -S -M simple", "simple", c, e.o.scalingDuration)})
	}
	for _, c := range e.o.scaling {
		ws = append(ws, preparedWorkload{workload: encWorkload(e, "point read, 3 encrypted columns, pgbench -f -M simple", "tx/s", c,
			"bench_plain", "bench_enc",
			func(name, addr, table string, cpu cpuClock) variant {
				return scriptVariant(e, name, addr, table, c, cpu)
			})})
	}
	return ws
}

func pgbenchWorkload(e *env, name, mode string, clients int, d time.Duration) workload {
	w := workload{name: name, group: groupPlain, unit: "tx/s", clients: clients, ratios: plainRatios}
	w.variants = append(w.variants, pgbenchVariant(e, vDirect, e.direct, mode, clients, d, nil))
	if e.bouncer != "" {
		w.variants = append(w.variants, pgbenchVariant(e, vBouncer, e.bouncer, mode, clients, d, pidCPU(e.bouncerPID)))
	}
	w.variants = append(w.variants, pgbenchVariant(e, vPgcloak, e.proxy, mode, clients, d, selfCPU))
	return w
}

func pgbenchVariant(e *env, name, addr, mode string, clients int, d time.Duration, cpu cpuClock) variant {
	return variant{name: name, cpu: cpu, run: func(ctx context.Context) (measurement, error) {
		return pgbenchRun(ctx, e, addr, mode, "", clients, d)
	}}
}

func scriptVariant(e *env, name, addr, table string, clients int, cpu cpuClock) variant {
	return variant{name: name, cpu: cpu, run: func(ctx context.Context) (measurement, error) {
		script, err := pointReadScript(e.scriptDir, table, e.o.rows)
		if err != nil {
			return measurement{}, err
		}
		return pgbenchRun(ctx, e, addr, "simple", script, clients, e.o.scalingDuration)
	}}
}

// goWorkload is a Go-driven workload on bench_enc through pgcloak against
// bench_plain through pgcloak and directly.
func goWorkload(e *env, name, op string) workload {
	return encWorkload(e, name, "tx/s", e.o.clients, "bench_plain", "bench_enc",
		func(name, addr, table string, cpu cpuClock) variant { return goVariant(e, name, addr, table, op, cpu) })
}

// encWorkload is the encrypted-workload comparison: the plaintext table
// directly and through pgcloak, and the encrypted table through pgcloak
// (this process's CPU charged to the pgcloak variants).
func encWorkload(e *env, name, unit string, clients int, plain, enc string, v func(name, addr, table string, cpu cpuClock) variant) workload {
	return workload{
		name: name, group: groupEncrypted, unit: unit, clients: clients, ratios: encRatios,
		variants: []variant{
			v(vDirectPlain, e.direct, plain, nil),
			v(vPgcloakPlain, e.proxy, plain, selfCPU),
			v(vPgcloakEnc, e.proxy, enc, selfCPU),
		},
	}
}

func goVariant(e *env, name, addr, table, op string, cpu cpuClock) variant {
	return variant{name: name, cpu: cpu, run: func(ctx context.Context) (measurement, error) {
		next, ok := e.nextID[table]
		if !ok {
			next = int64(e.o.rows) + 1_000_000
		}
		res, err := runChild(ctx, driveSpec{
			Op: op, DSN: e.dsn(addr), Table: table, Clients: e.o.clients,
			Duration: e.o.duration, Rows: e.o.rows, NextID: next,
		})
		if err != nil {
			return measurement{}, err
		}
		e.nextID[table] = res.NextID
		return measurement{
			value: float64(res.Ops) / res.Seconds, ops: res.Ops, seconds: res.Seconds,
			p50Ms: ms(res.P50), p99Ms: ms(res.P99),
		}, nil
	}}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// copyWorkload is COPY of -copyrows rows, one client, on bench_copy_enc
// through pgcloak against bench_copy_plain through pgcloak and directly.
func copyWorkload(e *env, name, op string) workload {
	return encWorkload(e, name, "rows/s", 1, "bench_copy_plain", "bench_copy_enc",
		func(name, addr, table string, cpu cpuClock) variant {
			return copyVariant(e, name, addr, table, op, cpu)
		})
}

func copyVariant(e *env, name, addr, table, op string, cpu cpuClock) variant {
	return variant{name: name, cpu: cpu, run: func(ctx context.Context) (measurement, error) {
		res, err := runChild(ctx, driveSpec{Op: op, DSN: e.dsn(addr), Table: table, CopyRows: e.o.copyRows})
		if err != nil {
			return measurement{}, err
		}
		if res.Ops != int64(e.o.copyRows) {
			return measurement{}, fmt.Errorf("COPY on %s moved %d rows, want %d", table, res.Ops, e.o.copyRows)
		}
		return measurement{value: float64(res.Ops) / res.Seconds, ops: res.Ops, seconds: res.Seconds}, nil
	}}
}

// fillCopyTables loads -copyrows rows into the COPY tables unless the COPY
// FROM workload left them there (bench_copy_enc through pgcloak).
func fillCopyTables(ctx context.Context, e *env) error {
	for table, addr := range map[string]string{"bench_copy_plain": e.direct, "bench_copy_enc": e.proxy} {
		n, err := countRows(ctx, e, table)
		if err != nil {
			return err
		}
		if n == int64(e.o.copyRows) {
			continue
		}
		fmt.Printf("loading %d rows into %s…\n", e.o.copyRows, table)
		if _, err := runChild(ctx, driveSpec{Op: opCopyIn, DSN: e.dsn(addr), Table: table, CopyRows: e.o.copyRows}); err != nil {
			return err
		}
	}
	return nil
}

func countRows(ctx context.Context, e *env, table string) (int64, error) {
	c, err := pgx.Connect(ctx, e.dsn(e.direct))
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var n int64
	err = c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
