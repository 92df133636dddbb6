package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy"
)

const orderedPolicy = `
policy:
  keys:
    - {name: when, kind: ordered}
    - {name: pay, kind: ordered}
  columns:
    - {table: public.events, column: at, key: when, type: timestamptz}
    - {table: public.events, column: pay, key: pay, type: numeric}
    - {table: public.events, column: label, key: pay, type: numeric}
  roles:
    - {role: doctor, read: [when, pay], write: [when, pay]}
    - {role: billing, read: [], write: [], on_denied: "null"}
`

const orderedSchema = `
CREATE TABLE public.events (id int PRIMARY KEY, at bytea, pay bytea, label bytea);
CREATE INDEX events_at ON public.events (at);
CREATE TABLE public.events_plain (id int PRIMARY KEY, at timestamptz, pay numeric, label numeric);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
`

// orderedRows fills events through the proxy and events_plain directly
// with the same values.
func orderedRows(t *testing.T, h *harness, n int) {
	t.Helper()
	ctx := ctxT(t)
	conn := h.connect("doctor")
	direct := h.direct()
	for i := 1; i <= n; i++ {
		var at, pay any
		if i%7 != 0 {
			at = fmt.Sprintf("%d-%02d-%02d %02d:00:00+00", 1990+i%40, 1+i%12, 1+i%28, i%24)
		}
		if i%11 != 0 {
			pay = fmt.Sprintf("%d.%d", (i*7919)%2000-1000, i%100)
		}
		if i%3 == 0 {
			// A literal the proxy renders.
			sql := fmt.Sprintf(`INSERT INTO events (id, at, pay) VALUES (%d, %s, %s)`, i, sqlLit(at), sqlLit(pay))
			if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		} else if _, err := conn.Exec(ctx, `INSERT INTO events (id, at, pay) VALUES ($1, $2::timestamptz, $3::numeric)`, i, at, pay); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Exec(ctx, `INSERT INTO events_plain (id, at, pay) VALUES ($1, $2::timestamptz, $3::numeric)`, i, at, pay); err != nil {
			t.Fatal(err)
		}
	}
}

func sqlLit(v any) string {
	if v == nil {
		return "NULL"
	}
	return "'" + v.(string) + "'"
}

// rowsText runs sql and returns its rows as text, one line per row.
func rowsText(t *testing.T, conn *pgx.Conn, sql string, args ...any) (string, error) {
	t.Helper()
	rows, err := conn.Query(ctxT(t), sql, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return "", err
		}
		fmt.Fprintln(&b, vals...)
	}
	return b.String(), rows.Err()
}

func TestOrderedColumnsAnswerLikeTheirPlaintextTwin(t *testing.T) {
	h := newHarness(t, orderedPolicy, orderedSchema)
	orderedRows(t, h, 300)
	conn := h.connect("doctor")
	direct := h.direct()
	queries := []struct {
		sql  string
		args []any
	}{
		{`SELECT id, at FROM %s WHERE at < $1 ORDER BY at, id`, []any{"2001-06-01 00:00:00+00"}},
		{`SELECT id, at FROM %s WHERE at >= '2001-06-01 00:00:00+00' AND at <= $1 ORDER BY at DESC NULLS FIRST, id LIMIT 17 OFFSET 3`, []any{"2010-01-01 00:00:00+00"}},
		{`SELECT id FROM %s WHERE at BETWEEN SYMMETRIC $1 AND '1995-01-01' ORDER BY id`, []any{"1999-03-04 05:00:00+00"}},
		{`SELECT id FROM %s WHERE at NOT BETWEEN $1 AND $2 ORDER BY id`, []any{"1995-01-01 00:00:00+00", "2015-01-01 00:00:00+00"}},
		{`SELECT id, pay FROM %s WHERE pay > -10.5 AND pay <> $1 ORDER BY pay NULLS FIRST, id`, []any{"100.5"}},
		{`SELECT id FROM %s WHERE pay IN (919.10, $1, NULL) OR pay = -241.6 ORDER BY id`, []any{"838.2"}},
		{`SELECT id FROM %s WHERE pay IS DISTINCT FROM $1 AND id < 40 ORDER BY id`, []any{nil}},
		{`SELECT id FROM %s WHERE at IS NOT DISTINCT FROM $1 ORDER BY id`, []any{"1991-02-02 01:00:00+00"}},
		{`SELECT min(at), max(at), min(pay) FILTER (WHERE id > 100), max(pay), count(pay) FROM %s`, nil},
		{`SELECT pay, count(*) FROM %s GROUP BY pay ORDER BY pay DESC LIMIT 10`, nil},
		{`SELECT DISTINCT at FROM %s WHERE at < '1993-01-01' ORDER BY 1`, nil},
		{`SELECT id, rank() OVER (ORDER BY at DESC, id) FROM %s ORDER BY id LIMIT 30`, nil},
		{`SELECT a.id, b.id FROM %[1]s a JOIN %[1]s b ON a.at < b.at AND b.id = a.id + 1 ORDER BY a.id`, nil},
	}
	for _, q := range queries {
		enc := fmt.Sprintf(q.sql, "events")
		plain := fmt.Sprintf(q.sql, "events_plain")
		want, err := rowsText(t, direct, plain, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", plain, err)
		}
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			got, err := rowsText(t, conn, enc, append([]any{mode}, q.args...)...)
			if err != nil {
				t.Fatalf("%s (mode %v): %v", enc, mode, err)
			}
			if got != want {
				t.Errorf("%s (mode %v):\n got: %s\nwant: %s", enc, mode, got, want)
			}
		}
		if want == "" {
			t.Errorf("%s returns no rows: the comparison proves nothing", plain)
		}
	}
}

func TestOrderedRangeUsesTheIndexAndNeedsTheReadGrant(t *testing.T) {
	h := newHarness(t, orderedPolicy, orderedSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "at"}, pgx.CopyFromSlice(20000, func(i int) ([]any, error) {
		return []any{i, base.Add(time.Duration(i) * time.Hour)}, nil
	}))
	if err != nil || n != 20000 {
		t.Fatalf("COPY: %d rows, %v", n, err)
	}
	h.pg.ExecAdmin(t, `ANALYZE events`)
	plan, err := rowsText(t, conn, `EXPLAIN SELECT id FROM events WHERE at >= $1 AND at < $2 ORDER BY at LIMIT 20`, "2000-01-01 00:00:00+00", "2000-02-01 00:00:00+00")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "Index Scan using events_at") {
		t.Errorf("EXPLAIN of a range on the indexed ordered column:\n%s", plan)
	}
	billing := h.connect("billing")
	for _, sql := range []string{`SELECT id FROM events WHERE at < '2000-01-01'`, `SELECT id FROM events ORDER BY at`, `SELECT max(pay) FROM events`} {
		_, err := rowsText(t, billing, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("billing: %s: %v, want 42501", sql, err)
		}
	}
}

// TestOrderedSearchesSpanKeyVersionsAfterARotation: after a rotation,
// rows under the old and the new version are found by ranges; sorting,
// which cannot span versions, is refused with 55000; a statement prepared
// before is refused once with "prepare it again".
func TestOrderedSearchesSpanKeyVersionsAfterARotation(t *testing.T) {
	var kr *keymap.Keyring
	h := newHarness(t, orderedPolicy, orderedSchema, func(c *proxy.Config) { kr = c.Keyring })
	orderedRows(t, h, 60)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	direct := h.direct()
	const ranged = `SELECT id FROM %s WHERE at >= $1 AND at < '2010-01-01' AND pay BETWEEN -500 AND $2 ORDER BY id`
	args := []any{"1995-01-01 00:00:00+00", "500"}
	before, err := rowsText(t, conn, fmt.Sprintf(ranged, "events"), args...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rowsText(t, conn, `SELECT id FROM events ORDER BY at LIMIT 3`); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"when", "pay"} {
		if err := h.store.Rotate(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		kr.Invalidate(key)
	}
	// New rows go in under the new versions, beside the old ones.
	for i := 1000; i < 1060; i++ {
		at, pay := fmt.Sprintf("%d-03-04 05:06:07+00", 1990+i%30), fmt.Sprintf("%d.25", i%1000-480)
		if _, err := conn.Exec(ctx, `INSERT INTO events (id, at, pay) VALUES ($1, $2::timestamptz, $3::numeric)`, i, at, pay); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Exec(ctx, `INSERT INTO events_plain (id, at, pay) VALUES ($1, $2::timestamptz, $3::numeric)`, i, at, pay); err != nil {
			t.Fatal(err)
		}
	}
	want, err := rowsText(t, direct, fmt.Sprintf(ranged, "events_plain"), args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(want, before) || want == before {
		t.Fatalf("the new rows should add to the old ones' matches:\nbefore %q\nafter %q", before, want)
	}
	var pe *pgconn.PgError
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		got, err := rowsText(t, conn, fmt.Sprintf(ranged, "events"), append([]any{mode}, args...)...)
		if errors.As(err, &pe) && pe.Code == "0A000" && strings.Contains(pe.Message, "prepare it again") {
			// pgx's cached statement was shaped for one version.
			got, err = rowsText(t, conn, fmt.Sprintf(ranged, "events"), append([]any{mode}, args...)...)
		}
		if err != nil || got != want {
			t.Errorf("mode %v after the rotation: %v\n got: %s\nwant: %s", mode, err, got, want)
		}
	}
	for _, sql := range []string{`SELECT id FROM events ORDER BY at LIMIT 3`, `SELECT max(pay) FROM events`, `SELECT 1 FROM events a JOIN events b ON a.at < b.at`} {
		_, err := rowsText(t, conn, sql)
		if errors.As(err, &pe) && strings.Contains(pe.Message, "prepare it again") {
			_, err = rowsText(t, conn, sql) // prepared before the rotation
		}
		if !errors.As(err, &pe) || pe.Code != "55000" {
			t.Errorf("%s with two key versions: %v, want 55000", sql, err)
		}
	}
}
