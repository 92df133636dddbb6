package proxy_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/proxy"
)

// TestDifferential is the differential test of issue 8: PostgreSQL itself is
// the oracle for every value pgcloak encrypts.
//
// For every logical type T there is a plain table p_T(id, v T), written
// straight to PostgreSQL, and an encrypted twin e_T(id, v bytea) whose v is a
// policy column of logical type T under a deterministic key, written through
// pgcloak. Every input of the corpus (dfCorpus) is sent, the same way, into
// both:
//
//   - as a literal (a quoted string, or an SQL expression such as a bare
//     number or a cast) in a simple Query, and in an extended-protocol
//     statement without parameters;
//   - as a text parameter declared unknown (0), text, varchar and T;
//   - as the parameters drivers send (dfDriverParams): binary parameters of
//     every type a driver declares (int2/4/8, float4/8, numeric, text,
//     varchar, date, timestamp, timestamptz, bool, uuid, jsonb, bytea) and a
//     few text parameters declared as such a type, each tried against every
//     logical type, mismatches included.
//
// It must succeed through pgcloak exactly when it succeeds directly, and fail
// with the same SQLSTATE. The values stored must read back identically: the
// encrypted table through pgcloak and the plain table directly, as text
// (simple Query and extended protocol) and as binary. The plain table read
// through pgcloak must equal the direct read too. Then every input form is
// used for an equality search (WHERE v = <form>, same protocol, declared type
// and format): the ids pgcloak finds must be the ids PostgreSQL finds, among
// the rows whose stored values agreed. A search pgcloak refuses is accepted
// only when PostgreSQL found nothing; otherwise its SQLSTATE must match.
//
// The whole corpus runs under each of dfSettings (TimeZone, DateStyle,
// extra_float_digits, bytea_output), set in both sessions.
//
// Every divergence is one line of the failure output:
//
//	<settings> <type> <way> <input>: <what>: PostgreSQL <x> | pgcloak <y>
//
// and a summary by kind closes the run. 'now' cannot match to the
// microsecond: timestamps written from an input containing "now" are
// compared within dfNowTolerance and left out of the searches ('today' is
// compared exactly, so a run across midnight may report it).
//
// Run it with
//
//	PGCLOAK_TEST_REQUIRE=1 go test ./proxy -run TestDifferential -count=1
//
// and narrow it with -run 'TestDifferential/<settings>/<type>'.
func TestDifferential(t *testing.T) {
	types := dfCorpus()
	// Only warnings from the proxy: its per-statement log would drown the
	// divergence list.
	quiet := func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h := newHarness(t, dfPolicy(types), dfSchema(types), quiet)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	px := &dfSide{name: "pgcloak", dsn: h.dsn("doctor")}
	dx := &dfSide{name: "PostgreSQL", dsn: h.pg.DSN()}
	defer px.close()
	defer dx.close()
	summary := map[string]int{}
	for _, st := range dfSettings {
		t.Run(st.name, func(t *testing.T) {
			for _, ty := range types {
				t.Run(ty.name, func(t *testing.T) {
					r := &dfRun{t: t, ctx: ctx, px: px, dx: dx, st: st, ty: ty, summary: summary}
					r.run()
				})
			}
		})
	}
	if len(summary) > 0 {
		keys := make([]string, 0, len(summary))
		total := 0
		for k, n := range summary {
			keys = append(keys, k)
			total += n
		}
		sort.Slice(keys, func(i, j int) bool {
			if summary[keys[i]] != summary[keys[j]] {
				return summary[keys[i]] > summary[keys[j]]
			}
			return keys[i] < keys[j]
		})
		var b strings.Builder
		fmt.Fprintf(&b, "%d divergences, by kind:\n", total)
		for _, k := range keys {
			fmt.Fprintf(&b, "%6d  %s\n", summary[k], k)
		}
		t.Log(b.String())
	}
}

// dfNowTolerance is how far apart two timestamps written from 'now' may be.
const dfNowTolerance = 5 * time.Second

// dfSetting is one combination of the session settings that change how
// values are read or printed.
type dfSetting struct {
	name, timeZone, dateStyle, extraFloatDigits, byteaOutput string
}

var dfSettings = []dfSetting{
	{"utc_iso_mdy", "UTC", "ISO, MDY", "1", "hex"},
	{"newyork_sql_dmy", "America/New_York", "SQL, DMY", "0", "escape"},
	{"kolkata_postgres_ymd", "Asia/Kolkata", "Postgres, YMD", "-3", "hex"},
}

func (s dfSetting) sql() string {
	return fmt.Sprintf("SET TimeZone = '%s'; SET DateStyle = '%s'; SET extra_float_digits = %s; SET bytea_output = '%s'",
		s.timeZone, s.dateStyle, s.extraFloatDigits, s.byteaOutput)
}

// dfType is one logical type and its corpus.
type dfType struct {
	name   string // logical type; tables p_<name> and e_<name>
	pgType string // the plain column's type
	oid    uint32 // the logical type's OID, declared for text parameters
	// texts are input strings: each is sent as a quoted literal and as a
	// text parameter.
	texts []string
	// exprs are SQL expressions sent as written, in statements only (bare
	// numbers, casts, typed literals, E'' strings).
	exprs []string
}

// dfDriverParam is a parameter as a driver sends it: a declared type and
// a value, binary (a Go value pgtype encodes as the declared type) or text.
type dfDriverParam struct {
	oid    uint32
	format int16
	val    any // nil: NULL; a string for text format
	show   string
}

// dfCase is one input sent one way.
type dfCase struct {
	id       int
	way      string // literal(Q), literal(P), text/<decl>, binary/<decl>
	input    string // for the report
	sql      string // the value as SQL, for literals
	value    []byte // the parameter, otherwise
	oid      uint32
	format   int16
	volatile bool // 'now' in a timestamp: compared within dfNowTolerance
}

func (c *dfCase) param() bool {
	return strings.HasPrefix(c.way, "text/") || strings.HasPrefix(c.way, "binary/")
}

func dfQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var dfOIDNames = map[uint32]string{
	0: "unknown", 16: "bool", 17: "bytea", 20: "int8", 21: "int2", 23: "int4", 25: "text", 700: "float4",
	701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date", 1114: "timestamp", 1184: "timestamptz",
	1700: "numeric", 2950: "uuid", 3802: "jsonb",
}

// dfCases expands a type's corpus into the ways a client sends it.
func dfCases(t *testing.T, ty dfType, m *pgtype.Map) []*dfCase {
	var cases []*dfCase
	add := func(c *dfCase) {
		c.id = len(cases) + 1
		cases = append(cases, c)
	}
	vol := func(s string) bool {
		return (ty.name == "timestamp" || ty.name == "timestamptz") && strings.Contains(strings.ToLower(s), "now")
	}
	var lits []string
	for _, s := range ty.texts {
		lits = append(lits, dfQuote(s))
	}
	lits = append(lits, ty.exprs...)
	lits = append(lits, "NULL")
	for _, way := range []string{"literal(Q)", "literal(P)"} {
		for _, l := range lits {
			add(&dfCase{way: way, input: l, sql: l, volatile: vol(l)})
		}
	}
	decls := []uint32{0, 25, 1043}
	if ty.oid != 25 && ty.oid != 1043 {
		decls = append(decls, ty.oid)
	}
	for _, oid := range decls {
		for _, s := range ty.texts {
			add(&dfCase{way: "text/" + dfOIDNames[oid], input: fmt.Sprintf("%q", s), value: []byte(s), oid: oid, volatile: vol(s)})
		}
		add(&dfCase{way: "text/" + dfOIDNames[oid], input: "NULL", oid: oid})
	}
	for _, b := range dfDriverParams() {
		var v []byte
		way := "binary/" + dfOIDNames[b.oid]
		switch {
		case b.val == nil:
		case b.format == 0:
			v = []byte(b.val.(string))
			way = "text/" + dfOIDNames[b.oid]
		default:
			var err error
			v, err = m.Encode(b.oid, pgtype.BinaryFormatCode, b.val, nil)
			if err != nil {
				t.Fatalf("encode %s as %s: %v", b.show, dfOIDNames[b.oid], err)
			}
		}
		add(&dfCase{way: way, input: b.show, value: v, oid: b.oid, format: b.format})
	}
	return cases
}

// dfDriverParams are the parameters drivers send, each tried against every
// logical type: the types a driver declares for a Go, Java, Python or .NET
// value, with values at and beyond the edges of the column types. Most are
// binary; some drivers send text declared as a specific type (pgjdbc's
// setBigDecimal as numeric, setBoolean as bool, psycopg 3's numbers).
func dfDriverParams() []dfDriverParam {
	num := func(s string) pgtype.Numeric {
		var n pgtype.Numeric
		if err := n.Scan(s); err != nil {
			panic(err)
		}
		return n
	}
	utc := func(y int, mo time.Month, d, h, mi, s, us int) time.Time {
		return time.Date(y, mo, d, h, mi, s, us*1000, time.UTC)
	}
	nyc := time.FixedZone("-05", -5*3600)
	uuid := func(s string) pgtype.UUID {
		var u pgtype.UUID
		if err := u.Scan(s); err != nil {
			panic(err)
		}
		return u
	}
	var out []dfDriverParam
	b := func(oid uint32, v any, show string) { out = append(out, dfDriverParam{oid, 1, v, show}) }
	txt := func(oid uint32, v string) {
		out = append(out, dfDriverParam{oid, 0, v, fmt.Sprintf("%s %q", dfOIDNames[oid], v)})
	}
	for _, n := range []int16{42, -1, 0, math.MinInt16, math.MaxInt16} {
		b(21, n, fmt.Sprintf("int2 %d", n))
	}
	for _, n := range []int32{42, 1, 70000, math.MinInt32, math.MaxInt32, 20240101} {
		b(23, n, fmt.Sprintf("int4 %d", n))
	}
	for _, n := range []int64{42, 0, 4294967296, 9007199254740993, math.MinInt64, math.MaxInt64} {
		b(20, n, fmt.Sprintf("int8 %d", n))
	}
	for _, f := range []float32{1.5, 2.5, -0.5, 0.1, 42, 3.4e38, 1e10, float32(math.Inf(1)), float32(math.NaN())} {
		b(700, f, fmt.Sprintf("float4 %v", f))
	}
	for _, f := range []float64{42, 42.7, -42.5, 0.1, 1e300, 5e-324, math.Copysign(0, -1), 9.3e18, math.Inf(-1), math.NaN()} {
		b(701, f, fmt.Sprintf("float8 %v", f))
	}
	for _, s := range []string{"42", "42.5", "-42.5", "1.50", "12345678901234567890.123", "0.000", "0.00000000000000000001", "NaN", "Infinity", "-Infinity"} {
		b(1700, num(s), "numeric "+s)
	}
	for _, s := range []string{"42", "hello", "abc   ", "", "2024-01-01", "2024-01-01 12:00:00+05", "true", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `{"b":1,"a":2}`, `\x00ff`} {
		b(25, s, fmt.Sprintf("text %q", s))
	}
	for _, s := range []string{"42", "héllo"} {
		b(1043, s, fmt.Sprintf("varchar %q", s))
	}
	b(1082, utc(2024, 1, 1, 0, 0, 0, 0), "date 2024-01-01")
	b(1082, utc(1969, 7, 20, 0, 0, 0, 0), "date 1969-07-20")
	b(1082, utc(-43, 3, 15, 0, 0, 0, 0), "date 0044-03-15 BC")
	b(1082, pgtype.Date{InfinityModifier: pgtype.Infinity, Valid: true}, "date infinity")
	b(1114, utc(2024, 1, 1, 12, 34, 56, 789000), "timestamp 2024-01-01 12:34:56.789")
	b(1114, utc(2024, 1, 1, 0, 0, 0, 0), "timestamp 2024-01-01 00:00:00")
	b(1114, pgtype.Timestamp{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, "timestamp -infinity")
	b(1184, time.Date(2024, 1, 1, 23, 30, 0, 0, nyc), "timestamptz 2024-01-01 23:30:00-05")
	b(1184, utc(2024, 6, 15, 13, 45, 30, 123456), "timestamptz 2024-06-15 13:45:30.123456+00")
	b(1184, utc(2024, 1, 1, 0, 0, 0, 0), "timestamptz 2024-01-01 00:00:00+00")
	b(1184, pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, "timestamptz infinity")
	b(16, true, "bool true")
	b(16, false, "bool false")
	b(2950, uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "uuid a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
	for _, s := range []string{`{"b": 1, "a": 2}`, `{"a":1,"a":2}`, `"str"`, `42`, `1.0e2`, `null`, `true`, `[1, "x", null]`} {
		b(3802, json.RawMessage(s), "jsonb "+s)
	}
	b(17, []byte{0, 1, 0xff}, `bytea \x0001ff`)
	b(17, []byte("abc"), `bytea \x616263`)
	// NULL declared as each type: whether it is accepted depends only on
	// the declared type.
	for _, oid := range []uint32{21, 23, 20, 700, 701, 1700, 25, 1043, 1082, 1114, 1184, 16, 2950, 3802, 17} {
		b(oid, nil, dfOIDNames[oid]+" NULL")
	}
	// Text declared as a type other than unknown, text, varchar or the
	// column's own.
	for _, v := range []string{"42", "42.5", "-42.5", "1.50", "NaN", "1e3"} {
		txt(1700, v)
	}
	txt(16, "1")
	txt(16, "t")
	txt(21, "42")
	txt(23, "42")
	txt(20, "-1")
	txt(701, "1.5")
	txt(701, "NaN")
	txt(1082, "2024-01-01")
	txt(1114, "2024-01-01 12:00:00")
	txt(1184, "2024-01-01 23:30:00-05")
	txt(2950, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")
	txt(3802, `{"b":1,"a":2}`)
	txt(17, `\x00ff`)
	return out
}

// dfCorpus lists, per logical type, PostgreSQL's documented input forms,
// the forms drivers send, and edge and invalid values. Extend it freely:
// PostgreSQL is the judge of every entry.
func dfCorpus() []dfType {
	ints := []string{"0", "42", "-42", "+42", " 42 ", "  -7", "\t42\n", "007", "-0", "+0",
		"1_000", "0x1F", "0X1f", "0o17", "0b101", "-0x10", "4.2", "42.0", "1e2", "", "  ", "abc", "42abc", "4 2", "++1", "-",
		"99999999999999999999", "٤٢"}
	intExprs := []string{"42", "-42", "+42", "-0", "42.0", "42.7", "42.5", "-42.5", "0.5", "1.5", "2.5", "1e2",
		"1.5::float4", "2.5::float4", "'42.5'::float8", "true::int", "70000::int2", "'42'::int8", "42::int8",
		"2147483648", "9223372036854775808", "1_000", "0x1F", "'42'::text", "'42'::varchar", "E'4\\062'", " -42"}
	text := []string{"", "hello", "héllo wörld — 日本語 🎉", "it's", `back\slash`, "  padded  ", "abc   ",
		"tab\there", "new\nline", "NULL", "\u00a0nbsp", "e\u0301", strings.Repeat("xy", 1500), "42", "2024-01-01"}
	textExprs := []string{`E'tab\there\\x'`, "'abcdef'::varchar(3)", "'abc'::char(5)", "'abc  '::char(5)",
		"42", "1.50", "true", "date '2024-01-01'", "'2024-01-01 12:00+00'::timestamptz", `U&'d\0061t\+000061'`,
		"$$dollar 'quoted'$$", "'con'\n'cat'", `'{"b":1,"a":2}'::jsonb`, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
		`'\x00ff'::bytea`, "1.5::float4", "0.1::float8", "'abc'::name", "'x'::\"char\""}
	dates := []string{"1999-01-08", "January 8, 1999", "1/8/1999", "1/18/1999", "01/02/03", "01/02/1980",
		"1999-Jan-08", "Jan-08-1999", "08-Jan-1999", "99-Jan-08", "08-Jan-99", "Jan-08-99", "19990108", "990108",
		"1999.008", "J2451187", "January 8, 99 BC", "1969-07-20 +00", "July 20, 1969", "20-Jul-1969", "19690720",
		"J2440423", "1969-07-20 PST", "2024-01-01 12:34:56.789+00", "2024-01-01 12:34:56.789-05", "Thu Feb 29 23:59:58 2024 UTC", "Feb 29 2024", "29 Feb 2024", "2024 Feb 29",
		"June 15th, 2024", "Saturday, June 15, 2024", "epoch", "infinity", "-infinity", "Infinity", "+infinity",
		"today", "tomorrow", "yesterday", "now", "TODAY", " today ", "2024-02-29", "2023-02-29", "2024-13-01",
		"2024-00-10", "2024-06-31", "0001-12-31 BC", "4714-11-24 BC", "4714-11-23 BC", "5874897-12-31",
		"5874898-01-01", "0044-03-15 BC", "2024-06-15 AD", "2024-06-15 13:45:00", "2024-01-01T23:30:00-05:00",
		"2024-01-01 23:30:00 America/New_York", "2024-06-15 24:00:00", "2024-06-15 23:59:60", "allballs",
		"", "abc", " 2024-01-01 ", "2024/01/01", "2024-1-1", "20240101T123000", "0000-01-01", "1/8/99",
		"08.01.1999", "1999.01.08", "15/06/2024", "2024-W24", "12:00", "yesterday 12:00"}
	dateExprs := []string{"date '1969-07-20 +00'", "'2024-01-01T23:30:00-05:00'::timestamptz",
		"'2024-01-01 12:00'::timestamp", "'2024-01-01T23:30:00'::timestamp", "'2024-01-01'::date", "DATE 'today'", "'infinity'::timestamp",
		"'2024-01-01'::text", "20240101", "'2024-01-01'::varchar"}
	stamps := []string{"1969-07-20 +00", "2024-01-01 12:34:56.789+00", "2024-01-01 12:34:56.789-05", "2024-06-15 13:45:30.123456", "2024-06-15T13:45:30", "2024-06-15T13:45:30Z",
		"1999-01-08 04:05:06", "1999-01-08 04:05:06 -8:00", "January 8 04:05:06 1999 PST", "2004-10-19 10:23:54+02",
		"2024-12-31 24:00:00", "2024-12-31 24:00:01", "2024-12-31 23:59:60", "2024-12-31 23:59:60.5",
		"2024-06-15 13:45:30.1234565", "2024-06-15 13:45:30.1234575", "2024-06-15 13:45:30.9999995",
		"2024-06-15 13:45:30.999999999", "epoch", "infinity", "-infinity", "now", "today", "tomorrow",
		"yesterday", "today 12:00", "allballs", "2024-06-15 allballs", "0044-03-15 12:00:00 BC",
		"4714-11-24 00:00:00 BC", "4714-11-23 23:59:59 BC", "294276-12-31 23:59:59.999999", "294277-01-01 00:00:00",
		"2024-06-15 04:05 PM", "2024-06-15 12:00 AM", "2024-06-15 12:30 am", "2024-06-15 13:45:30 PST",
		"2024-06-15 13:45:30 America/New_York", "Thu Feb 29 23:59:58 2024 UTC", "1/8/1999 04:05", "1/18/1999 04:05",
		"15/06/2024 13:45:30", "19990108 040506", "19990108T040506", "1999-01-08 040506", "J2451187 04:05:06",
		"2024-06-15", "2024-06-15 25:00", "2024-06-15 12:60", "2024-06-15 12:00:61", "", "2024-06-15 13:45:30.",
		"2024-06-15 13:45", "2024-06-15 1:2:3", "Sat Jun 15 13:45:30 2024", "2024-06-15 13:45:30+05:45",
		"2024-06-15 13:45:30.5+0330", "2024-06-15 13:45:30-08", "2024-01-01T00:00:00z", "2024-07-01 12:00:00 PDT",
		"2024-03-10 02:30:00 America/New_York", "2024-11-03 01:30:00 America/New_York",
		"2024-07-01 12:00:00 america/new_york", "2024-07-01 12:00:00 EST5EDT", "2024-07-01 12:00:00 CET",
		"2024-07-01 12:00:00 UTC+3", "2024-07-01 12:00:00 GMT", "2024-07-01 12:00:00 Etc/GMT+3",
		"2024-07-01 12:00:00 IST", "2024-07-01 12:00:00 zulu", "2024-07-01 12:00:00 Mars/Olympus",
		"2024-07-01 12:00:00+15:00", "2024-07-01 12:00:00+16:00", "2024-07-01 12:00:00 +05:30:15",
		"2024-07-01 12:00:00 -0800", "2024-07-01 12:00:00-8", "1800-01-01 00:00:00", "1900-06-01 12:00:00 Europe/Amsterdam",
		"0001-01-01 00:00:00+00 BC", "2024-07-01 America/New_York 12:00", "abc"}
	stampExprs := []string{"timestamp '2024-06-15 13:45:30'", "timestamptz '2024-06-15 13:45:30+02'",
		"'2024-01-01T23:30:00-05:00'::timestamptz", "'2024-01-01 12:00'::timestamp", "'2024-01-01T23:30:00'::timestamp", "date '2024-01-01'",
		"'2024-06-15 13:45:30.5'::timestamp(0)", "'infinity'::date", "TIMESTAMP WITHOUT TIME ZONE 'epoch'",
		"'2024-06-15'::text"}
	return []dfType{
		{name: "text", pgType: "text", oid: 25, texts: text, exprs: textExprs},
		{name: "varchar", pgType: "varchar", oid: 1043, texts: text, exprs: textExprs},
		{name: "char", pgType: "bpchar", oid: 1042, texts: text, exprs: textExprs},
		{name: "int2", pgType: "int2", oid: 21,
			texts: append(ints, "-32768", "32767", "32768", "-32769"),
			exprs: append(intExprs, "-32768", "32767", "32768", "-32769", "32767.5", "-32768.5")},
		{name: "int4", pgType: "int4", oid: 23,
			texts: append(ints, "-2147483648", "2147483647", "2147483648", "-2147483649"),
			exprs: append(intExprs, "-2147483648", "2147483647", "-2147483649", "2147483647.5", "'2147483647.4'::numeric")},
		{name: "int8", pgType: "int8", oid: 20,
			texts: append(ints, "-9223372036854775808", "9223372036854775807", "9223372036854775808", "-9223372036854775809"),
			exprs: append(intExprs, "-9223372036854775808", "9223372036854775807", "9223372036854775807.4",
				"9223372036854775807.5", "'9.2e18'::float8", "'1e19'::float8")},
		{name: "numeric", pgType: "numeric", oid: 1700,
			texts: []string{"0", "-0", "+0", "0.000", "123.4500", "-98765432109876543210.0123456789", "1e-20", "1.5E+3",
				"1e+3", "1E3", "-1.5e-3", "NaN", "nan", "NAN", "Infinity", "infinity", "-Infinity", "inf", "-inf", "+inf",
				"+Infinity", "  12.3400 ", ".5", "5.", "-.5", "1_000.5", "0x1F", "1e-99999", "1e1000", "1e131072",
				"1e-16383", "0.0000000000000000000000000000001", strings.Repeat("9", 1000), "99999999.99999999",
				"abc", "", "1.2.3", "1e", "e5", "- 1", ".", "1,5"},
			exprs: []string{"1.50", "-0.001", "12345678901234567890", "1e3", "1.5::float4", "0.1::float4", "0.1::float8",
				"'NaN'::float8", "'Infinity'::float8", "'-0'::float8", "42", "true::int", "numeric '1.50'",
				"'1.005'::numeric(4,2)", "1_000", "0x1F", "'1.5'::text", "'NaN'::numeric", "'NaN'::float", " -1.5"}},
		{name: "float8", pgType: "float8", oid: 701,
			texts: []string{"0", "-0", "1.5", "-2.25", "+1.5", "NaN", "nan", "NAN", "Infinity", "infinity", "INFINITY",
				"-Infinity", "inf", "+inf", "-inf", " 42 ", "1e308", "1.7976931348623157e308", "1.7976931348623159e308",
				"1e309", "-1e309", "4.9e-324", "5e-324", "2.4e-324", "1e-310", "2.2250738585072014e-308", "1e-400",
				"0.1", "3.141592653589793", "0.30000000000000004", "123456789012345678", "1e15", "1e16", ".5", "5.",
				"1.5e+3", "1E3", "0x1p3", "1_000", "abc", "", "1e", "--1", "1.5 x", "NaNx", "infinit"},
			exprs: []string{"1e300", "-0.5", "1e309", "42", "9007199254740993", "0.1", "1.5::float4", "0.1::float4",
				"'3.4e38'::float4", "true::int", "float8 '1.5'", "1.5::numeric", "'NaN'::numeric", "'Infinity'::numeric",
				"9223372036854775807", "-0.0", "'-0'::float8", "'1.5'::text", "'NaN'::float", "'Infinity'::float", " -1.5"}},
		{name: "bool", pgType: "bool", oid: 16,
			texts: []string{"t", "true", "TRUE", "True", "tr", "tru", "y", "ye", "yes", "YES", "on", "ON", "1", "f", "false",
				"FALSE", "fa", "fal", "n", "no", "NO", "off", "OFF", "of", "0", " yes ", "\tt\n", " f", "o", "maybe", "",
				"2", "onn", "yess", "truee", "-1", "00", "01"},
			exprs: []string{"true", "false", "TRUE", "1::bool", "0::boolean", "'yes'::bool", "bool 't'", "1", "'t'::text"}},
		{name: "date", pgType: "date", oid: 1082, texts: dates, exprs: dateExprs},
		{name: "timestamp", pgType: "timestamp", oid: 1114, texts: stamps, exprs: stampExprs},
		{name: "timestamptz", pgType: "timestamptz", oid: 1184, texts: stamps, exprs: stampExprs},
		{name: "uuid", pgType: "uuid", oid: 2950,
			texts: []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
				"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
				"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
				"{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}", "00000000-0000-0000-0000-000000000000",
				"ffffffff-ffff-ffff-ffff-ffffffffffff", " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
				"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ", "a0eebc99-9c0b-4ef8-bb6d", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
				"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-00", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
				"a0eebc99-9c0b-4ef8-bb6d6bb9bd380a11", "a0eebc999c0b4ef8bb6d6bb9bd380a1", "",
				"a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1-"},
			exprs: []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "uuid 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
				"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::text"}},
		{name: "jsonb", pgType: "jsonb", oid: 3802,
			texts: []string{`{"b": 1, "a": [1, 2, {"c": null}], "aa": "x"}`, `{"a":1,"a":2}`, `{"a":2,"a":1}`, `[]`, `{}`,
				`"str"`, `null`, `true`, `false`, `  [1,  2 ] `, `{"é": 1, "z": 2, "": 0, "ab": {"b": 1, "a": 2, "b": 3}}`,
				`{"u": "h\u00e9llo \ud83d\ude00", "esc": "q\"b\\s\/\n\t"}`, `"\u0000"`, `"\u0001 ctl"`, `"\ud83d"`,
				`"\ude00"`, `[1.50, -0, 0, -3.0, 12345678901234567890, 0.000001]`, `[1e2, 1E+2, 0.1e-2, -2.5e-3, 1e0, 1.0e2]`,
				`-0`, `1.0e2`, `1e400`, `1e1000000`, `0.1`, `-0.0`, `1E-7`, `{"a":1}x`, `{a: 1}`, `[1, 2,]`, ``, ` `,
				`NaN`, `Infinity`, `"\x41"`, "\"tab\tinside\"", `{"a":{"b":{"c":[[[[1]]]]}}}`, `"\u00e9"`, `"é"`, `"\/"`,
				`01`, `.5`, `1.`, `+1`, `true false`, `"\uD83D\uDE00"`},
			exprs: []string{`'{"a":1}'::json`, `'{"b":1,"a":2}'::jsonb`, `jsonb '[1,2]'`, `'{"a":1}'::text`}},
		{name: "bytea", pgType: "bytea", oid: 17,
			texts: []string{`\x`, `\x00`, `\x0001ff00`, `\xDEADbeef`, `\XDEAD`, `abc`, `\000\001\\`, `\\`, `é`, ``,
				`\x 00 01`, `\xabc`, `\q`, `\x0g`, `\1`, `\400`, `a\\b`, `\x00 `, `\x00\n`, `'`},
			exprs: []string{`E'\\xDEAD'`, `'abc'::bytea`, `'\x00'::bytea`, `'abc'::text`, `E'\\000'`}},
	}
}

func dfPolicy(types []dfType) string {
	var keys, cols, grants []string
	for _, ty := range types {
		k := "k_" + ty.name
		keys = append(keys, fmt.Sprintf("    - {name: %s, kind: deterministic}", k))
		cols = append(cols, fmt.Sprintf("    - {table: public.e_%s, column: v, key: %s, type: %s}", ty.name, k, ty.name))
		grants = append(grants, k)
	}
	g := strings.Join(grants, ", ")
	return "policy:\n  keys:\n" + strings.Join(keys, "\n") + "\n  columns:\n" + strings.Join(cols, "\n") +
		"\n  roles:\n    - {role: doctor, read: [" + g + "], write: [" + g + "]}\n"
}

func dfSchema(types []dfType) string {
	var b strings.Builder
	for _, ty := range types {
		fmt.Fprintf(&b, "CREATE TABLE public.p_%s (id int PRIMARY KEY, v %s);\n", ty.name, ty.pgType)
		fmt.Fprintf(&b, "CREATE TABLE public.e_%s (id int PRIMARY KEY, v bytea);\n", ty.name)
	}
	b.WriteString("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;\n")
	return b.String()
}

// dfSide is one connection, directly or through pgcloak, reopened (with
// the settings) when a statement ends it.
type dfSide struct {
	name     string
	dsn      string
	conn     *pgconn.PgConn
	settings string
}

func (s *dfSide) close() {
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
}

func (s *dfSide) ready(ctx context.Context) error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	c, err := pgconn.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect %s: %w", s.name, err)
	}
	s.conn = c
	if s.settings != "" {
		if _, err := c.Exec(ctx, s.settings).ReadAll(); err != nil {
			return fmt.Errorf("%s: %s: %w", s.name, s.settings, err)
		}
	}
	return nil
}

func (s *dfSide) apply(ctx context.Context, settings string) error {
	s.settings = settings
	if err := s.ready(ctx); err != nil {
		return err
	}
	_, err := s.conn.Exec(ctx, settings).ReadAll()
	return err
}

// dfOut is the outcome of one statement.
type dfOut struct {
	code string // "" on success
	msg  string
	rows [][][]byte
}

func (o dfOut) String() string {
	if o.code == "" {
		return "ok"
	}
	return o.code + " (" + dfTrunc(o.msg, 90) + ")"
}

// do runs sql: in a simple Query when simple, else in the extended
// protocol with c's parameter (if c is a parameter case).
func (s *dfSide) do(ctx context.Context, simple bool, sql string, c *dfCase, resultFormats []int16) dfOut {
	if err := s.ready(ctx); err != nil {
		return dfOut{code: "conn", msg: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var rows [][][]byte
	var err error
	switch {
	case simple:
		var res []*pgconn.Result
		res, err = s.conn.Exec(ctx, sql).ReadAll()
		if err == nil && len(res) > 0 {
			rows = res[len(res)-1].Rows
		}
	case c != nil && c.param():
		rr := s.conn.ExecParams(ctx, sql, [][]byte{c.value}, []uint32{c.oid}, []int16{c.format}, resultFormats).Read()
		rows, err = rr.Rows, rr.Err
	default:
		rr := s.conn.ExecParams(ctx, sql, nil, nil, nil, resultFormats).Read()
		rows, err = rr.Rows, rr.Err
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return dfOut{code: pe.Code, msg: pe.Message}
		}
		return dfOut{code: "conn", msg: err.Error()}
	}
	return dfOut{rows: rows}
}

// dfRun is one type under one setting.
type dfRun struct {
	t       *testing.T
	ctx     context.Context
	px, dx  *dfSide
	st      dfSetting
	ty      dfType
	summary map[string]int
	n       int
}

// diverge reports one divergence, and counts it under kind for the
// summary.
func (r *dfRun) diverge(c *dfCase, kind, what, pg, px string) {
	r.t.Helper()
	way, input := "-", "-"
	if c != nil {
		way, input = c.way, dfTrunc(dfOneLine(c.input), 70)
	}
	r.t.Errorf("%s %s %s %s: %s: PostgreSQL %s | pgcloak %s", r.st.name, r.ty.name, way, input, what, pg, px)
	r.summary[kind]++
	r.n++
}

// dfRead is one way of reading a table back.
type dfRead struct {
	name   string
	simple bool
	format int16
}

var dfReads = []dfRead{{"text", true, 0}, {"text (extended)", false, 0}, {"binary", false, 1}}

func (r *dfRun) run() {
	ctx, t, ty := r.ctx, r.t, r.ty
	for _, s := range []*dfSide{r.px, r.dx} {
		if err := s.apply(ctx, r.st.sql()); err != nil {
			t.Fatalf("%s: settings: %v", s.name, err)
		}
	}
	plain, enc := "p_"+ty.name, "e_"+ty.name
	if o := r.dx.do(ctx, true, "TRUNCATE "+plain+", "+enc, nil, nil); o.code != "" {
		t.Fatalf("truncate: %v", o)
	}
	cases := dfCases(t, ty, pgtype.NewMap())
	byID := map[int]*dfCase{}
	for _, c := range cases {
		byID[c.id] = c
	}

	// Writes: the same statement into the plain table directly and into
	// the encrypted one through pgcloak.
	stored := map[int]bool{} // both sides stored the row
	refusedWrites := 0       // refused by pgcloak within documented limits
	for _, c := range cases {
		ins := func(table string) string {
			if c.param() {
				return fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, $1)", table, c.id)
			}
			return fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, %s)", table, c.id, c.sql)
		}
		simple := c.way == "literal(Q)"
		want := r.dx.do(ctx, simple, ins(plain), c, nil)
		got := r.px.do(ctx, simple, ins(enc), c, nil)
		kind := fmt.Sprintf("insert %-12s PostgreSQL %-5s pgcloak %-5s", c.way, dfCode(want), dfCode(got))
		switch {
		case want.code == "" && got.code == "":
			stored[c.id] = true
		case want.code == "" && got.code == "0A000" && strings.Contains(got.msg, dfOneByteCharCast):
			// Documented: a cast to PostgreSQL's one-byte "char" type
			// on a value for an encrypted column is refused (README,
			// Known limits).
			refusedWrites++
		case want.code != "" && got.code != "":
			if want.code != got.code {
				r.diverge(c, kind, "insert SQLSTATE", want.String(), got.String())
			}
		default:
			r.diverge(c, kind, "insert", want.String(), got.String())
		}
	}

	// Reads: the plain table directly is the oracle for the encrypted
	// table through pgcloak (rows both stored) and for the plain table
	// through pgcloak (all rows), each read as text (simple Query and
	// extended protocol) and as binary. One line per row names the forms
	// that differ.
	sel := func(table string) string { return "SELECT id, v FROM " + table + " ORDER BY id" }
	want := make([]map[int][]byte, len(dfReads))
	for i, rd := range dfReads {
		o := r.dx.do(ctx, rd.simple, sel(plain), nil, []int16{0, rd.format})
		if o.code != "" {
			t.Fatalf("read %s directly: %v", plain, o)
		}
		want[i] = dfRowsByID(t, o.rows)
	}
	agree := map[int]bool{} // stored by both, read back alike
	for id := range stored {
		agree[id] = true
	}
	for _, src := range []struct{ table, what string }{{enc, "stored value"}, {plain, "plain table through pgcloak"}} {
		got := make([]map[int][]byte, len(dfReads))
		for i, rd := range dfReads {
			o := r.px.do(ctx, rd.simple, sel(src.table), nil, []int16{0, rd.format})
			if o.code != "" {
				r.diverge(nil, "read refused", src.what+", "+rd.name, "ok", o.String())
				agree = map[int]bool{}
				continue
			}
			got[i] = dfRowsByID(t, o.rows)
		}
		ids := stored
		if src.table == plain {
			ids = map[int]bool{}
			for id := range want[0] {
				ids[id] = true
			}
		}
		for _, id := range dfSorted(ids) {
			c := byID[id]
			var forms, pgv, pxv []string
			for i, rd := range dfReads {
				if got[i] == nil {
					continue
				}
				w, wok := want[i][id]
				g, gok := got[i][id]
				same := false
				switch {
				case !wok || !gok:
				case c.volatile:
					same = dfNear(w, g, rd.format)
				default:
					same = dfBytesEqual(w, g)
				}
				if same {
					continue
				}
				forms = append(forms, rd.name)
				// The extended text form is shown only when it differs
				// otherwise than the simple Query's.
				if rd.name == "text (extended)" && len(forms) > 1 && dfBytesEqual(w, want[0][id]) && dfBytesEqual(g, got[0][id]) {
					forms = forms[:len(forms)-1]
					forms[len(forms)-1] = "text (both protocols)"
					continue
				}
				pgv = append(pgv, dfShowRow(w, wok, rd.format))
				pxv = append(pxv, dfShowRow(g, gok, rd.format))
			}
			if len(forms) > 0 && dfNaNPayload(ty.name, byID[id]) {
				// Documented: a NaN is stored as PostgreSQL's own NaN,
				// whatever payload bits the client sent (README, Known
				// limits), so that NaN = NaN finds it.
				continue
			}
			if len(forms) > 0 {
				delete(agree, id)
				kind := fmt.Sprintf("%s differs, %s", src.what, c.way)
				r.diverge(c, kind, src.what+" as "+strings.Join(forms, ", "), strings.Join(pgv, " / "), strings.Join(pxv, " / "))
			}
		}
	}
	for id := range agree {
		if byID[id].volatile {
			delete(agree, id)
		}
	}

	// Equality searches, each form as it was written, on both tables.
	tolerated, limited := 0, 0
	for _, c := range cases {
		if c.volatile {
			continue
		}
		q := func(table string) string {
			if c.param() {
				return "SELECT id FROM " + table + " WHERE v = $1 ORDER BY id"
			}
			return "SELECT id FROM " + table + " WHERE v = " + c.sql + " ORDER BY id"
		}
		simple := c.way == "literal(Q)"
		want := r.dx.do(ctx, simple, q(plain), c, nil)
		got := r.px.do(ctx, simple, q(enc), c, nil)
		kind := fmt.Sprintf("search %-12s PostgreSQL %-5s pgcloak %-5s", c.way, dfCode(want), dfCode(got))
		switch {
		case got.code == "0A000" && strings.Contains(got.msg, dfLossyComparison):
			// Documented: a comparison PostgreSQL makes in a type where
			// several stored values may equal the one searched for (an
			// int8 column with a float, a numeric with a float) is
			// refused (README, Known limits).
			limited++
		case want.code != "" && got.code != "":
			if want.code != got.code {
				r.diverge(c, kind, "search SQLSTATE", want.String(), got.String())
			}
		case want.code != "":
			r.diverge(c, kind, "search", want.String(), "ok, finds "+dfIDs(dfFound(t, got.rows, agree)))
		default:
			wantIDs := dfFound(t, want.rows, agree)
			if got.code != "" {
				// A refusal is "not found": right when PostgreSQL finds
				// nothing either.
				if len(wantIDs) == 0 {
					tolerated++
					continue
				}
				r.diverge(c, kind, "search", "finds "+dfIDs(wantIDs), got.String())
				continue
			}
			gotIDs := dfFound(t, got.rows, agree)
			if dfRepresentationLimit[ty.name] && dfSubset(gotIDs, wantIDs) && len(gotIDs) > 0 {
				// Documented: a deterministic ciphertext finds the
				// searched representation only, not equal values
				// written otherwise (1.5 and 1.50, 'a' and 'a  ' in a
				// character column, numbers inside jsonb).
				limited++
				continue
			}
			if dfIDs(wantIDs) != dfIDs(gotIDs) {
				kind = fmt.Sprintf("search %-12s finds other rows", c.way)
				r.diverge(c, kind, "search", "finds "+dfIDs(wantIDs)+dfLabels(byID, wantIDs, gotIDs),
					"finds "+dfIDs(gotIDs))
			}
		}
	}
	t.Logf("%d cases, %d stored by both, %d writes refused within documented limits, %d rows agree, %d searches refused by pgcloak where PostgreSQL finds nothing, %d searches within documented limits, %d divergences",
		len(cases), len(stored), refusedWrites, len(agree), tolerated, limited, r.n)
}

// dfLossyComparison is what pgcloak's refusal of a lossy comparison says.
const dfLossyComparison = "several stored values may be equal to it"

// dfRepresentationLimit are the types whose equal values may be written in
// several ways that a deterministic ciphertext tells apart.
// dfOneByteCharCast is the refusal of a cast to PostgreSQL's one-byte
// "char" type.
const dfOneByteCharCast = `a cast to "char" cannot be used`

var dfRepresentationLimit = map[string]bool{"numeric": true, "char": true, "jsonb": true}

// dfSubset reports whether every id of sub is in of.
func dfSubset(sub, of []int) bool {
	in := map[int]bool{}
	for _, id := range of {
		in[id] = true
	}
	for _, id := range sub {
		if !in[id] {
			return false
		}
	}
	return true
}

func dfCode(o dfOut) string {
	if o.code == "" {
		return "ok"
	}
	return o.code
}

func dfRowsByID(t *testing.T, rows [][][]byte) map[int][]byte {
	t.Helper()
	out := make(map[int][]byte, len(rows))
	for _, row := range rows {
		id, err := strconv.Atoi(string(row[0]))
		if err != nil {
			t.Fatalf("id %q: %v", row[0], err)
		}
		out[id] = row[1]
	}
	return out
}

// dfFound is the ids of a search result that are among keep.
func dfFound(t *testing.T, rows [][][]byte, keep map[int]bool) []int {
	t.Helper()
	var ids []int
	for _, row := range rows {
		id, err := strconv.Atoi(string(row[0]))
		if err != nil {
			t.Fatalf("id %q: %v", row[0], err)
		}
		if keep[id] {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids
}

func dfIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// dfLabels names the rows one side finds and the other does not.
func dfLabels(byID map[int]*dfCase, want, got []int) string {
	in := func(ids []int, id int) bool {
		for _, x := range ids {
			if x == id {
				return true
			}
		}
		return false
	}
	list := func(a, b []int) string {
		var out []string
		for _, id := range a {
			if !in(b, id) {
				out = append(out, fmt.Sprintf("%d=%s %s", id, byID[id].way, dfTrunc(dfOneLine(byID[id].input), 30)))
			}
		}
		if len(out) > 6 {
			out = append(out[:6], fmt.Sprintf("and %d more", len(out)-6))
		}
		return strings.Join(out, ", ")
	}
	s := ""
	if l := list(want, got); l != "" {
		s += " (pgcloak misses " + l + ")"
	}
	if l := list(got, want); l != "" {
		s += " (pgcloak also finds " + l + ")"
	}
	return s
}

func dfSorted(m map[int]bool) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

func dfBytesEqual(a, b []byte) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return string(a) == string(b)
}

// dfNear compares two timestamps within dfNowTolerance (binary: int64
// microseconds; text: not compared).
func dfNear(a, b []byte, format int16) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if format == 0 || len(a) != 8 || len(b) != 8 {
		return format == 0 || dfBytesEqual(a, b)
	}
	d := int64(binary.BigEndian.Uint64(a)) - int64(binary.BigEndian.Uint64(b))
	if d < 0 {
		d = -d
	}
	return d <= dfNowTolerance.Microseconds()
}

func dfShow(v []byte, format int16) string {
	if v == nil {
		return "NULL"
	}
	if format == 0 {
		return dfTrunc(fmt.Sprintf("%q", v), 80)
	}
	return dfTrunc(`\x`+hex.EncodeToString(v), 80)
}

func dfTrunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d bytes)", len(s))
}

func dfShowRow(v []byte, ok bool, format int16) string {
	if !ok {
		return "no row"
	}
	return dfShow(v, format)
}

// dfOneLine keeps a reported input on one line.
func dfOneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(s)
}

// dfNaNPayload reports a binary float8 NaN other than PostgreSQL's own.
func dfNaNPayload(typ string, c *dfCase) bool {
	if typ != "float8" || c == nil || c.format != 1 || c.oid != pgtype.Float8OID || len(c.value) != 8 {
		return false
	}
	f := math.Float64frombits(binary.BigEndian.Uint64(c.value))
	return math.IsNaN(f) && binary.BigEndian.Uint64(c.value) != 0x7FF8000000000000
}
