package proxy_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy"
)

// TestOrderedDifferential is the differential test of ordered keys: for
// every type an ordered key supports, odRows random values are stored in
// an encrypted ordered column o_<type>.v through pgcloak and in a plain
// twin p_<type>.v directly, and every comparison, sort, grouping and
// aggregate the ordered layout supports must give, through pgcloak, the
// rows PostgreSQL gives on the twin, in the same order, byte for byte.
//
// The values (odValues, seeded: the seed is logged, and
// PGCLOAK_ORDERED_SEED replays a run) come from a pool, so they repeat,
// with about 5% NULL and each type's edge values (extreme integers, float8
// NaN, ±Infinity, subnormals, numeric NaN, ±Infinity, huge and tiny
// weights, many digits, ±infinity and the ends of the range of dates and
// timestamps, timestamptz written with many offsets, empty, multibyte and
// shared-prefix text). The encrypted rows arrive through every input
// path: binary COPY (pgx CopyFrom) for most, text COPY, and INSERT with
// literals in a simple Query and with text and binary parameters.
//
// The queries, each compared on both sides:
//
//   - predicates v op c for op in <, <=, >, >=, =, <> (and c op v), IS
//     [NOT] DISTINCT FROM, [NOT] BETWEEN [SYMMETRIC], [NOT] IN (…, NULL),
//     for constants c present in the data, absent, edges, other spellings,
//     values the type rejects, and NULL; each with c as a literal in a
//     simple Query and in the extended protocol, and as a parameter in
//     text (declared as the type and as unknown) and in binary. The
//     matching rows are compared through a fingerprint of their ids,
//     computed by PostgreSQL to keep the transfer small: every predicate
//     in a batch of 25 evaluated in one scan (aggregate FILTERs, odBatch),
//     and one in every few (and every one with a rejected constant) alone
//     in a WHERE clause, where the index can serve it. A mismatch fetches
//     both id lists for the report;
//   - ORDER BY v ASC and DESC, NULLS FIRST and LAST, with a unique
//     tiebreaker, the whole table and with LIMIT/OFFSET; ORDER BY under
//     a range predicate; GROUP BY v; DISTINCT v; min/max/count, with
//     FILTER and per group; window and aggregate ORDER BY; joins of the
//     column with itself on = and <; each result read as text (simple
//     Query and extended) and as binary.
//
// Documented limits kept out of the data: numeric values are written
// without trailing fractional zeros, so values equal in PostgreSQL have
// one display scale (1.5 and 1.50 would be separate groups in GROUP BY,
// DISTINCT and joins through pgcloak); float8 zero is only ever stored as
// -0 (-0 and 0 would be separate groups too). Constants with other scales
// and +0 are still compared, where the order makes them equal. Text is
// compared with the twin in COLLATE "C". Both sessions use the same
// TimeZone (odTimeZone).
//
// Under the race detector the number of constants and pairs is smaller
// (the rows are not). Text, whose ciphertexts are long, gets fewer
// pairs.
//
// Every divergence is reported as
//
//	<type> <mode> <sql> [params]: <what>: PostgreSQL <x> | pgcloak <y>
//
// Run it with
//
//	PGCLOAK_TEST_REQUIRE=1 go test ./proxy -run TestOrderedDifferential -count=1 -timeout 30m
func TestOrderedDifferential(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PGCLOAK_ORDERED_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("PGCLOAK_ORDERED_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with PGCLOAK_ORDERED_SEED=%d)", seed, seed)
	types := odTypes()
	quiet := func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h := newHarness(t, odPolicy(types), odSchema(types), quiet)
	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Minute)
	defer cancel()
	settings := "SET TimeZone = '" + odTimeZone + "'"
	px := &odSide{name: "pgcloak", dsn: h.dsn("doctor"), settings: settings}
	dx := &odSide{name: "PostgreSQL", dsn: h.pg.DSN(), settings: settings}
	defer px.close()
	defer dx.close()
	total := 0
	for i, ty := range types {
		t.Run(ty.name, func(t *testing.T) {
			start := time.Now()
			r := &odRun{t: t, ctx: ctx, h: h, px: px, dx: dx, ty: ty, rng: rand.New(rand.NewSource(seed + int64(i))), plainCache: map[string]odResult{}, names: map[string]bool{}}
			phase := time.Now()
			lap := func(what string) {
				t.Logf("%s: %s %v", ty.name, what, time.Since(phase).Round(time.Millisecond))
				phase = time.Now()
			}
			r.load()
			lap("load")
			r.checkAtRest()
			lap("at rest")
			r.predicates()
			lap("predicates")
			r.orderings()
			lap("orderings")
			t.Logf("%s: %d rows, %d predicates, %d queries through pgcloak, %d divergences, %v", ty.name, ty.rows, r.predicateCount, r.queries, r.diverged, time.Since(start).Round(time.Millisecond))
			total += r.diverged
		})
	}
	if total > 0 {
		t.Errorf("%d divergences in all (seed %d)", total, seed)
	}
}

// odTimeZone is the TimeZone of both sessions: one with DST and, before
// 1883, a local mean time offset in seconds.
const odTimeZone = "America/New_York"

// odRows is how many values each type's table holds.
const odRows = 100_000

// odMaxReports is how many divergences of one type are reported in full.
const odMaxReports = 25

// odType is one ordered logical type and how to make its values.
type odType struct {
	name  string // tables o_<name> (encrypted) and p_<name> (plain)
	typ   string // logical type: the policy's, and the casts'
	plain string // the twin's column type
	oid   uint32
	rows  int
	index bool // a btree index on the encrypted column
	gen   func(r *rand.Rand) string
	// edges are values every table holds.
	edges []string
	// bad are constants the type rejects.
	bad []string
	// alt spells a value another way PostgreSQL reads as equal ("" for
	// none).
	alt func(s string) string
}

func odTypes() []*odType {
	ints := func(name string, oid uint32, bits int, lo, hi int64) *odType {
		return &odType{name: name, typ: name, plain: name, oid: oid, rows: odRows, index: true,
			gen: func(r *rand.Rand) string {
				n := r.Intn(bits) + 1
				v := int64(r.Uint64() >> (64 - n))
				if n == bits && r.Intn(2) == 0 {
					v = -v - 1 // reaches the minimum
				} else if r.Intn(2) == 0 {
					v = -v
				}
				return strconv.FormatInt(v, 10)
			},
			edges: []string{strconv.FormatInt(lo, 10), strconv.FormatInt(hi, 10), strconv.FormatInt(lo+1, 10),
				strconv.FormatInt(hi-1, 10), "0", "-1", "1"},
			bad: []string{strconv.FormatUint(uint64(hi)+1, 10), "1.5", "abc"},
			alt: func(s string) string {
				if strings.HasPrefix(s, "-") {
					return " " + s + " "
				}
				return " +" + s + " "
			},
		}
	}
	return []*odType{
		ints("int2", pgtype.Int2OID, 15, math.MinInt16, math.MaxInt16),
		ints("int4", pgtype.Int4OID, 31, math.MinInt32, math.MaxInt32),
		ints("int8", pgtype.Int8OID, 63, math.MinInt64, math.MaxInt64),
		{name: "float8", typ: "float8", plain: "float8", oid: pgtype.Float8OID, rows: odRows, index: true, gen: odFloat8,
			// Only -0: see the test's comment.
			edges: []string{"NaN", "Infinity", "-Infinity", "-0", "1e+308", "-1e+308", "1.7976931348623157e+308",
				"-1.7976931348623157e+308", "5e-324", "-5e-324", "2.2250738585072014e-308", "1e-310", "1", "-1", "0.1"},
			bad: []string{"1e309", "abc", ""},
			alt: func(s string) string {
				switch s {
				case "NaN", "Infinity", "-Infinity":
					return strings.ToLower(s)
				}
				if strings.ContainsAny(s, "e") {
					return strings.ToUpper(s)
				}
				return s + "e0"
			},
		},
		{name: "numeric", typ: "numeric", plain: "numeric", oid: pgtype.NumericOID, rows: odRows, index: true, gen: odNumeric,
			edges: []string{"NaN", "Infinity", "-Infinity", "0", "1", "-1", "0.00000000000000000001", "-0.00000000000000000001",
				"1" + strings.Repeat("0", 300), "-1" + strings.Repeat("0", 300), "0." + strings.Repeat("0", 200) + "1",
				strings.Repeat("9", 60), "-" + strings.Repeat("9", 30) + "." + strings.Repeat("9", 30)},
			bad: []string{"abc", "1e", ""},
			alt: func(s string) string {
				switch s {
				case "NaN", "Infinity", "-Infinity":
					return strings.ToUpper(s)
				}
				if strings.Contains(s, ".") {
					return s + "000"
				}
				return s + ".0"
			},
		},
		{name: "date", typ: "date", plain: "date", oid: pgtype.DateOID, rows: odRows, index: true, gen: odDate,
			edges: []string{"infinity", "-infinity", "4713-11-24 BC", "5874897-12-31", "2000-01-01", "1970-01-01",
				"0001-01-01", "0001-12-31 BC", "1999-12-31"},
			bad: []string{"5874898-01-01", "4713-11-23 BC", "2023-02-29", "abc"},
			alt: func(s string) string {
				if s == "infinity" || s == "-infinity" {
					return strings.ToUpper(s)
				}
				return ""
			},
		},
		{name: "timestamp", typ: "timestamp", plain: "timestamp", oid: pgtype.TimestampOID, rows: odRows, index: true,
			gen: func(r *rand.Rand) string { return odStamp(r, false) },
			edges: []string{"infinity", "-infinity", "4713-11-24 00:00:00 BC", "294276-12-31 23:59:59.999999",
				"2000-01-01 00:00:00", "1970-01-01 00:00:00", "2000-01-01 00:00:00.000001", "1999-12-31 23:59:59.999999"},
			bad: []string{"294277-01-01 00:00:00", "4713-11-23 23:59:59 BC", "abc"},
			alt: func(s string) string {
				if strings.HasSuffix(s, ":00") && !strings.Contains(s, "BC") && !strings.Contains(s, "infinity") {
					return strings.Replace(s, " ", "T", 1)
				}
				return ""
			},
		},
		{name: "timestamptz", typ: "timestamptz", plain: "timestamptz", oid: pgtype.TimestamptzOID, rows: odRows, index: true,
			gen: func(r *rand.Rand) string { return odStamp(r, true) },
			edges: []string{"infinity", "-infinity", "4713-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999+00",
				"2000-01-01 00:00:00+00", "1970-01-01 00:00:00+00", "1883-11-18 12:03:57-04:56:02", "2024-03-10 02:30:00 America/New_York",
				"2024-11-03 01:30:00-04", "2024-11-03 01:30:00-05"},
			bad: []string{"294277-01-01 00:00:00+00", "4714-11-23 00:00:00+00 BC", "abc"},
			alt: func(s string) string { return "" },
		},
		{name: "text", typ: "text", plain: `text COLLATE "C"`, oid: pgtype.TextOID, rows: odRows, index: true,
			gen:   func(r *rand.Rand) string { return odText(r, 64) },
			edges: odTextEdges(64),
			alt:   func(s string) string { return "" },
		},
		// Long strings: an ordered text value takes about 33 bytes per
		// byte, more than a btree entry holds, so this table has no index
		// and fewer rows.
		{name: "textlong", typ: "text", plain: `text COLLATE "C"`, oid: pgtype.TextOID, rows: 5000,
			gen:   func(r *rand.Rand) string { return odText(r, 300) },
			edges: odTextEdges(300),
			alt:   func(s string) string { return "" },
		},
	}
}

func odFloat8(r *rand.Rand) string {
	var f float64
	switch r.Intn(6) {
	case 0:
		f = math.Float64frombits(r.Uint64())
		if math.IsNaN(f) {
			f = 2.5
		}
	case 1:
		f = float64(r.Intn(4000)-2000) / 8
	case 2:
		f = r.NormFloat64() * 1e6
	case 3:
		f = math.Float64frombits(r.Uint64() & 0x000FFFFFFFFFFFFF) // subnormal
		if r.Intn(2) == 0 {
			f = -f
		}
	case 4:
		f = float64(r.Int63n(1<<53)) * math.Pow(10, float64(r.Intn(40)-20))
	default:
		f = math.Round(r.NormFloat64()*10000) / 100
	}
	if f == 0 {
		return "-0"
	}
	if math.IsInf(f, 0) {
		return odFloat8(r)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func odDigits(r *rand.Rand, n int, lead bool) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.Intn(10))
	}
	if lead && n > 0 && b[0] == '0' {
		b[0] = '1' + byte(r.Intn(9))
	}
	return string(b)
}

// odNumeric makes a numeric in the form PostgreSQL prints it, without
// trailing fractional zeros (see the test's comment).
func odNumeric(r *rand.Rand) string {
	var s string
	switch r.Intn(6) {
	case 0:
		s = odDigits(r, r.Intn(40)+1, true)
	case 1:
		s = odDigits(r, r.Intn(20)+1, true) + "." + odDigits(r, r.Intn(30)+1, false)
	case 2:
		s = "0." + strings.Repeat("0", r.Intn(60)) + odDigits(r, r.Intn(10)+1, true)
	case 3:
		s = odDigits(r, r.Intn(10)+1, true) + strings.Repeat("0", r.Intn(400))
	case 4:
		s = strconv.Itoa(r.Intn(100))
	default:
		s = strconv.Itoa(r.Intn(2000)) + "." + odDigits(r, r.Intn(3)+1, false)
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	if strings.HasPrefix(s, "0") && len(s) > 1 && s[1] != '.' {
		s = strings.TrimLeft(s, "0")
		if s == "" || s[0] == '.' {
			s = "0" + s
		}
	}
	if s != "0" && r.Intn(2) == 0 {
		s = "-" + s
	}
	return s
}

// odCalendar formats t's date as PostgreSQL reads it, BC for years ≤ 0.
func odCalendar(t time.Time) string {
	y, m, d := t.Date()
	if y <= 0 {
		return fmt.Sprintf("%04d-%02d-%02d BC", 1-y, m, d)
	}
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d)
}

var (
	odMinDate = time.Date(-4712, 11, 24, 0, 0, 0, 0, time.UTC)
	odMaxDate = time.Date(5874897, 12, 31, 0, 0, 0, 0, time.UTC)
	odMaxTS   = time.Date(294276, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// odInstant picks a time, mostly near now, sometimes anywhere in
// [lo, hi].
func odInstant(r *rand.Rand, lo, hi time.Time) time.Time {
	var from, to time.Time
	switch p := r.Intn(10); {
	case p < 6:
		from, to = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	case p < 8:
		from, to = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	default:
		from, to = lo, hi
	}
	// Seconds, not a Duration: the range spans more than 292 years.
	return time.Unix(from.Unix()+r.Int63n(to.Unix()-from.Unix()+1), 0).UTC()
}

func odDate(r *rand.Rand) string {
	t := odInstant(r, odMinDate, odMaxDate)
	if t.After(odMaxDate) {
		t = odMaxDate
	}
	return odCalendar(t)
}

var odOffsets = []string{"+00", "-05", "+05:45", "+14", "-12", "+09:30", "-03:30", "+01", "-08", "+05:30:15"}

func odStamp(r *rand.Rand, tz bool) string {
	// A day inside the ends, so that an offset cannot leave the range.
	t := odInstant(r, odMinDate.Add(48*time.Hour), odMaxTS.Add(-48*time.Hour))
	if t.After(odMaxTS) {
		t = odMaxTS.Add(-48 * time.Hour)
	}
	y := t.Year()
	clock := fmt.Sprintf("%02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
	switch r.Intn(3) {
	case 0:
		clock += fmt.Sprintf(".%06d", r.Intn(1000000))
	case 1:
		clock += fmt.Sprintf(".%d", r.Intn(10))
	}
	date := odCalendar(t)
	off := ""
	if tz {
		off = odOffsets[r.Intn(len(odOffsets))]
	}
	if y <= 0 {
		return strings.TrimSuffix(date, " BC") + " " + clock + off + " BC"
	}
	return date + " " + clock + off
}

// odTextPieces are the characters random text is made of: ASCII with
// COPY's special characters, Latin-1 range, CJK, emoji, combining marks.
var odTextPieces = []string{"a", "b", "z", "A", "Z", "0", "9", " ", "~", "-", "_", "'", `\`, "\t", "\n", "\x01", "\x7f",
	"é", "e\u0301", "ü", "ÿ", "\u00a0", "日本", "語", "🎉", "😀", "\U0010FFFF", "ß", "Ω"}

var odTextPrefixes = []string{"", "", "", "common-prefix/", strings.Repeat("a", 30), "日本語のテキスト", "zzz", "A"}

func odText(r *rand.Rand, max int) string {
	var b strings.Builder
	b.WriteString(odTextPrefixes[r.Intn(len(odTextPrefixes))])
	n := r.Intn(12)
	if r.Intn(4) == 0 {
		n = r.Intn(max)
	}
	for b.Len() < max && n > 0 {
		p := odTextPieces[r.Intn(len(odTextPieces))]
		if b.Len()+len(p) > max {
			break
		}
		b.WriteString(p)
		n--
	}
	s := b.String()
	if len(s) > max {
		s = s[:0]
	}
	return s
}

func odTextEdges(max int) []string {
	e := []string{"", " ", "a", "A", "é", "日本", "🎉", "ab", "abc", "abcd", "a ", "a\x01", "\x01", "\u00a0",
		strings.Repeat("z", max), strings.Repeat("a", 30), strings.Repeat("a", 30) + "b", strings.Repeat("a", 29),
		"\U0010FFFF", "\x7f", "~"}
	if max >= 300 {
		e = append(e, strings.Repeat("ab", 150), strings.Repeat("ab", 149)+"a", strings.Repeat("日本", 50))
	}
	return e
}

func odPolicy(types []*odType) string {
	var keys, cols, grants []string
	for _, ty := range types {
		k := "ko_" + ty.name
		keys = append(keys, fmt.Sprintf("    - {name: %s, kind: ordered}", k))
		cols = append(cols, fmt.Sprintf("    - {table: public.o_%s, column: v, key: %s, type: %s}", ty.name, k, ty.typ))
		grants = append(grants, k)
	}
	g := strings.Join(grants, ", ")
	return "policy:\n  keys:\n" + strings.Join(keys, "\n") + "\n  columns:\n" + strings.Join(cols, "\n") +
		"\n  roles:\n    - {role: doctor, read: [" + g + "], write: [" + g + "]}\n"
}

func odSchema(types []*odType) string {
	var b strings.Builder
	for _, ty := range types {
		fmt.Fprintf(&b, "CREATE TABLE public.p_%s (id int PRIMARY KEY, v %s);\n", ty.name, ty.plain)
		fmt.Fprintf(&b, "CREATE TABLE public.o_%s (id int PRIMARY KEY, v bytea);\n", ty.name)
		if ty.index {
			fmt.Fprintf(&b, "CREATE INDEX o_%[1]s_v ON public.o_%[1]s (v);\n", ty.name)
		}
	}
	b.WriteString("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;\n")
	return b.String()
}

// odSide is one connection, directly or through pgcloak, reopened with
// its settings when a statement ends it.
type odSide struct {
	name, dsn, settings string
	conn                *pgconn.PgConn
}

func (s *odSide) close() {
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
}

func (s *odSide) ready(ctx context.Context) error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	c, err := pgconn.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect %s: %w", s.name, err)
	}
	if _, err := c.Exec(ctx, s.settings).ReadAll(); err != nil {
		c.Close(ctx)
		return fmt.Errorf("%s: %s: %w", s.name, s.settings, err)
	}
	s.conn = c
	return nil
}

// odResult is the outcome of one statement.
type odResult struct {
	code, msg string   // code "" on success
	names     []string // the columns' names
	fields    []string // the columns' type OIDs and formats
	rows      [][][]byte
}

// odParam is one parameter as sent.
type odParam struct {
	value  []byte
	oid    uint32
	format int16
}

// run executes sql: in a simple Query when simple, else in the extended
// protocol with params, results in format rf.
func (s *odSide) run(ctx context.Context, simple bool, sql string, params []odParam, rf int16) odResult {
	if err := s.ready(ctx); err != nil {
		return odResult{code: "conn", msg: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var res *pgconn.Result
	var err error
	if simple {
		var all []*pgconn.Result
		all, err = s.conn.Exec(ctx, sql).ReadAll()
		if err == nil && len(all) > 0 {
			res = all[len(all)-1]
		}
	} else {
		vals := make([][]byte, len(params))
		oids := make([]uint32, len(params))
		formats := make([]int16, len(params))
		for i, p := range params {
			vals[i], oids[i], formats[i] = p.value, p.oid, p.format
		}
		res = s.conn.ExecParams(ctx, sql, vals, oids, formats, []int16{rf}).Read()
		err = res.Err
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return odResult{code: pe.Code, msg: pe.Message}
		}
		return odResult{code: "conn", msg: err.Error()}
	}
	out := odResult{rows: res.Rows}
	for _, f := range res.FieldDescriptions {
		out.names = append(out.names, f.Name)
		out.fields = append(out.fields, fmt.Sprintf("%d/%d", f.DataTypeOID, f.Format))
	}
	return out
}

// odRun is one type's tables and queries.
type odRun struct {
	t          *testing.T
	ctx        context.Context
	h          *harness
	px, dx     *odSide
	ty         *odType
	rng        *rand.Rand
	values     []*string // by id: the generated input (nil: NULL)
	text, bin  [][]byte  // by id: the plain value as PostgreSQL sends it, text and binary
	consts     []*odConst
	plainCache map[string]odResult
	queries    int
	diverged   int
	// predicateCount is how many predicates were compared.
	predicateCount int
	// names are the column name divergences reported, reported once.
	names map[string]bool
}

func (r *odRun) fatal(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s: "+format, append([]any{r.ty.name}, args...)...)
}

// diverge reports one divergence (the first odMaxReports in full).
func (r *odRun) diverge(format string, args ...any) {
	r.t.Helper()
	r.diverged++
	if r.diverged <= odMaxReports {
		r.t.Errorf("%s "+format, append([]any{r.ty.name}, args...)...)
	} else if r.diverged == odMaxReports+1 {
		r.t.Errorf("%s: more divergences, not shown", r.ty.name)
	}
}

// odValues draws n values (index 1..n) for ty: a pool with ty's edges and
// random values, picked often (duplicates), fresh values and 5% NULL.
func odValues(r *rand.Rand, ty *odType, n int) []*string {
	pool := append([]string(nil), ty.edges...)
	for len(pool) < n/5 {
		pool = append(pool, ty.gen(r))
	}
	out := make([]*string, n+1)
	for id := 1; id <= n; id++ {
		switch p := r.Float64(); {
		case p < 0.05:
		case p < 0.75:
			v := pool[r.Intn(len(pool))]
			out[id] = &v
		default:
			v := ty.gen(r)
			out[id] = &v
		}
	}
	// Every edge at least once, at a random id.
	for _, e := range ty.edges {
		v := e
		out[1+r.Intn(n)] = &v
	}
	return out
}

// odCopyText escapes s for COPY's text format.
func odCopyText(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s)
}

func odQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// odPath is the input path of the encrypted row id: binary COPY for
// most, text COPY, INSERT with a literal (simple Query), with a text
// parameter, with a binary parameter.
func odPath(id int) string {
	switch id % 20 {
	case 18:
		return "text COPY"
	case 19:
		return [...]string{"literal INSERT", "text parameter INSERT", "binary parameter INSERT"}[(id/20)%3]
	}
	return "binary COPY"
}

func (r *odRun) load() {
	ctx, ty, n := r.ctx, r.ty, r.ty.rows
	r.values = odValues(r.rng, ty, n)
	if err := r.dx.ready(ctx); err != nil {
		r.fatal("%v", err)
	}
	// The twin, directly, in text COPY.
	var buf bytes.Buffer
	for id := 1; id <= n; id++ {
		if v := r.values[id]; v == nil {
			fmt.Fprintf(&buf, "%d\t\\N\n", id)
		} else {
			fmt.Fprintf(&buf, "%d\t%s\n", id, odCopyText(*v))
		}
	}
	if _, err := r.dx.conn.CopyFrom(ctx, &buf, fmt.Sprintf("COPY p_%s (id, v) FROM STDIN", ty.name)); err != nil {
		r.fatal("COPY into the plain twin: %v", err)
	}
	// The values as PostgreSQL sends them.
	r.text, r.bin = make([][]byte, n+1), make([][]byte, n+1)
	for f, dst := range [][][]byte{r.text, r.bin} {
		res := r.dx.run(ctx, false, fmt.Sprintf("SELECT id, v FROM p_%s ORDER BY id", ty.name), nil, int16(f))
		if res.code != "" || len(res.rows) != n {
			r.fatal("reading the twin: %s %s (%d rows)", res.code, res.msg, len(res.rows))
		}
		for _, row := range res.rows {
			id, _ := strconv.Atoi(string(row[0]))
			if f == 1 {
				id = int(int32(uint32(row[0][0])<<24 | uint32(row[0][1])<<16 | uint32(row[0][2])<<8 | uint32(row[0][3])))
			}
			dst[id] = row[1]
		}
	}

	// Binary COPY through pgcloak, from the twin's values read by pgx.
	conn := r.h.connect("doctor")
	if _, err := conn.Exec(ctx, "SET TimeZone = '"+odTimeZone+"'"); err != nil {
		r.fatal("%v", err)
	}
	direct := r.h.direct()
	rows, err := direct.Query(ctx, fmt.Sprintf("SELECT id, v FROM p_%s WHERE id %% 20 < 18 ORDER BY id", ty.name))
	if err != nil {
		r.fatal("%v", err)
	}
	var copyRows [][]any
	for rows.Next() {
		var id int32
		holder := odHolder(ty.typ)
		if err := rows.Scan(&id, holder); err != nil {
			r.fatal("scan twin: %v", err)
		}
		copyRows = append(copyRows, []any{id, holder})
	}
	if err := rows.Err(); err != nil {
		r.fatal("%v", err)
	}
	if got, err := conn.CopyFrom(ctx, pgx.Identifier{"o_" + ty.name}, []string{"id", "v"}, pgx.CopyFromRows(copyRows)); err != nil || int(got) != len(copyRows) {
		r.fatal("binary COPY through pgcloak: %d of %d rows: %v", got, len(copyRows), err)
	}

	// Text COPY through pgcloak, of PostgreSQL's text forms.
	buf.Reset()
	copied := 0
	var literals []string
	textBatch, binBatch := &pgconn.Batch{}, &pgconn.Batch{}
	insert := fmt.Sprintf("INSERT INTO o_%s (id, v) VALUES ($1, $2)", ty.name)
	for id := 1; id <= n; id++ {
		idText := []byte(strconv.Itoa(id))
		switch odPath(id) {
		case "text COPY":
			if r.text[id] == nil {
				fmt.Fprintf(&buf, "%d\t\\N\n", id)
			} else {
				fmt.Fprintf(&buf, "%d\t%s\n", id, odCopyText(string(r.text[id])))
			}
			copied++
		case "literal INSERT":
			// The generated input, not PostgreSQL's output: another
			// spelling of the same value.
			lit := "NULL"
			if r.values[id] != nil {
				lit = odQuote(*r.values[id])
			}
			literals = append(literals, fmt.Sprintf("(%d, %s)", id, lit))
		case "text parameter INSERT":
			var v []byte
			if r.values[id] != nil {
				v = []byte(*r.values[id])
			}
			oid := ty.oid
			if id%40 == 19 {
				oid = 0
			}
			textBatch.ExecParams(insert, [][]byte{idText, v}, []uint32{pgtype.Int4OID, oid}, []int16{0, 0}, nil)
		case "binary parameter INSERT":
			binBatch.ExecParams(insert, [][]byte{idText, r.bin[id]}, []uint32{pgtype.Int4OID, ty.oid}, []int16{0, 1}, nil)
		}
	}
	pc := conn.PgConn()
	if tag, err := pc.CopyFrom(ctx, &buf, fmt.Sprintf("COPY o_%s (id, v) FROM STDIN", ty.name)); err != nil || int(tag.RowsAffected()) != copied {
		r.fatal("text COPY through pgcloak: %v (%v)", tag, err)
	}
	for len(literals) > 0 {
		k := min(len(literals), 50)
		sql := fmt.Sprintf("INSERT INTO o_%s (id, v) VALUES %s", ty.name, strings.Join(literals[:k], ", "))
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			r.fatal("INSERT with literals through pgcloak: %v\n%s", err, odTrunc(sql, 300))
		}
		literals = literals[k:]
	}
	for what, b := range map[string]*pgconn.Batch{"text": textBatch, "binary": binBatch} {
		if _, err := pc.ExecBatch(ctx, b).ReadAll(); err != nil {
			r.fatal("INSERT with %s parameters through pgcloak: %v", what, err)
		}
	}
	r.h.pg.ExecAdmin(r.t, fmt.Sprintf("ANALYZE p_%[1]s; ANALYZE o_%[1]s", ty.name))
}

// odHolder is what pgx scans a plain value of typ into and binary-COPYs
// back unchanged.
func odHolder(typ string) any {
	switch typ {
	case "int2":
		return new(pgtype.Int2)
	case "int4":
		return new(pgtype.Int4)
	case "int8":
		return new(pgtype.Int8)
	case "float8":
		return new(pgtype.Float8)
	case "numeric":
		return new(pgtype.Numeric)
	case "date":
		return new(pgtype.Date)
	case "timestamp":
		return new(pgtype.Timestamp)
	case "timestamptz":
		return new(pgtype.Timestamptz)
	}
	return new(pgtype.Text)
}

// checkAtRest reads the encrypted table directly: every row is there,
// NULL where the twin is, and every other value is an ordered ciphertext
// that is not (and, for longer values, does not contain) the plaintext's
// text or binary form.
func (r *odRun) checkAtRest() {
	ty := r.ty
	res := r.dx.run(r.ctx, false, fmt.Sprintf("SELECT id, v FROM o_%s ORDER BY id", ty.name), nil, 1)
	if res.code != "" {
		r.fatal("reading the encrypted table: %s %s", res.code, res.msg)
	}
	if len(res.rows) != ty.rows {
		r.fatal("the encrypted table has %d rows, want %d", len(res.rows), ty.rows)
	}
	prefix := keymap.OrderedPrefix()
	bad := 0
	for _, row := range res.rows {
		id := int(int32(uint32(row[0][0])<<24 | uint32(row[0][1])<<16 | uint32(row[0][2])<<8 | uint32(row[0][3])))
		v := row[1]
		var problem string
		switch {
		case (v == nil) != (r.text[id] == nil):
			problem = fmt.Sprintf("NULL %v, the twin's NULL %v", v == nil, r.text[id] == nil)
		case v == nil:
		case !bytes.HasPrefix(v, prefix):
			problem = "no ordered prefix"
		case bytes.Equal(v, r.text[id]) || bytes.Equal(v, r.bin[id]):
			problem = "the plaintext"
		case len(r.text[id]) >= 8 && bytes.Contains(v, r.text[id]), len(r.bin[id]) >= 8 && bytes.Contains(v, r.bin[id]):
			problem = "contains the plaintext"
		}
		if problem != "" {
			bad++
			if bad <= 5 {
				r.t.Errorf("%s: stored value of id %d (%s, %s): %s: %s", ty.name, id, odPath(id), odShow(r.text[id], 0), problem, odShow(v, 1))
			}
		}
	}
}

// odConst is a constant compared with the column.
type odConst struct {
	what string // present, absent, edge, alt, bad, NULL
	text string
	null bool
	bin  []byte // binary form; nil when PostgreSQL rejects the text
}

func (c *odConst) literal() string {
	if c.null {
		return "NULL"
	}
	return odQuote(c.text)
}

func (c *odConst) String() string {
	if c.null {
		return "NULL"
	}
	return strconv.Quote(odTrunc(c.text, 60)) + " (" + c.what + ")"
}

// makeConsts picks the constants: NULL, the edges, values of random rows,
// other spellings of some, fresh values (mostly absent) and rejected
// ones; with their binary forms from PostgreSQL.
func (r *odRun) makeConsts(present, fresh int) {
	ty := r.ty
	add := func(what, s string) {
		for _, c := range r.consts {
			if !c.null && c.text == s {
				return
			}
		}
		c := &odConst{what: what, text: s}
		res := r.dx.run(r.ctx, false, "SELECT $1::"+ty.typ, []odParam{{value: []byte(s), oid: ty.oid}}, 1)
		if res.code == "" {
			c.bin = res.rows[0][0]
		} else if what != "bad" {
			r.fatal("constant %q: %s %s", s, res.code, res.msg)
		}
		r.consts = append(r.consts, c)
	}
	r.consts = []*odConst{{what: "NULL", null: true}}
	for _, e := range ty.edges {
		add("edge", e)
	}
	for range present {
		id := 1 + r.rng.Intn(ty.rows)
		if r.text[id] == nil {
			continue
		}
		add("present", string(r.text[id]))
		if a := ty.alt(string(r.text[id])); a != "" && r.rng.Intn(2) == 0 {
			add("alt", a)
		}
	}
	for _, e := range ty.edges[:min(3, len(ty.edges))] {
		if a := ty.alt(e); a != "" {
			add("alt", a)
		}
	}
	for range fresh {
		add("absent", ty.gen(r.rng))
	}
	for _, b := range ty.bad {
		add("bad", b)
	}
}

// odQuery is a statement with constants: {0}, {1}, … in sql stand for
// them, %[1]s for the table.
type odQuery struct {
	sql    string
	consts []*odConst
	// fingerprint: compare the matching ids through their fingerprint.
	fingerprint bool
	// batch are the predicates of an odBatch query.
	batch []odPred
	// textParamOID is the type declared for text parameters (0: unknown),
	// binaryOID for binary ones.
	textParamOID, binaryOID uint32
}

// odMode is one way of sending a query's constants.
type odMode struct {
	name   string
	simple bool
	params int16 // -1: literals; 0: text parameters; 1: binary
	rf     int16
}

// render writes q for table in mode: the SQL and parameters.
func (q *odQuery) render(table string, m odMode) (string, []odParam) {
	tmpl := strings.ReplaceAll(q.sql, "%[1]s", table)
	var b strings.Builder
	var params []odParam
	slot := map[int]int{}
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '{' {
			j := strings.IndexByte(tmpl[i:], '}')
			k, _ := strconv.Atoi(tmpl[i+1 : i+j])
			c := q.consts[k]
			if m.params < 0 {
				b.WriteString(c.literal())
			} else {
				n, ok := slot[k]
				if !ok {
					p := odParam{oid: q.textParamOID, format: m.params}
					if m.params == 1 {
						p.oid = q.binaryOID
					}
					switch {
					case c.null:
					case m.params == 1:
						p.value = c.bin
					default:
						p.value = []byte(c.text)
					}
					params = append(params, p)
					n = len(params)
					slot[k] = n
				}
				fmt.Fprintf(&b, "$%d", n)
			}
			i += j
			continue
		}
		b.WriteByte(tmpl[i])
	}
	return b.String(), params
}

// sendable reports whether m can send q's constants: a constant the type
// rejects has no binary form.
func (q *odQuery) sendable(m odMode) bool {
	if m.params != 1 {
		return true
	}
	for _, c := range q.consts {
		if !c.null && c.bin == nil {
			return false
		}
	}
	return true
}

const odFingerprint = "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(hashint4(id)::int8), 0), coalesce(bit_xor(hashint4(-id)), 0) FROM %[1]s WHERE "

// compare runs q in each mode through pgcloak and against the twin.
func (r *odRun) compare(q *odQuery, modes []odMode) {
	plainTable, encTable := "p_"+r.ty.name, "o_"+r.ty.name
	for _, m := range modes {
		if !q.sendable(m) {
			continue
		}
		// The twin answers the same in every mode: it runs with literals.
		plainSQL, _ := q.render(plainTable, odMode{params: -1})
		key := fmt.Sprint(m.rf, plainSQL)
		want, ok := r.plainCache[key]
		if !ok {
			want = r.dx.run(r.ctx, false, plainSQL, nil, m.rf)
			r.plainCache[key] = want
		}
		sql, params := q.render(encTable, m)
		got := r.px.run(r.ctx, m.simple, sql, params, m.rf)
		r.queries++
		if want.code == "conn" || got.code == "conn" {
			r.fatal("%s %s: PostgreSQL %s | pgcloak %s", m.name, odTrunc(sql, 200), odOutcome(want), odOutcome(got))
		}
		if want.code == "" && got.code == "" && !slices.Equal(want.names, got.names) {
			// Once per statement and names: the rows are still compared.
			k := plainSQL + strings.Join(got.names, ",")
			if !r.names[k] {
				r.names[k] = true
				r.diverge("%s %s: column names: PostgreSQL %s | pgcloak %s", m.name, odTrunc(sql, 200), strings.Join(want.names, ","), strings.Join(got.names, ","))
			}
		}
		if what, pg, pc := odDiff(want, got); what != "" {
			desc := fmt.Sprintf("%s %s", m.name, odTrunc(sql, 400))
			if len(params) > 0 {
				desc += " " + odShowParams(params)
			}
			detail := ""
			if q.batch != nil && want.code == "" && got.code == "" && len(want.rows) == 1 && len(got.rows) == 1 {
				r.batchDiff(q, m, want.rows[0], got.rows[0])
				continue
			}
			if q.fingerprint && want.code == "" && got.code == "" {
				detail = r.idDiff(q, m)
			}
			r.diverge("%s: %s: PostgreSQL %s | pgcloak %s%s", desc, what, pg, pc, detail)
		}
	}
}

// batchDiff reports each predicate of a batch whose fingerprints differ,
// with the ids it matches alone.
func (r *odRun) batchDiff(q *odQuery, m odMode, want, got [][]byte) {
	for j, p := range q.batch {
		if j >= len(want) || j >= len(got) {
			break
		}
		if bytes.Equal(want[j], got[j]) {
			continue
		}
		alone := &odQuery{sql: odFingerprint + p.sql, consts: p.consts, fingerprint: true, textParamOID: q.textParamOID, binaryOID: q.binaryOID}
		sql, params := alone.render("o_"+r.ty.name, m)
		desc := fmt.Sprintf("%s (in a FILTER batch) %s", m.name, odTrunc(sql, 400))
		if len(params) > 0 {
			desc += " " + odShowParams(params)
		}
		r.diverge("%s: matching rows: PostgreSQL fingerprint %s | pgcloak %s%s", desc, want[j], got[j], r.idDiff(alone, m))
	}
}

// idDiff fetches the ids a fingerprinted predicate matches on both sides
// and describes the difference.
func (r *odRun) idDiff(q *odQuery, m odMode) string {
	ids := func(side *odSide, table string, m odMode) map[int]bool {
		fq := *q
		fq.sql = "SELECT id FROM %[1]s WHERE " + strings.TrimPrefix(q.sql, odFingerprint)
		sql, params := fq.render(table, m)
		res := side.run(r.ctx, m.simple, sql, params, 0)
		out := map[int]bool{}
		for _, row := range res.rows {
			id, _ := strconv.Atoi(string(row[0]))
			out[id] = true
		}
		return out
	}
	want := ids(r.dx, "p_"+r.ty.name, odMode{params: -1})
	got := ids(r.px, "o_"+r.ty.name, odMode{simple: m.simple, params: m.params})
	var b strings.Builder
	show := func(label string, a, c map[int]bool) {
		var list []int
		for id := range a {
			if !c[id] {
				list = append(list, id)
			}
		}
		slices.Sort(list)
		if len(list) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n    %d ids %s, e.g.", len(list), label)
		for _, id := range list[:min(len(list), 5)] {
			fmt.Fprintf(&b, " %d=%s", id, odShow(r.text[id], 0))
		}
	}
	show("only PostgreSQL matches", want, got)
	show("only pgcloak matches", got, want)
	return b.String()
}

// odDiff describes how got differs from want ("" when it does not). A
// failure matches a failure with the same SQLSTATE.
func odDiff(want, got odResult) (what, pg, pc string) {
	if want.code != "" || got.code != "" {
		if want.code == got.code {
			return "", "", ""
		}
		return "outcome", odOutcome(want), odOutcome(got)
	}
	if !slices.Equal(want.fields, got.fields) {
		return "columns", strings.Join(want.fields, ","), strings.Join(got.fields, ",")
	}
	for i := 0; i < max(len(want.rows), len(got.rows)); i++ {
		if i >= len(want.rows) || i >= len(got.rows) {
			return fmt.Sprintf("row count (first difference at row %d)", i+1), fmt.Sprint(len(want.rows)), fmt.Sprint(len(got.rows))
		}
		if !slices.EqualFunc(want.rows[i], got.rows[i], func(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }) {
			format := int16(0)
			if strings.HasSuffix(want.fields[0], "/1") {
				format = 1
			}
			return fmt.Sprintf("row %d of %d", i+1, len(want.rows)), odShowRow(want.rows[i], format), odShowRow(got.rows[i], format)
		}
	}
	return "", "", ""
}

func odOutcome(o odResult) string {
	if o.code == "" {
		return fmt.Sprintf("ok (%d rows)", len(o.rows))
	}
	return o.code + " (" + odTrunc(o.msg, 120) + ")"
}

func odShow(v []byte, format int16) string {
	if v == nil {
		return "NULL"
	}
	if format == 1 {
		return `\x` + odTrunc(hex.EncodeToString(v), 80)
	}
	return strconv.Quote(odTrunc(string(v), 80))
}

func odShowRow(row [][]byte, format int16) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = odShow(v, format)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func odShowParams(params []odParam) string {
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = fmt.Sprintf("$%d=%s/oid %d", i+1, odShow(p.value, p.format), p.oid)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func odTrunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var (
	odPredicateModes = []odMode{
		{name: "literal(Q)", simple: true, params: -1},
		{name: "literal(P)", params: -1},
		{name: "text $n", params: 0},
		{name: "binary $n", params: 1},
	}
	odResultModes = []odMode{
		{name: "literal(Q)", simple: true, params: -1},
		{name: "literal(P)/text", params: -1},
		{name: "literal(P)/binary", params: -1, rf: 1},
		{name: "text $n/text", params: 0},
		{name: "text $n/binary", params: 0, rf: 1},
		{name: "binary $n/text", params: 1},
		{name: "binary $n/binary", params: 1, rf: 1},
	}
	odReadModes = []odMode{
		{name: "simple/text", simple: true, params: -1},
		{name: "extended/text", params: -1},
		{name: "extended/binary", params: -1, rf: 1},
	}
)

// odPred is a predicate on v with constants {0}, {1}, ….
type odPred struct {
	sql    string
	consts []*odConst
}

// odRenumber shifts the constants {k} of sql to {k+base}.
func odRenumber(sql string, base int) string {
	var b strings.Builder
	for i := 0; i < len(sql); i++ {
		if sql[i] == '{' {
			j := strings.IndexByte(sql[i:], '}')
			k, _ := strconv.Atoi(sql[i+1 : i+j])
			fmt.Fprintf(&b, "{%d}", k+base)
			i += j
			continue
		}
		b.WriteByte(sql[i])
	}
	return b.String()
}

// odBatch is one scan evaluating many predicates: per predicate a
// fingerprint of the ids it matches in an aggregate FILTER, the sum of
// their hashes plus 2³² per id (so the count is in it too).
func odBatch(preds []odPred) *odQuery {
	q := &odQuery{batch: preds}
	var cols []string
	for _, p := range preds {
		s := odRenumber(p.sql, len(q.consts))
		cols = append(cols, fmt.Sprintf("coalesce(sum(hashint4(id)::int8 + 4294967296) FILTER (WHERE %s), 0)", s))
		q.consts = append(q.consts, p.consts...)
	}
	q.sql = "SELECT " + strings.Join(cols, ", ") + " FROM %[1]s"
	return q
}

// predicates compares every comparison form with each constant and with
// pairs of them: all of them in batches (odBatch), and one in every few,
// and those with a constant the type rejects, alone in a WHERE clause.
func (r *odRun) predicates() {
	present, fresh, pairs, alone := 12, 8, 36, 16
	if raceBuild {
		present, fresh, pairs, alone = 6, 4, 20, 40
	}
	if r.ty.typ == "text" {
		// Text ciphertexts are long (about 33 bytes per byte, some
		// TOASTed): every comparison costs more.
		pairs, alone = pairs/3, alone*2
	}
	r.makeConsts(present, fresh)
	var preds []odPred
	add := func(p string, cs ...*odConst) { preds = append(preds, odPred{p, cs}) }
	for _, c := range r.consts {
		for _, op := range []string{"<", "<=", ">", ">=", "=", "<>"} {
			add("v "+op+" {0}", c)
		}
		add("{0} < v", c)
		add("{0} >= v", c)
		add("v IS DISTINCT FROM {0}", c)
		add("v IS NOT DISTINCT FROM {0}", c)
	}
	var good []*odConst
	for _, c := range r.consts {
		if c.null || c.bin != nil {
			good = append(good, c)
		}
	}
	for range pairs {
		a, b := good[r.rng.Intn(len(good))], good[r.rng.Intn(len(good))]
		for _, p := range []string{
			"v BETWEEN {0} AND {1}",
			"v NOT BETWEEN {0} AND {1}",
			"v BETWEEN SYMMETRIC {0} AND {1}",
			"v NOT BETWEEN SYMMETRIC {0} AND {1}",
			"v IN ({0}, {1})",
			"v IN ({0}, NULL, {1})",
			"v NOT IN ({0}, {1})",
			"v > {0} AND v <= {1}",
			"(v < {0} OR v >= {1}) AND v <> {0}",
		} {
			add(p, a, b)
		}
	}
	// NOT IN with NULL matches nothing, IN with only NULL too.
	add("v NOT IN ({0}, NULL)", good[r.rng.Intn(len(good))])
	add("v IN (NULL, NULL)")

	n := 0
	oid := func() uint32 {
		n++
		if n%3 == 0 {
			return 0
		}
		return r.ty.oid
	}
	var batch []odPred
	flush := func() {
		if len(batch) > 0 {
			q := odBatch(batch)
			q.textParamOID, q.binaryOID = oid(), r.ty.oid
			r.compare(q, odPredicateModes)
			batch = nil
		}
	}
	for i, p := range preds {
		bad := slices.ContainsFunc(p.consts, func(c *odConst) bool { return !c.null && c.bin == nil })
		if bad || i%alone == 0 {
			r.compare(&odQuery{sql: odFingerprint + p.sql, consts: p.consts, fingerprint: true, textParamOID: oid(), binaryOID: r.ty.oid}, odPredicateModes)
		}
		if !bad {
			batch = append(batch, p)
			if len(batch) == 25 {
				flush()
			}
		}
	}
	flush()
	r.predicateCount = len(preds)

	// Sorted rows under a range, with the values: every result format.
	for i := range pairs / 4 {
		c := good[r.rng.Intn(len(good))]
		sql := []string{
			"SELECT id, v FROM %[1]s WHERE v >= {0} ORDER BY v, id LIMIT 40",
			"SELECT id, v FROM %[1]s WHERE v < {0} ORDER BY v DESC NULLS LAST, id LIMIT 40",
			"SELECT min(v), max(v), count(v) FROM %[1]s WHERE v <> {0}",
		}[i%3]
		r.compare(&odQuery{sql: sql, consts: []*odConst{c}, textParamOID: oid(), binaryOID: r.ty.oid}, odResultModes)
	}
}

// orderings compares sorts, groupings and aggregates over the whole
// table.
func (r *odRun) orderings() {
	n := r.ty.rows
	var qs []string
	for _, dir := range []string{"ASC", "DESC"} {
		for _, nulls := range []string{"NULLS FIRST", "NULLS LAST"} {
			order := fmt.Sprintf("ORDER BY v %s %s, id", dir, nulls)
			if (dir == "ASC") == (nulls == "NULLS LAST") {
				// The whole table: ascending with NULLs last, descending
				// with NULLs first (PostgreSQL's defaults).
				qs = append(qs, "SELECT id, v FROM %[1]s "+order)
			}
			for _, lo := range [][2]int{{10, 0}, {100, n / 2}, {1000, n - 500}, {7, n - 3}, {50, 4990}} {
				qs = append(qs, fmt.Sprintf("SELECT id, v FROM %%[1]s %s LIMIT %d OFFSET %d", order, lo[0], lo[1]))
			}
		}
	}
	qs = append(qs,
		"SELECT id, v FROM %[1]s ORDER BY v DESC, id DESC LIMIT 20 OFFSET 3",
		"SELECT id, v FROM %[1]s ORDER BY v, id LIMIT ALL OFFSET 0",
		"SELECT v, count(*) FROM %[1]s GROUP BY v ORDER BY v NULLS FIRST",
		"SELECT v, count(*), min(id) FROM %[1]s GROUP BY v HAVING count(*) > 1 ORDER BY v DESC",
		"SELECT DISTINCT v FROM %[1]s ORDER BY v",
		"SELECT DISTINCT v FROM %[1]s ORDER BY v DESC NULLS LAST LIMIT 100 OFFSET 10",
		"SELECT min(v), max(v), count(v), count(*) FROM %[1]s",
		"SELECT min(v) FILTER (WHERE id % 3 = 0), max(v) FILTER (WHERE id < 5000), count(*) FILTER (WHERE v IS NULL) FROM %[1]s",
		"SELECT min(v), max(v) FROM %[1]s WHERE id < 0",
		"SELECT id % 10 AS g, min(v), max(v), count(v) FROM %[1]s GROUP BY 1 ORDER BY 1",
		"SELECT id, rank() OVER (ORDER BY v DESC NULLS LAST), row_number() OVER (ORDER BY v, id) FROM %[1]s WHERE id <= 3000 ORDER BY id",
		"SELECT array_agg(id ORDER BY v NULLS FIRST, id) FROM %[1]s WHERE id <= 3000",
		"SELECT count(*) FROM %[1]s a JOIN %[1]s b ON a.v = b.v WHERE a.id <= 3000 AND b.id <= 3000",
		"SELECT a.id, b.id FROM %[1]s a JOIN %[1]s b ON b.id = a.id + 1 AND a.v < b.v WHERE a.id <= 20000 ORDER BY a.id",
	)
	for _, sql := range qs {
		r.compare(&odQuery{sql: sql}, odReadModes)
	}
}
