package proxy_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/policy"
)

// attackOrderedPolicy has an ordered key per type (an ordered key's
// columns share one type); d and d2 share od.
const attackOrderedPolicy = `
policy:
  keys:
    - {name: o, kind: ordered}
    - {name: oi8, kind: ordered}
    - {name: of8, kind: ordered}
    - {name: on, kind: ordered}
    - {name: od, kind: ordered}
    - {name: ots, kind: ordered}
    - {name: otz, kind: ordered}
    - {name: otx, kind: ordered}
    - {name: o2, kind: ordered}
  columns:
    - {table: public.t, column: i4, key: o, type: int4}
    - {table: public.t, column: i8, key: oi8, type: int8}
    - {table: public.t, column: f8, key: of8, type: float8}
    - {table: public.t, column: n, key: on, type: numeric}
    - {table: public.t, column: d, key: od, type: date}
    - {table: public.t, column: ts, key: ots, type: timestamp}
    - {table: public.t, column: tz, key: otz, type: timestamptz}
    - {table: public.t, column: tx, key: otx, type: text}
    - {table: public.t, column: d2, key: od, type: date}
    - {table: public.t, column: j4, key: o2, type: int4}
  roles:
    - {role: doctor, read: [o, oi8, of8, on, od, ots, otz, otx, o2], write: [o, oi8, of8, on, od, ots, otz, otx, o2]}
    - {role: billing, read: [], write: [o, oi8, of8, on, od, ots, otz, otx, o2], on_denied: "null"}
`

const attackOrderedSchema = `
CREATE TABLE public.t (id int PRIMARY KEY, i4 bytea, i8 bytea, f8 bytea, n bytea, d bytea, ts bytea, tz bytea, tx bytea, d2 bytea, j4 bytea);
CREATE TABLE public.tp (id int PRIMARY KEY, i4 int4, i8 int8, f8 float8, n numeric, d date, ts timestamp, tz timestamptz, tx text COLLATE "C", d2 date, j4 int4);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
`

var attackRows = [][]string{
	// i4, i8, f8, n, d, ts, tz, tx
	{"1", "1", "1", "1", "2000-01-01", "2000-01-01 00:00", "2000-01-01 00:00+00", "a"},
	{"2", "-5", "-0", "1.5", "2000-01-02", "2000-01-01 12:00", "2000-01-01 12:00+00", "B"},
	{"-3", "9223372036854775807", "NaN", "NaN", "infinity", "infinity", "infinity", ""},
	{"100", "-9223372036854775808", "-Infinity", "-1.23", "-infinity", "-infinity", "-infinity", "ab"},
	{"7", "7", "Infinity", "-1.2", "1999-12-31", "1999-12-31 23:59:59.999999", "1999-12-31 23:00-05", "é"},
	{"0", "0", "0", "0.000", "2000-01-01", "2000-01-01 00:00:00.000001", "2000-01-01 05:00+05", "a "},
	{"-2147483648", "2", "1.5", "100000000000000000000.0001", "0001-01-01 BC", "2000-06-30 10:00", "2000-06-30 10:00+02", "A"},
	{"2147483647", "3", "2.5", "-0.0001", "2000-02-29", "1970-01-01", "1970-01-01 00:00+00", "z"},
}

func attackFill(t *testing.T, h *harness) {
	t.Helper()
	ctx := ctxT(t)
	conn := h.connect("doctor")
	direct := h.direct()
	for i, r := range attackRows {
		args := []any{i + 1}
		for _, v := range r {
			args = append(args, v)
		}
		args = append(args, r[4], r[0])
		q := `INSERT INTO %s (id, i4, i8, f8, n, d, ts, tz, tx, d2, j4) VALUES ($1, $2::int4, $3::int8, $4::float8, $5::numeric, $6::date, $7::timestamp, $8::timestamptz, $9::text, $10::date, $11::int4)`
		if _, err := conn.Exec(ctx, fmt.Sprintf(q, "t"), args...); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		if _, err := direct.Exec(ctx, fmt.Sprintf(q, "tp"), args...); err != nil {
			t.Fatalf("insert plain %d: %v", i, err)
		}
	}
	// a row of NULLs
	if _, err := conn.Exec(ctx, `INSERT INTO t (id) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, `INSERT INTO tp (id) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
}

// refusedWith reports whether err is a PostgreSQL error with code.
func refusedWith(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// TestOrderedAttackSortedGroupingRevealsOrderWithoutReadGrant: billing has
// no read grant on key o, so ORDER BY, ranges and min/max on i4 are refused
// (42501). But PARTITION BY, DISTINCT ON and a sorted GROUP BY make
// PostgreSQL sort the ciphertexts, and under an ordered key that byte order
// is the plaintext order: the rows come back ranked by the secret column.
func TestOrderedAttackSortedGroupingRevealsOrderWithoutReadGrant(t *testing.T) {
	h := newHarness(t, attackOrderedPolicy, attackOrderedSchema)
	attackFill(t, h)
	direct := h.direct()
	// The secret ranking of the rows by i4 (NULLs last, as in the sort).
	secret, err := rowsText(t, direct, `SELECT id FROM tp ORDER BY i4`)
	if err != nil {
		t.Fatal(err)
	}
	billing := h.connect("billing")
	if _, err := rowsText(t, billing, `SELECT id FROM t ORDER BY i4`); !refusedWith(err, "42501") {
		t.Fatalf("ORDER BY as billing: %v, want 42501", err)
	}
	for _, set := range []string{`SET enable_hashagg = off`, `SET enable_hashjoin = off`, `SET enable_nestloop = off`} {
		if _, err := billing.Exec(ctxT(t), set); err != nil {
			t.Fatal(err)
		}
	}
	for _, sql := range []string{
		`SELECT id, row_number() OVER (PARTITION BY i4) FROM t`,
		`SELECT DISTINCT ON (i4) id FROM t`,
		`SELECT min(id) FROM t GROUP BY i4`,
		// An equality join, planned as a merge join, comes out in i4 order.
		`SELECT a.id FROM t a JOIN t b ON a.i4 = b.i4 UNION ALL SELECT 99`,
		// UNION sorted by (i4, id).
		`SELECT id FROM (SELECT i4, id FROM t UNION SELECT i4, id FROM t) s`,
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			got, err := rowsText(t, billing, sql, mode)
			if refusedWith(err, "42501") {
				continue
			}
			got = firstColumn(got)
			if got == secret {
				t.Errorf("billing (no read grant on key o), mode %v: %s\nreturns the ids ranked by the plaintext of i4 (%q), err %v; want 42501", mode, sql, strings.ReplaceAll(got, "\n", " "), err)
			} else {
				t.Errorf("billing (no read grant on key o), mode %v: %s: not refused (%q, %v); want 42501", mode, sql, got, err)
			}
		}
	}
}

// TestOrderedAttackWithinGroupAggregateReturnsCiphertext: an ordered-set
// aggregate sorted by an ordered column returns one of its values; the
// proxy passes the stored bytes through instead of decrypting them (or
// refusing), so the client silently gets ciphertext for a value.
func TestOrderedAttackWithinGroupAggregateReturnsCiphertext(t *testing.T) {
	h := newHarness(t, attackOrderedPolicy, attackOrderedSchema)
	attackFill(t, h)
	direct := h.direct()
	doctor := h.connect("doctor")
	for _, q := range []string{
		`SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY i4) FROM %s`,
		`SELECT mode() WITHIN GROUP (ORDER BY tx) FROM %s WHERE id = 1`,
	} {
		want, err := rowsText(t, direct, strings.ReplaceAll(q, "%s", "tp"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rowsText(t, doctor, strings.ReplaceAll(q, "%s", "t"))
		if refusedWith(err, "0A000") {
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s through the proxy:\n got %.120q… (%v)\nwant %q (or a 0A000 refusal)", q, got, err, want)
		}
	}
}

// TestOrderedAttackTextBoundsAmplification: each plaintext bit of an
// ordered text costs a 4-byte term block, and each IN item / comparison
// becomes two hex-rendered bounds per key version, so a 200 KB query makes
// the proxy allocate hundreds of MB and spend seconds of CPU, and send
// PostgreSQL a query ~250 times larger. Any role with the read grant can
// do it; the message size limit (1 MB) still allows ~1.4 GB per query.
func TestOrderedAttackTextBoundsAmplification(t *testing.T) {
	h := newHarness(t, attackOrderedPolicy, attackOrderedSchema)
	conn := h.connect("doctor")
	items := make([]string, 20)
	for i := range items {
		items[i] = "'" + strings.Repeat(string(rune('a'+i)), 10000) + "'"
	}
	sql := `SELECT count(*) FROM t WHERE tx IN (` + strings.Join(items, ",") + `)`
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	start := time.Now()
	_, err := conn.Exec(ctxT(t), sql, pgx.QueryExecModeSimpleProtocol)
	took := time.Since(start)
	t.Logf("20 constants of 10,000 bytes: %v in %v", err, took)
	runtime.ReadMemStats(&b)
	alloc := b.TotalAlloc - a.TotalAlloc
	if err == nil && alloc > 50*uint64(len(sql)) {
		t.Errorf("a %d-byte query with ordered text constants was accepted and cost %.0f MB of allocation (%.0fx its size) and %v; want a limit on ordered text length / total bound size (refuse 54000/0A000)",
			len(sql), float64(alloc)/1e6, float64(alloc)/float64(len(sql)), took)
	}
	if !refusedWith(err, "54000") {
		t.Errorf("10,000-byte ordered text constants: %v, want 54000", err)
	}
	// Values within the per-value limit, but so many that their bounds
	// would pass 16 MB: refused as a whole.
	items = make([]string, 900)
	for i := range items {
		items[i] = fmt.Sprintf("'%0900d'", i)
	}
	start = time.Now()
	_, err = conn.Exec(ctxT(t), `SELECT count(*) FROM t WHERE tx IN (`+strings.Join(items, ",")+`)`, pgx.QueryExecModeSimpleProtocol)
	if !refusedWith(err, "54000") {
		t.Errorf("900 constants of 900 bytes: %v, want 54000", err)
	}
	t.Logf("900 constants of 900 bytes refused in %v", time.Since(start))
	var one int
	if err := h.connect("doctor").QueryRow(ctxT(t), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("the proxy no longer serves: %v", err)
	}
}

// TestOrderedAttackCiphertextNotBoundToType: an ordered key encrypts one
// type only (the policy refuses more), so an int4 ciphertext a DBA copies
// into a date column (or int8 into timestamp) is under another key and
// does not decrypt there.
func TestOrderedAttackCiphertextNotBoundToType(t *testing.T) {
	h := newHarness(t, attackOrderedPolicy, attackOrderedSchema)
	attackFill(t, h)
	direct := h.direct()
	doctor := h.connect("doctor")
	if _, err := direct.Exec(ctxT(t), `UPDATE t SET d = i4, ts = i8 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	got, err := rowsText(t, doctor, `SELECT d, ts FROM t WHERE id = 1`)
	if err == nil {
		t.Errorf("an int4 and an int8 ciphertext moved by the DBA into date and timestamp columns decrypt without error: %q; want a decryption failure (bind the logical type into the AD and the PRF input)", got)
	}
}

// firstColumn keeps the first value of each line of rowsText's output.
func firstColumn(rows string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(rows, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			b.WriteString(f[0] + "\n")
		}
	}
	return b.String()
}

// TestOrderedAttackTwoColumnComparisonIgnoresMigrationOfTheOther: while
// `pgcloak encrypt` migrates events.label (plaintext text forms beside
// ciphertexts), ranges and sorts on label are refused (55000). But
// comparing another ordered column of the same key with it, written with
// the other column first (a.pay < b.label), only records pay as relying
// on the order: the migration of label is not checked, and PostgreSQL
// compares ciphertexts with text forms, silently returning wrong rows.
func TestOrderedAttackTwoColumnComparisonIgnoresMigrationOfTheOther(t *testing.T) {
	h := newHarness(t, orderedPolicy, orderedSchema+migTable+`
INSERT INTO pgcloak.column_migrations VALUES ('public', 'events', 'label', 'encrypt', 'pay', now(), NULL);`)
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	direct := h.direct()
	for i, v := range []string{"-5", "3", "10", "250.5"} {
		if _, err := doctor.Exec(ctx, `INSERT INTO events (id, pay) VALUES ($1, $2::numeric)`, i+1, v); err != nil {
			t.Fatal(err)
		}
		// label still holds its text form, as encrypt leaves rows it has not reached yet.
		if _, err := direct.Exec(ctx, `UPDATE events SET label = convert_to($2, 'UTF8') WHERE id = $1`, i+1, v); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Exec(ctx, `INSERT INTO events_plain (id, pay, label) VALUES ($1, $2::numeric, $2::numeric)`, i+1, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rowsText(t, doctor, `SELECT id FROM events WHERE label < 5`); !refusedWith(err, "55000") {
		t.Fatalf("a range on the migrating column: %v, want 55000", err)
	}
	const q = `SELECT a.id, b.id FROM %s a JOIN %s b ON a.pay < b.label ORDER BY 1, 2`
	want, err := rowsText(t, direct, strings.ReplaceAll(q, "%s", "events_plain"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		got, err := rowsText(t, doctor, strings.ReplaceAll(q, "%s", "events"), mode)
		if refusedWith(err, "55000") {
			continue
		}
		if err != nil || got != want {
			t.Errorf("mode %v: %s while label is being migrated:\n got %q (%v)\nwant %q (or 55000)", mode, q, got, err, want)
		}
	}
}

// TestOrderedAttackCiphertextOnDeniedRevealsOrder: a role whose denied
// reads return the raw bytea (on_denied: ciphertext) receives ordered
// ciphertexts, whose byte order is the plaintext order: it ranks every row
// by the column (and learns first-differing-bit distances) without the
// read grant that ORDER BY and ranges require. Either refuse
// on_denied: ciphertext for ordered keys (policy check) or document it.
func TestOrderedAttackCiphertextOnDeniedRevealsOrder(t *testing.T) {
	pol := strings.Replace(attackOrderedPolicy, `    - {role: billing,`, `    - {role: archivist, read: [], on_denied: ciphertext}
    - {role: billing,`, 1)
	_, err := policy.Load([]byte(pol))
	if err == nil || !strings.Contains(err.Error(), `role "archivist": on_denied: ciphertext would show it ordered key`) {
		t.Fatalf("a role shown ordered ciphertexts without the read grant: policy.Load = %v, want it refused", err)
	}
}
