package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/policy"
)

// The type tests write values of every logical type through the proxy into
// an encrypted column (enc_T.v, and enc_T.d under a deterministic key for
// some types) and the same values straight into a twin table whose column
// has the real type (plain_T.v). PostgreSQL's own rendering of the twin is
// the oracle: text output (simple protocol) and binary output (pgx default)
// through the proxy must match it byte for byte.

// tyCase is one logical type and the values it is tested with.
type tyCase struct {
	name   string // logical type; tables are enc_<name> and plain_<name>
	pgType string // the twin column's real type
	det    bool   // enc_<name>.d is under a deterministic key
	// literals are SQL constants as written in a statement.
	literals []string
	// params are Go values pgx sends as parameters (binary where pgx can).
	params []any
	// dests make scan destinations (Go types and pgtype types).
	dests []func() any
}

func tyPtr[T any]() func() any { return func() any { return new(*T) } }
func tyVal[T any]() func() any { return func() any { return new(T) } }

func tyUUID(s string) [16]byte {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		panic(err)
	}
	return u.Bytes
}

func tyCases() []tyCase {
	long := strings.Repeat("ab", 4000)
	kolkata := time.FixedZone("IST", 5*3600+1800)
	return []tyCase{
		{
			name: "text", pgType: "text", det: true,
			literals: []string{`''`, `'hello'`, `'héllo wörld — 日本語 🎉'`, `'it''s'`, `'back\slash'`,
				`E'tab\there\nnewline'`, `'  padded  '`, `'` + long + `'`, `NULL`},
			params: []any{"", "binary ✓", "with\ttab", "it's", strings.Repeat("xy", 3000), nil},
			dests:  []func() any{tyPtr[string](), tyVal[pgtype.Text]()},
		},
		{
			name: "varchar", pgType: "varchar",
			literals: []string{`''`, `'varchar ünïcode'`, `'x'`, `NULL`},
			params:   []any{"v", "", nil},
			dests:    []func() any{tyPtr[string](), tyVal[pgtype.Text]()},
		},
		{
			name: "char", pgType: "bpchar",
			literals: []string{`'abc'`, `'ab  '`, `''`, `'日本'`, `NULL`},
			params:   []any{"pad ", "z", nil},
			dests:    []func() any{tyPtr[string](), tyVal[pgtype.Text]()},
		},
		{
			name: "int2", pgType: "int2",
			literals: []string{`'-32768'`, `'32767'`, `'0'`, `'007'`, `' -12 '`, `'+5'`, `-32768`, `32767`, `NULL`},
			params:   []any{int16(math.MinInt16), int16(math.MaxInt16), int16(0), int16(-1), nil},
			dests:    []func() any{tyPtr[int16](), tyVal[pgtype.Int2](), tyPtr[int64]()},
		},
		{
			name: "int4", pgType: "int4", det: true,
			literals: []string{`'-2147483648'`, `'2147483647'`, `'007'`, `'+42'`, `'0'`, `-2147483648`, `2147483647`, `7`, `NULL`},
			params:   []any{int32(math.MinInt32), int32(math.MaxInt32), int32(7), int32(0), nil},
			dests:    []func() any{tyPtr[int32](), tyVal[pgtype.Int4]()},
		},
		{
			name: "int8", pgType: "int8",
			literals: []string{`'-9223372036854775808'`, `'9223372036854775807'`, `'-1'`, `'0'`, `9223372036854775807`, `NULL`},
			params:   []any{int64(math.MinInt64), int64(math.MaxInt64), int64(0), int64(-42), nil},
			dests:    []func() any{tyPtr[int64](), tyVal[pgtype.Int8]()},
		},
		{
			name: "numeric", pgType: "numeric",
			literals: []string{`'0'`, `'-0'`, `'0.000'`, `'123.4500'`, `'-98765432109876543210.0123456789'`,
				`'1e-20'`, `'1.5E+3'`, `'NaN'`, `'Infinity'`, `'-Infinity'`, `'0.00001'`, `'10000'`,
				`'99999999.99999999'`, `'1e100'`, `'  12.3400 '`, `'-0.0001000'`, `1.50`, `-0.001`, `12345678901234567890`, `NULL`},
			params: []any{
				pgtype.Numeric{Int: big.NewInt(12345), Exp: -2, Valid: true},
				pgtype.Numeric{Int: big.NewInt(-1), Exp: 30, Valid: true},
				pgtype.Numeric{Int: new(big.Int).Exp(big.NewInt(10), big.NewInt(40), nil), Exp: -45, Valid: true},
				pgtype.Numeric{Int: big.NewInt(0), Exp: -5, Valid: true},
				pgtype.Numeric{NaN: true, Valid: true},
				pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true},
				pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
				1.25, "-7.070", nil,
			},
			dests: []func() any{tyVal[pgtype.Numeric](), tyPtr[float64](), tyPtr[string]()},
		},
		{
			name: "float8", pgType: "float8",
			literals: []string{`'0'`, `'-0'`, `'1.5'`, `'-2.25'`, `'NaN'`, `'Infinity'`, `'-Infinity'`, `'inf'`,
				`'1e-308'`, `'4.9e-324'`, `'2.2250738585072014e-308'`, `'1.7976931348623157e308'`, `'1e15'`,
				`'123456789012345'`, `'1e-5'`, `'0.0001'`, `'0.1'`, `'3.141592653589793'`, `' 42 '`, `1e300`, `-0.5`, `NULL`},
			params: []any{0.0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 5e-324,
				math.MaxFloat64, 1e300, 0.1, -123.456e-7, nil},
			dests: []func() any{tyPtr[float64](), tyVal[pgtype.Float8]()},
		},
		{
			name: "bool", pgType: "bool",
			literals: []string{`'t'`, `'f'`, `'true'`, `'FALSE'`, `'yes'`, `'no'`, `'on'`, `'off'`, `'1'`, `'0'`, `' y '`, `true`, `false`, `NULL`},
			params:   []any{true, false, nil},
			dests:    []func() any{tyPtr[bool](), tyVal[pgtype.Bool]()},
		},
		{
			name: "date", pgType: "date", det: true,
			literals: []string{`'2024-02-29'`, `'1999-12-31'`, `'2000-01-01'`, `'0001-01-01'`, `'0001-12-31 BC'`,
				`'4714-11-24 BC'`, `'5874897-12-31'`, `'infinity'`, `'-infinity'`, `'1970-01-01'`,
				`'2024-06-15 13:45:00'`, `'epoch'`, `NULL`},
			params: []any{
				time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
				time.Date(-99, 3, 1, 0, 0, 0, 0, time.UTC),
				time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
				pgtype.Date{InfinityModifier: pgtype.Infinity, Valid: true},
				pgtype.Date{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
				nil,
			},
			dests: []func() any{tyVal[pgtype.Date](), tyPtr[time.Time]()},
		},
		{
			name: "timestamp", pgType: "timestamp",
			literals: []string{`'2024-06-15 13:45:30.123456'`, `'2024-06-15T13:45:30'`, `'2000-01-01 00:00:00'`,
				`'1969-12-31 23:59:59.999999'`, `'0001-01-01 00:00:00'`, `'0044-03-15 12:00:00 BC'`,
				`'4714-11-24 00:00:00 BC'`, `'294276-12-31 23:59:59.999999'`, `'2024-06-15 13:45:30.1'`,
				`'2024-06-15 13:45:30.1234565'`, `'2024-06-15 13:45:30.9999995'`, `'2024-06-15 13:45:30+02'`,
				`'infinity'`, `'-infinity'`, `'2024-12-31 24:00:00'`, `'12345-06-07 08:09:10'`, `'2024-06-15'`, `NULL`},
			params: []any{
				time.Date(2024, 6, 15, 13, 45, 30, 123456000, time.UTC),
				time.Date(1900, 1, 1, 0, 0, 0, 1000, time.UTC),
				pgtype.Timestamp{InfinityModifier: pgtype.Infinity, Valid: true},
				pgtype.Timestamp{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
				nil,
			},
			dests: []func() any{tyVal[pgtype.Timestamp](), tyPtr[time.Time]()},
		},
		{
			name: "timestamptz", pgType: "timestamptz",
			literals: []string{`'2024-06-15 13:45:30.123456'`, `'2024-06-15 13:45:30.123456+00'`,
				`'2024-06-15 13:45:30-08'`, `'2024-06-15 13:45:30+05:45'`, `'2024-06-15 13:45:30.5+0330'`,
				`'2024-01-01T00:00:00Z'`, `'2024-07-01 12:00:00 America/New_York'`,
				`'2024-03-10 02:30:00 America/New_York'`, `'2024-11-03 01:30:00 America/New_York'`,
				`'1800-01-01 00:00:00'`, `'1900-06-01 12:00:00 Europe/Amsterdam'`, `'0001-01-01 00:00:00 BC'`,
				`'0001-01-01 00:00:00+00 BC'`, `'294276-12-31 23:59:59.999999+00'`, `'2100-06-15 12:00:00'`,
				`'infinity'`, `'-infinity'`, `'epoch'`, `'2024-06-15 13:45:30 UTC'`,
				`'2014-10-26 01:30:00 Europe/Moscow'`, `'2024-10-27 01:30:00 Europe/Dublin'`,
				`'2024-03-31 01:30:00 Europe/Dublin'`, `'2024-04-07 01:45:00 Australia/Lord_Howe'`,
				`'2024-10-06 02:15:00 Australia/Lord_Howe'`, `'2024-07-01 12:00:00 CET'`, `'2024-07-01 12:00:00 EET'`,
				`'2024-07-01 12:00:00 MET'`, `'2024-07-01 12:00:00 WET'`, `'2024-07-01 12:00:00 EST'`,
				`'2024-07-01 12:00:00 HST'`, `'2024-07-01 12:00:00 EST5EDT'`, `'2024-01-01 12:00:00 CET'`, `NULL`},
			params: []any{
				time.Date(2024, 6, 15, 13, 45, 30, 123456000, time.UTC),
				time.Date(2024, 6, 15, 13, 45, 30, 999999000, kolkata),
				time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("odd", -(3*3600+25*60+7))),
				pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true},
				pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
				nil,
			},
			dests: []func() any{tyVal[pgtype.Timestamptz](), tyPtr[time.Time]()},
		},
		{
			name: "uuid", pgType: "uuid", det: true,
			literals: []string{`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`, `'{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}'`,
				`'a0eebc999c0b4ef8bb6d6bb9bd380a11'`, `'00000000-0000-0000-0000-000000000000'`,
				`'ffffffff-ffff-ffff-ffff-ffffffffffff'`, `NULL`},
			params: []any{
				tyUUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
				pgtype.UUID{Bytes: tyUUID("123e4567-e89b-12d3-a456-426614174000"), Valid: true},
				"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
				nil,
			},
			dests: []func() any{tyVal[pgtype.UUID](), tyPtr[string]()},
		},
		{
			name: "jsonb", pgType: "jsonb",
			literals: []string{`'{"b": 1, "a": [1, 2, {"c": null}], "aa": "x"}'`, `'{"a":1,"a":2}'`, `'[]'`, `'{}'`,
				`'"str"'`, `'null'`, `'true'`, `'  [1,  2 ] '`, `'{"é": 1, "z": 2, "": 0, "ab": {"b": 1, "a": 2, "b": 3}}'`,
				`'{"nested": {"deep": {"deeper": [true, false, null, "s", {"k": []}]}}}'`,
				`'{"u": "héllo \u00e9 \ud83d\ude00 日本", "esc": "q\"b\\s\/\n\t"}'`, `'"\u0001 ctl"'`,
				`'[1.50, -0, 0, -3.0, 12345678901234567890, 0.000001]'`, `'[1e2, 1E+2, 0.1e-2, -2.5e-3, 1e0]'`, `NULL`},
			params: []any{
				map[string]any{"b": 1, "a": []any{1, "two", nil}, "nested": map[string]any{"x": true}},
				[]any{1.5, "x", nil},
				`{"sent": "as text", "n": [1, 2.50]}`,
				json.RawMessage(`{"raw":[1e2,"\u00e9"]}`),
				nil,
			},
			dests: []func() any{tyPtr[string](), tyPtr[any](), tyPtr[map[string]any]()},
		},
		{
			name: "bytea", pgType: "bytea",
			literals: []string{`'\x'`, `'\x00'`, `'\x0001ff00'`, `'\xDEADbeef'`, `'abc'`, `'\000\001\\'`, `'é'`, `''`, `'\x 00 01'`, `NULL`},
			params:   []any{[]byte{}, []byte{0}, []byte{0, 0, 255, 0}, []byte("with\x00zero"), nil},
			dests:    []func() any{tyVal[[]byte](), tyPtr[[]byte]()},
		},
	}
}

// TestTypesCorpusCoversEveryLogicalType: the type tests have a case for
// every logical type in policy's registry, its twin column of the
// registered PostgreSQL type.
func TestTypesCorpusCoversEveryLogicalType(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range tyCases() {
		p, ok := policy.LogicalType(c.name).PGType()
		if !ok || c.pgType != p.Name() {
			t.Errorf("case %s: twin type %s, registry %v (%v)", c.name, c.pgType, p, ok)
		}
		seen[c.name] = true
	}
	for _, name := range policy.LogicalTypeNames() {
		if !seen[name] {
			t.Errorf("no type test case for logical type %s", name)
		}
	}
}

// tyPolicy encrypts every enc_T.v under one randomized key and each
// enc_T.d under a deterministic key of its own; doctor has every key.
func tyPolicy(cases []tyCase) string {
	var keys, cols, grants []string
	keys = append(keys, "    - {name: rnd, kind: randomized}")
	grants = append(grants, "rnd")
	for _, c := range cases {
		cols = append(cols, fmt.Sprintf("    - {table: public.enc_%s, column: v, key: rnd, type: %s}", c.name, c.name))
		if c.det {
			k := "det_" + c.name
			keys = append(keys, fmt.Sprintf("    - {name: %s, kind: deterministic}", k))
			cols = append(cols, fmt.Sprintf("    - {table: public.enc_%s, column: d, key: %s, type: %s}", c.name, k, c.name))
			grants = append(grants, k)
		}
	}
	g := strings.Join(grants, ", ")
	return "policy:\n  keys:\n" + strings.Join(keys, "\n") + "\n  columns:\n" + strings.Join(cols, "\n") +
		"\n  roles:\n    - {role: doctor, read: [" + g + "], write: [" + g + "]}\n" +
		"    - {role: billing, read: [], on_denied: \"null\"}\n"
}

func tySchema(cases []tyCase) string {
	var b strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&b, "CREATE TABLE public.enc_%s (id int PRIMARY KEY, v bytea, d bytea);\n", c.name)
		fmt.Fprintf(&b, "CREATE TABLE public.plain_%s (id int PRIMARY KEY, v %s);\n", c.name, c.pgType)
	}
	b.WriteString("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;\n")
	return b.String()
}

// tyLiteralText is the value a literal stands for, as a client would send
// it as a text parameter; ok is false for literals that are not plain.
func tyLiteralText(lit string) (v *string, ok bool) {
	switch {
	case lit == "NULL":
		return nil, true
	case strings.HasPrefix(lit, "'") && strings.HasSuffix(lit, "'"):
		s := strings.ReplaceAll(lit[1:len(lit)-1], "''", "'")
		return &s, true
	case strings.HasPrefix(lit, "E'"):
		return nil, false
	}
	return &lit, true
}

func tyConnect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tySetZone(t *testing.T, ctx context.Context, zone string, conns ...*pgx.Conn) {
	t.Helper()
	for _, c := range conns {
		if _, err := c.Exec(ctx, "SET TimeZone = '"+zone+"'"); err != nil {
			t.Fatalf("SET TimeZone: %v", err)
		}
	}
}

// tyResult is a result set with its raw values copied (nil is NULL).
type tyResult struct {
	fields []pgconn.FieldDescription
	rows   [][][]byte
}

func tyQuery(ctx context.Context, conn *pgx.Conn, sql string, args ...any) (*tyResult, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &tyResult{fields: append([]pgconn.FieldDescription(nil), rows.FieldDescriptions()...)}
	for rows.Next() {
		raw := rows.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		res.rows = append(res.rows, row)
	}
	return res, rows.Err()
}

func tyShowRaw(v []byte, format int16) string {
	if v == nil {
		return "NULL"
	}
	if format == 0 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%x", v)
}

// tyShow prints a scanned value (pointers followed) or the scan error, so
// that results decoded from the proxy and from PostgreSQL compare.
func tyShow(v any, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "nil"
		}
		rv = rv.Elem()
	}
	return fmt.Sprintf("%T %+v", rv.Interface(), rv.Interface())
}

// tyEqual compares a parameter with the value scanned back into its type.
func tyEqual(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y := b.(float64)
		return math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y))
	case time.Time:
		return x.Equal(b.(time.Time))
	}
	return reflect.DeepEqual(a, b)
}

func TestTypesRoundTrip(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			px := tyConnect(t, ctx, h.dsn("doctor"))
			dx := tyConnect(t, ctx, h.pg.DSN())
			tySetZone(t, ctx, "Asia/Kolkata", px, dx)
			tyRoundTrip(t, ctx, px, dx, tc)
		})
	}
}

func tyRoundTrip(t *testing.T, ctx context.Context, px, dx *pgx.Conn, tc tyCase) {
	simple := pgx.QueryExecModeSimpleProtocol
	enc, plain := "enc_"+tc.name, "plain_"+tc.name
	what := map[int]string{} // id → how its value was written

	// The same value through the proxy (both columns) and into the twin.
	write := func(id int, desc string, proxySQL, directSQL string, args ...any) {
		t.Helper()
		if _, err := dx.Exec(ctx, directSQL, args...); err != nil {
			t.Fatalf("twin rejects %s: %v", desc, err)
		}
		what[id] = desc
		if _, err := px.Exec(ctx, proxySQL, args...); err != nil {
			t.Errorf("proxy rejects %s (PostgreSQL accepts it): %v", desc, err)
			dx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE id = %d", plain, id))
		}
	}
	// (1) literals, simple protocol: the proxy encrypts the SQL constant.
	for i, lit := range tc.literals {
		id := 1 + i
		pv := lit
		cols := "id, v"
		if tc.det {
			pv, cols = lit+", "+lit, "id, v, d"
		}
		write(id, "literal "+tyTrunc(lit),
			fmt.Sprintf("INSERT INTO %s (%s) VALUES (%d, %s)", enc, cols, id, pv),
			fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, %s)", plain, id, lit), simple)
	}
	pcols, pvals := "id, v", "$1, $2"
	if tc.det {
		pcols, pvals = "id, v, d", "$1, $2, $3"
	}
	proxyIns := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", enc, pcols, pvals)
	directIns := fmt.Sprintf("INSERT INTO %s (id, v) VALUES ($1, $2)", plain)
	args := func(id int, v any) (proxyArgs, directArgs []any) {
		if tc.det {
			return []any{id, v, v}, []any{id, v}
		}
		return []any{id, v}, []any{id, v}
	}
	writeParam := func(id int, desc string, v any) {
		t.Helper()
		pa, da := args(id, v)
		if _, err := dx.Exec(ctx, directIns, da...); err != nil {
			t.Fatalf("twin rejects %s: %v", desc, err)
		}
		what[id] = desc
		if _, err := px.Exec(ctx, proxyIns, pa...); err != nil {
			t.Errorf("proxy rejects %s (PostgreSQL accepts it): %v", desc, err)
			dx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE id = %d", plain, id))
		}
	}
	// (2) the literals' values as text-format parameters (pgx sends Go
	// strings in text format).
	for i, lit := range tc.literals {
		v, ok := tyLiteralText(lit)
		if !ok {
			continue
		}
		var arg any
		if v != nil {
			arg = *v
		}
		writeParam(101+i, "text param "+tyTrunc(lit), arg)
	}
	// (3) Go values, in binary where pgx supports it.
	for i, p := range tc.params {
		writeParam(201+i, fmt.Sprintf("param %T %s", p, tyTrunc(fmt.Sprint(p))), p)
	}

	cols := []string{"v"}
	if tc.det {
		cols = append(cols, "d")
	}
	// (a) text, as PostgreSQL prints it, in several session time zones.
	for _, zone := range []string{"Asia/Kolkata", "America/St_Johns", "UTC"} {
		tySetZone(t, ctx, zone, px, dx)
		want, err := tyQuery(ctx, dx, fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", plain), simple)
		if err != nil {
			t.Fatal(err)
		}
		for _, col := range cols {
			got, err := tyQuery(ctx, px, fmt.Sprintf("SELECT id, %s FROM %s ORDER BY id", col, enc), simple)
			if err != nil {
				t.Errorf("text select %s: %v", col, err)
				continue
			}
			tyCompare(t, fmt.Sprintf("text %s (TimeZone %s)", col, zone), got, want, what)
		}
	}
	tySetZone(t, ctx, "Asia/Kolkata", px, dx)

	// (b) pgx default: extended protocol, binary results.
	want, err := tyQuery(ctx, dx, fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", plain))
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range cols {
		got, err := tyQuery(ctx, px, fmt.Sprintf("SELECT id, %s FROM %s ORDER BY id", col, enc))
		if err != nil {
			t.Errorf("extended select %s: %v", col, err)
			continue
		}
		tyCompare(t, "binary "+col, got, want, what)
		for _, mk := range tc.dests {
			tyCompareScans(t, fmt.Sprintf("scan %s into %T", col, mk()), px.TypeMap(), got, want, mk, what)
		}
	}
	// Extended protocol through pgconn, every result column in text, then
	// every one in binary.
	for _, format := range []int16{0, 1} {
		get := func(conn *pgx.Conn, sql string) (*tyResult, error) {
			rr := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, []int16{format}).Read()
			if rr.Err != nil {
				return nil, rr.Err
			}
			return &tyResult{fields: rr.FieldDescriptions, rows: rr.Rows}, nil
		}
		want, err := get(dx, fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", plain))
		if err != nil {
			t.Fatal(err)
		}
		for _, col := range cols {
			got, err := get(px, fmt.Sprintf("SELECT id, %s FROM %s ORDER BY id", col, enc))
			if err != nil {
				t.Errorf("ExecParams select %s: %v", col, err)
				continue
			}
			tyCompare(t, fmt.Sprintf("ExecParams format %d %s", format, col), got, want, what)
		}
	}

	// Parameters come back as the very Go value that was sent.
	if got, err := tyQuery(ctx, px, fmt.Sprintf("SELECT id, v FROM %s WHERE id > 200 ORDER BY id", enc)); err != nil {
		t.Errorf("select params: %v", err)
	} else {
		for _, row := range got.rows {
			id := 0
			fmt.Sscan(string(tyShowInt(row[0], got.fields[0].Format)), &id)
			p := tc.params[id-201]
			if p == nil {
				if row[1] != nil {
					t.Errorf("param nil came back as %s", tyShowRaw(row[1], got.fields[1].Format))
				}
				continue
			}
			dst := reflect.New(reflect.TypeOf(p))
			err := px.TypeMap().Scan(got.fields[1].DataTypeOID, got.fields[1].Format, row[1], dst.Interface())
			if err != nil || !tyEqual(p, dst.Elem().Interface()) {
				if _, isStr := p.(string); isStr && tc.name != "text" && tc.name != "varchar" && tc.name != "char" && tc.name != "jsonb" {
					continue // a string into another type comes back normalised
				}
				if tc.name == "jsonb" || tc.name == "numeric" {
					continue // compared with PostgreSQL above; Go's form differs
				}
				t.Errorf("param %T %v came back as %v (err %v)", p, p, dst.Elem().Interface(), err)
			}
		}
	}

	// (c) the logical type's OIDs in RowDescription and ParameterDescription.
	tyCheckOIDs(t, ctx, px, dx, tc)

	// (d) deterministic equality finds exactly the rows PostgreSQL's own
	// equality on the real type finds.
	if tc.det {
		tyCheckEquality(t, ctx, px, dx, tc)
	}

	// (e) COPY: what the proxy prints is what PostgreSQL prints, and
	// PostgreSQL's own COPY output loads back to the same values.
	tyCheckCopy(t, ctx, px, dx, tc, what)
}

func tyCheckCopy(t *testing.T, ctx context.Context, px, dx *pgx.Conn, tc tyCase, what map[int]string) {
	t.Helper()
	enc, plain := "enc_"+tc.name, "plain_"+tc.name
	for _, format := range []string{"text", "csv", "binary"} {
		var got, want bytes.Buffer
		if _, err := dx.PgConn().CopyTo(ctx, &want, fmt.Sprintf("COPY %s (id, v) TO STDOUT (FORMAT %s)", plain, format)); err != nil {
			t.Fatal(err)
		}
		if _, err := px.PgConn().CopyTo(ctx, &got, fmt.Sprintf("COPY %s (id, v) TO STDOUT (FORMAT %s)", enc, format)); err != nil {
			t.Errorf("COPY TO (%s): %v", format, err)
		} else if !bytes.Equal(got.Bytes(), tyCanonicalNaN(tc, format, want.Bytes())) {
			g, w := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
			if format == "binary" || len(g) != len(w) {
				t.Errorf("COPY TO (%s) differs:\n  proxy      %q\n  PostgreSQL %q", format, tyTrunc(got.String()), tyTrunc(want.String()))
				continue
			}
			for i := range w {
				if g[i] != w[i] {
					t.Errorf("COPY TO (%s) line %d:\n  proxy      %q\n  PostgreSQL %q", format, i, tyTrunc(g[i]), tyTrunc(w[i]))
				}
			}
		}
		// Load PostgreSQL's output through the proxy.
		if _, err := px.Exec(ctx, "DELETE FROM "+enc); err != nil {
			t.Fatal(err)
		}
		if _, err := px.PgConn().CopyFrom(ctx, bytes.NewReader(want.Bytes()), fmt.Sprintf("COPY %s (id, v) FROM STDIN (FORMAT %s)", enc, format)); err != nil {
			t.Errorf("COPY FROM (%s) of PostgreSQL's output: %v", format, err)
			continue
		}
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			w, err := tyQuery(ctx, dx, fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", plain), mode)
			if err != nil {
				t.Fatal(err)
			}
			g, err := tyQuery(ctx, px, fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", enc), mode)
			if err != nil {
				t.Errorf("select after COPY FROM: %v", err)
				continue
			}
			tyCompare(t, fmt.Sprintf("after COPY FROM (%s), format %d", format, w.fields[1].Format), g, w, what)
		}
	}
}

func tyShowInt(v []byte, format int16) []byte {
	if format == 0 {
		return v
	}
	var n int32
	for _, b := range v {
		n = n<<8 | int32(b)
	}
	return []byte(fmt.Sprint(n))
}

func tyBothNaN(a, b []byte) bool {
	if len(a) != 8 || len(b) != 8 {
		return false
	}
	return math.IsNaN(math.Float64frombits(binary.BigEndian.Uint64(a))) && math.IsNaN(math.Float64frombits(binary.BigEndian.Uint64(b)))
}

// tyCanonicalNaN replaces the NaN Go's math.NaN() sends with the one
// pgcloak keeps (see tyCompare) in binary COPY data of float8.
func tyCanonicalNaN(tc tyCase, format string, b []byte) []byte {
	if tc.name != "float8" || format != "binary" {
		return b
	}
	goNaN := binary.BigEndian.AppendUint64(nil, math.Float64bits(math.NaN()))
	return bytes.ReplaceAll(b, goNaN, binary.BigEndian.AppendUint64(nil, 0x7FF8000000000000))
}

func tyTrunc(s string) string {
	if len(s) > 60 {
		return s[:60] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

// tyCompare checks a proxy result against the twin's, row by row.
func tyCompare(t *testing.T, label string, got, want *tyResult, what map[int]string) {
	t.Helper()
	if g, w := got.fields[1].DataTypeOID, want.fields[1].DataTypeOID; g != w {
		t.Errorf("%s: column type OID %d, PostgreSQL %d", label, g, w)
	}
	if g, w := got.fields[1].Format, want.fields[1].Format; g != w {
		t.Errorf("%s: format %d, PostgreSQL %d", label, g, w)
		return
	}
	if len(got.rows) != len(want.rows) {
		t.Errorf("%s: %d rows, PostgreSQL %d", label, len(got.rows), len(want.rows))
		return
	}
	f := want.fields[1].Format
	for i := range want.rows {
		g, w := got.rows[i], want.rows[i]
		if !bytes.Equal(g[0], w[0]) {
			t.Errorf("%s: row %d id %s, PostgreSQL %s", label, i, g[0], w[0])
			return
		}
		if (g[1] == nil) != (w[1] == nil) || !bytes.Equal(g[1], w[1]) {
			if f == 1 && want.fields[1].DataTypeOID == pgtype.Float8OID && tyBothNaN(g[1], w[1]) {
				// pgcloak canonicalises every NaN to the one PostgreSQL's
				// float8in produces, so that deterministic equality treats
				// NaNs as equal as PostgreSQL does; a binary NaN's payload
				// bits are not kept.
				continue
			}
			id := 0
			fmt.Sscan(string(tyShowInt(w[0], want.fields[0].Format)), &id)
			t.Errorf("%s: %s:\n  proxy      %s\n  PostgreSQL %s", label, what[id], tyTrunc(tyShowRaw(g[1], f)), tyTrunc(tyShowRaw(w[1], f)))
		}
	}
}

// tyCompareScans decodes both results into fresh destinations and compares.
func tyCompareScans(t *testing.T, label string, m *pgtype.Map, got, want *tyResult, mk func() any, what map[int]string) {
	t.Helper()
	if len(got.rows) != len(want.rows) {
		return // reported by tyCompare
	}
	for i := range want.rows {
		gd, wd := mk(), mk()
		gerr := m.Scan(got.fields[1].DataTypeOID, got.fields[1].Format, got.rows[i][1], gd)
		werr := m.Scan(want.fields[1].DataTypeOID, want.fields[1].Format, want.rows[i][1], wd)
		if g, w := tyShow(gd, gerr), tyShow(wd, werr); g != w {
			id := 0
			fmt.Sscan(string(tyShowInt(want.rows[i][0], want.fields[0].Format)), &id)
			t.Errorf("%s: %s:\n  proxy      %s\n  PostgreSQL %s", label, what[id], tyTrunc(g), tyTrunc(w))
		}
	}
}

func tyCheckOIDs(t *testing.T, ctx context.Context, px, dx *pgx.Conn, tc tyCase) {
	t.Helper()
	enc, plain := "enc_"+tc.name, "plain_"+tc.name
	type pair struct{ proxySQL, directSQL string }
	stmts := []pair{
		{fmt.Sprintf("INSERT INTO %s (id, v) VALUES ($1, $2) RETURNING v", enc), fmt.Sprintf("INSERT INTO %s (id, v) VALUES ($1, $2) RETURNING v", plain)},
		{fmt.Sprintf("UPDATE %s SET v = $1 WHERE id = $2", enc), fmt.Sprintf("UPDATE %s SET v = $1 WHERE id = $2", plain)},
		{fmt.Sprintf("SELECT id, v AS alias FROM %s WHERE id = $1", enc), fmt.Sprintf("SELECT id, v AS alias FROM %s WHERE id = $1", plain)},
	}
	if tc.det {
		stmts = append(stmts,
			pair{fmt.Sprintf("SELECT d FROM %s WHERE d = $1", enc), fmt.Sprintf("SELECT v AS d FROM %s WHERE v = $1", plain)},
			pair{fmt.Sprintf("SELECT count(*) FROM %s WHERE d IN ($1, $2) OR d IS NULL", enc), fmt.Sprintf("SELECT count(*) FROM %s WHERE v IN ($1, $2) OR v IS NULL", plain)})
	}
	for _, s := range stmts {
		got, err := px.Prepare(ctx, "", s.proxySQL)
		if err != nil {
			t.Errorf("prepare %q: %v", s.proxySQL, err)
			continue
		}
		want, err := dx.Prepare(ctx, "", s.directSQL)
		if err != nil {
			t.Fatalf("prepare %q directly: %v", s.directSQL, err)
		}
		if !reflect.DeepEqual(got.ParamOIDs, want.ParamOIDs) {
			t.Errorf("%q: ParamOIDs %v, PostgreSQL %v", s.proxySQL, got.ParamOIDs, want.ParamOIDs)
		}
		var g, w []string
		for _, f := range got.Fields {
			g = append(g, fmt.Sprintf("%s:%d/%d/%d", f.Name, f.DataTypeOID, f.DataTypeSize, f.TypeModifier))
		}
		for _, f := range want.Fields {
			w = append(w, fmt.Sprintf("%s:%d/%d/%d", f.Name, f.DataTypeOID, f.DataTypeSize, f.TypeModifier))
		}
		if strings.Join(g, " ") != strings.Join(w, " ") {
			t.Errorf("%q: fields %v, PostgreSQL %v", s.proxySQL, g, w)
		}
	}
	// The portal's description on a real query, through pgconn.
	rr := px.PgConn().ExecParams(ctx, fmt.Sprintf("SELECT v, id FROM %s LIMIT 0", enc), nil, nil, nil, nil)
	fds := rr.FieldDescriptions()
	if _, err := rr.Close(); err != nil {
		t.Errorf("ExecParams: %v", err)
	} else if want := tyTypeOID(t, ctx, dx, tc.pgType); len(fds) != 2 || fds[0].DataTypeOID != want {
		t.Errorf("ExecParams fields %+v, want type OID %d", fds, want)
	}
}

func tyTypeOID(t *testing.T, ctx context.Context, dx *pgx.Conn, typ string) uint32 {
	var oid uint32
	if err := dx.QueryRow(ctx, "SELECT $1::regtype::oid", typ).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	return oid
}

// tyCheckEquality counts matches of every written value on the
// deterministic column and on the twin, by literal and by parameter.
func tyCheckEquality(t *testing.T, ctx context.Context, px, dx *pgx.Conn, tc tyCase) {
	t.Helper()
	simple := pgx.QueryExecModeSimpleProtocol
	enc, plain := "enc_"+tc.name, "plain_"+tc.name
	count := func(conn *pgx.Conn, sql string, args ...any) (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, sql, args...).Scan(&n)
		return n, err
	}
	for _, lit := range tc.literals {
		if lit == "NULL" {
			continue
		}
		want, err := count(dx, fmt.Sprintf("SELECT count(*) FROM %s WHERE v = %s", plain, lit), simple)
		if err != nil {
			t.Fatal(err)
		}
		got, err := count(px, fmt.Sprintf("SELECT count(*) FROM %s WHERE d = %s", enc, lit), simple)
		if err != nil || got != want {
			t.Errorf("WHERE d = %s: %d rows (err %v), PostgreSQL %d", tyTrunc(lit), got, err, want)
		}
		if v, ok := tyLiteralText(lit); ok && v != nil {
			got, err := count(px, fmt.Sprintf("SELECT count(*) FROM %s WHERE d = $1", enc), *v)
			if err != nil || got != want {
				t.Errorf("WHERE d = $1 (text %s): %d rows (err %v), PostgreSQL %d", tyTrunc(lit), got, err, want)
			}
		}
	}
	for _, p := range tc.params {
		if p == nil {
			continue
		}
		want, err := count(dx, fmt.Sprintf("SELECT count(*) FROM %s WHERE v = $1", plain), p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := count(px, fmt.Sprintf("SELECT count(*) FROM %s WHERE d = $1", enc), p)
		if err != nil || got != want {
			t.Errorf("WHERE d = $1 (%T %v): %d rows (err %v), PostgreSQL %d", p, p, got, err, want)
		}
		got, err = count(px, fmt.Sprintf("SELECT count(*) FROM %s WHERE d IN ($1, $2)", enc), p, p)
		if err != nil || got != want {
			t.Errorf("WHERE d IN ($1, $2) (%T %v): %d rows (err %v), PostgreSQL %d", p, p, got, err, want)
		}
	}
}

// TestTypesSessionTimeZone: timestamptz literals without a zone are read
// in the session's TimeZone, whatever way it was set, including wall-clock
// readings that a DST transition skips or repeats.
func TestTypesSessionTimeZone(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	lits := []string{`'2024-03-10 02:30:00'`, `'2024-11-03 01:30:00.25'`, `'2024-06-15 12:00:00.5'`,
		`'1883-11-18 12:03:58'`, `'2024-03-31 01:30:00'`, `'2024-10-27 01:30:00'`, `'2024-04-07 01:45:00'`,
		`'2024-10-06 02:15:00'`, `'2014-10-26 01:30:00'`, `'1900-01-01 00:00:00'`, `'2200-07-01 12:00:00'`}
	sets := []string{
		"SET TimeZone = 'America/New_York'", "SET TimeZone = 'Europe/Dublin'",
		"SET TimeZone = 'Australia/Lord_Howe'", "SET TimeZone = 'Pacific/Chatham'",
		"SET TimeZone = 'Europe/Moscow'", "SET TIME ZONE 'America/St_Johns'",
		"SET TimeZone = 'EST5EDT'", "SET TimeZone = 'UTC'", "SET TimeZone TO DEFAULT",
	}
	what := map[int]string{}
	id := 0
	for _, set := range sets {
		for _, c := range []*pgx.Conn{px, dx} {
			if _, err := c.Exec(ctx, set, simple); err != nil {
				t.Fatalf("%s: %v", set, err)
			}
		}
		for _, lit := range lits {
			id++
			what[id] = set + ": literal " + lit
			if _, err := dx.Exec(ctx, fmt.Sprintf("INSERT INTO plain_timestamptz (id, v) VALUES (%d, %s)", id, lit), simple); err != nil {
				t.Fatal(err)
			}
			if _, err := px.Exec(ctx, fmt.Sprintf("INSERT INTO enc_timestamptz (id, v) VALUES (%d, %s)", id, lit), simple); err != nil {
				t.Errorf("%s: %v", what[id], err)
			}
			id++
			what[id] = set + ": text param " + lit
			arg, _ := tyLiteralText(lit)
			if _, err := dx.Exec(ctx, "INSERT INTO plain_timestamptz (id, v) VALUES ($1, $2)", id, *arg); err != nil {
				t.Fatal(err)
			}
			if _, err := px.Exec(ctx, "INSERT INTO enc_timestamptz (id, v) VALUES ($1, $2)", id, *arg); err != nil {
				t.Errorf("%s: %v", what[id], err)
			}
		}
	}
	// A SET LOCAL ends with its transaction; one in a rolled-back
	// transaction is undone.
	for _, tx := range []string{"COMMIT", "ROLLBACK"} {
		id++
		what[id] = "SET LOCAL TimeZone inside a transaction ending in " + tx
		for _, c := range []*pgx.Conn{px, dx} {
			table := "plain_timestamptz"
			if c == px {
				table = "enc_timestamptz"
			}
			if _, err := c.Exec(ctx, "SET TimeZone = 'Asia/Kolkata'", simple); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "BEGIN; SET LOCAL TimeZone = 'America/Los_Angeles'", simple); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, '2024-01-01 10:00:00')", table, id), simple); err != nil {
				t.Errorf("%s: %v", what[id], err)
			}
			if _, err := c.Exec(ctx, tx, simple); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, '2024-01-01 10:00:00')", table, id+1000), simple); err != nil {
				t.Errorf("%s: %v", what[id], err)
			}
			what[id+1000] = "after " + what[id]
		}
	}
	for _, set := range append(sets, "SET TimeZone = 'Asia/Kolkata'") {
		for _, c := range []*pgx.Conn{px, dx} {
			if _, err := c.Exec(ctx, set, simple); err != nil {
				t.Fatalf("%s: %v", set, err)
			}
		}
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			want, err := tyQuery(ctx, dx, "SELECT id, v FROM plain_timestamptz ORDER BY id", mode)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tyQuery(ctx, px, "SELECT id, v FROM enc_timestamptz ORDER BY id", mode)
			if err != nil {
				t.Fatal(err)
			}
			tyCompare(t, fmt.Sprintf("shown after %s, format %d", set, want.fields[1].Format), got, want, what)
		}
	}
}

// TestTypesOffsetTimeZones: TimeZone set to a UTC offset rather than a
// zone name (PostgreSQL reports these as POSIX strings like <+02>-02).
func TestTypesOffsetTimeZones(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	sets := []string{"SET TIME ZONE 2", "SET TIME ZONE -3.5", "SET TIME ZONE INTERVAL '+05:45' HOUR TO MINUTE",
		"SET TimeZone = 'UTC+3'", "SET TimeZone = 'Etc/GMT-14'", "SET TimeZone = 'XYZ-3:30'"}
	what := map[int]string{}
	for i, set := range sets {
		what[i+1] = set
		for _, c := range []*pgx.Conn{px, dx} {
			table := "plain_timestamptz"
			if c == px {
				table = "enc_timestamptz"
			}
			if _, err := c.Exec(ctx, set, simple); err != nil {
				t.Fatalf("%s: %v", set, err)
			}
			if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, '2024-06-15 12:00:00')", table, i+1), simple); err != nil {
				t.Errorf("%s: %v", set, err)
			}
		}
	}
	for _, set := range sets {
		for _, c := range []*pgx.Conn{px, dx} {
			if _, err := c.Exec(ctx, set, simple); err != nil {
				t.Fatalf("%s: %v", set, err)
			}
		}
		want, err := tyQuery(ctx, dx, "SELECT id, v FROM plain_timestamptz ORDER BY id", simple)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tyQuery(ctx, px, "SELECT id, v FROM enc_timestamptz ORDER BY id", simple)
		if err != nil {
			t.Fatal(err)
		}
		tyCompare(t, "shown after "+set, got, want, what)
	}
}

// TestTypesDeterministicCanonical: one value written in different client
// forms (text with leading zeros or padding, other spellings, binary)
// encrypts to one ciphertext on a deterministic column, so equality finds
// every row whichever form it searches with.
func TestTypesDeterministicCanonical(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	type form struct {
		lit string // SQL literal, simple protocol
		arg any    // or a parameter, extended protocol
	}
	groups := []struct {
		typ   string
		forms []form
	}{
		{"int4", []form{{lit: `'007'`}, {arg: int32(7)}, {lit: `7`}, {lit: `' +7 '`}, {arg: "0007"}, {arg: int64(7)}, {lit: `'7'`}}},
		{"date", []form{{lit: `'2024-02-29'`}, {arg: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)}, {lit: `'2024-02-29 23:59:59'`},
			{arg: "2024-2-29"}, {arg: pgtype.Date{Time: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), Valid: true}}}},
		{"uuid", []form{{lit: `'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`}, {lit: `'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'`},
			{arg: tyUUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")}, {arg: "A0EEBC999C0B4EF8BB6D6BB9BD380A11"}}},
		{"text", []form{{lit: `'héllo'`}, {lit: `E'h\u00e9llo'`}, {lit: `U&'h\00e9llo'`}, {arg: "héllo"}, {lit: `$$héllo$$`}}},
	}
	for _, g := range groups {
		t.Run(g.typ, func(t *testing.T) {
			enc := "enc_" + g.typ
			for i, f := range g.forms {
				var err error
				if f.lit != "" {
					_, err = px.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, d) VALUES (%d, %s)", enc, i+1, f.lit), simple)
				} else {
					_, err = px.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, d) VALUES ($1, $2)", enc), i+1, f.arg)
				}
				if err != nil {
					t.Fatalf("insert form %+v: %v", f, err)
				}
			}
			// At rest: one ciphertext, and not the plaintext.
			var cts [][]byte
			rows, err := dx.Query(ctx, fmt.Sprintf("SELECT d FROM %s ORDER BY id", enc))
			if err != nil {
				t.Fatal(err)
			}
			cts, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
			if err != nil {
				t.Fatal(err)
			}
			for i, ct := range cts {
				if !bytes.Equal(ct, cts[0]) {
					t.Errorf("form %+v stored %x, form %+v stored %x", g.forms[i], ct, g.forms[0], cts[0])
				}
			}
			if bytes.Contains(cts[0], []byte("llo")) || len(cts[0]) < 16 {
				t.Errorf("stored value %x does not look like ciphertext", cts[0])
			}
			// Any form finds every row.
			for _, f := range g.forms {
				var n int
				if f.lit != "" {
					err = px.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE d = %s", enc, f.lit), simple).Scan(&n)
				} else {
					err = px.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE d = $1", enc), f.arg).Scan(&n)
				}
				if err != nil || n != len(g.forms) {
					t.Errorf("WHERE d = %+v: %d rows (err %v), want %d", f, n, err, len(g.forms))
				}
			}
		})
	}
}

// TestTypesInvalidValues: a value that is not valid for the column's
// logical type is refused with 22P02, never reaches PostgreSQL, is not
// echoed back, and leaves the session usable.
func TestTypesInvalidValues(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	det := map[string]bool{}
	for _, c := range cases {
		det[c.name] = c.det
	}
	bad := []struct{ typ, value string }{
		{"int4", "abc"}, {"int4", "2147483648"}, {"int4", "1.5"}, {"int4", ""}, {"int4", "12abc"},
		{"int2", "40000"}, {"int2", "-32769"}, {"int8", "9223372036854775808"},
		{"date", "2024-13-45"}, {"date", "2023-02-29"}, {"date", "not a date"}, {"date", "5874898-01-01"},
		{"timestamp", "2024-01-01 25:00:00"}, {"timestamp", "2024-01-01 12:61:00"},
		{"timestamptz", "2024-01-01 12:00:00 Mars/Olympus"},
		{"uuid", "a0eebc99-9c0b-4ef8-bb6d"}, {"uuid", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-00"},
		{"jsonb", `{"a":`}, {"jsonb", `{a: 1}`}, {"jsonb", `"\u0000"`}, {"jsonb", `[1, 2,]`},
		{"numeric", "abc"}, {"numeric", "1e-99999"}, {"numeric", "1.2.3"},
		{"float8", "abc"}, {"float8", "1e999"}, {"float8", "1e-999"},
		{"bool", "maybe"}, {"bool", "o"},
		{"bytea", `\xabc`}, {"bytea", `\q`},
	}
	usable := func(t *testing.T, after string) {
		t.Helper()
		var one int
		if err := px.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("session unusable after %s: %v", after, err)
		}
	}
	// want is the SQLSTATE PostgreSQL gives for the value in a plain column.
	var want string
	expect := func(t *testing.T, what, value string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != want {
			t.Errorf("%s: want SQLSTATE %s (PostgreSQL's), got %v", what, want, err)
			return
		}
		if !strings.HasPrefix(pe.Message, "pgcloak: ") {
			t.Errorf("%s: message %q lacks the pgcloak prefix", what, pe.Message)
		}
		// The value is plaintext: the error names the column and type only.
		if len(value) >= 5 && strings.Contains(pe.Message+pe.Detail+pe.Hint, value) {
			t.Errorf("%s: error %q echoes the value", what, pe.Message)
		}
	}
	for i, b := range bad {
		t.Run(b.typ+"/"+b.value, func(t *testing.T) {
			// PostgreSQL itself rejects it for the real type.
			_, err := dx.Exec(ctx, fmt.Sprintf("INSERT INTO plain_%s (id, v) VALUES ($1, $2)", b.typ), i+1, b.value)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				dx.Exec(ctx, fmt.Sprintf("DELETE FROM plain_%s", b.typ))
				t.Fatalf("PostgreSQL accepts %q as %s: not a test value (%v)", b.value, b.typ, err)
			}
			want = pe.Code
			quoted := "'" + strings.ReplaceAll(b.value, "'", "''") + "'"
			what := fmt.Sprintf("literal %s into %s", quoted, b.typ)
			_, err = px.Exec(ctx, fmt.Sprintf("INSERT INTO enc_%s (id, v) VALUES (%d, %s)", b.typ, i+1, quoted), simple)
			expect(t, what, b.value, err)
			usable(t, what)
			what = fmt.Sprintf("text parameter %q into %s", b.value, b.typ)
			_, err = px.Exec(ctx, fmt.Sprintf("INSERT INTO enc_%s (id, v) VALUES ($1, $2)", b.typ), i+1, b.value)
			expect(t, what, b.value, err)
			usable(t, what)
			if det[b.typ] {
				what = fmt.Sprintf("WHERE d = %s on %s", quoted, b.typ)
				_, err = px.Exec(ctx, fmt.Sprintf("SELECT id FROM enc_%s WHERE d = %s", b.typ, quoted), simple)
				expect(t, what, b.value, err)
				usable(t, what)
				what = fmt.Sprintf("WHERE d = $1 (%q) on %s", b.value, b.typ)
				_, err = px.Exec(ctx, fmt.Sprintf("SELECT id FROM enc_%s WHERE d = $1", b.typ), b.value)
				expect(t, what, b.value, err)
				usable(t, what)
			}
		})
	}
	// Malformed binary parameters.
	binBad := []struct {
		typ   string
		value []byte
	}{
		{"int4", []byte{0, 0, 7}}, {"int2", []byte{0, 0, 0, 7}}, {"int8", []byte{1}}, {"bool", []byte{1, 1}},
		{"float8", []byte{0, 0, 0, 0}}, {"uuid", make([]byte, 15)}, {"jsonb", []byte("\x02{}")},
		{"date", []byte{0x7f, 0xff, 0xff, 0xfe}}, {"timestamp", []byte{1, 2, 3}}, {"numeric", []byte{0, 1}},
	}
	for _, b := range binBad {
		t.Run("binary/"+b.typ, func(t *testing.T) {
			// PostgreSQL answers a malformed binary value with 08P01
			// (too short), 22P03 (too long, or a field its type does not
			// allow) or XX000 (an unknown jsonb version).
			rr := dx.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO plain_%s (id, v) VALUES (999, $1)", b.typ),
				[][]byte{b.value}, nil, []int16{1}, nil).Read()
			var pe *pgconn.PgError
			if !errors.As(rr.Err, &pe) {
				t.Fatalf("PostgreSQL accepts binary %x as %s: not a test value (%v)", b.value, b.typ, rr.Err)
			}
			want = pe.Code
			rr = px.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO enc_%s (id, v) VALUES (999, $1)", b.typ),
				[][]byte{b.value}, nil, []int16{1}, nil).Read()
			expect(t, fmt.Sprintf("binary %x into %s", b.value, b.typ), "", rr.Err)
			usable(t, "binary "+b.typ)
		})
	}
	// Inside a transaction the refusal aborts it, as PostgreSQL's own
	// error would; the session recovers after ROLLBACK.
	t.Run("transaction", func(t *testing.T) {
		tx, err := px.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO enc_int4 (id, v) VALUES (1, 5)"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "INSERT INTO enc_int4 (id, v) VALUES ($1, $2)", 2, "abc")
		want = "22P02" // PostgreSQL's for 'abc' as int4
		expect(t, "in a transaction", "abc", err)
		_, err = tx.Exec(ctx, "SELECT 1")
		if pgCode(err) != "25P02" {
			t.Errorf("after the refusal in a transaction: want 25P02, got %v", err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		usable(t, "ROLLBACK")
	})
	// Nothing was stored, and a valid write still works.
	for _, c := range cases {
		var n int
		if err := dx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM enc_%s", c.name)).Scan(&n); err != nil || n != 0 {
			t.Errorf("enc_%s has %d rows after refused writes (err %v)", c.name, n, err)
		}
	}
	if _, err := px.Exec(ctx, "INSERT INTO enc_int4 (id, v, d) VALUES (1, '42', $1)", int32(42)); err != nil {
		t.Fatal(err)
	}
	var v, d int32
	if err := px.QueryRow(ctx, "SELECT v, d FROM enc_int4 WHERE d = 42").Scan(&v, &d); err != nil || v != 42 || d != 42 {
		t.Fatalf("after refusals: v=%d d=%d err=%v", v, d, err)
	}
}

// TestTypesByteaOutputEscape: with bytea_output = escape PostgreSQL sends
// the stored ciphertext in escape format; encrypted columns still decrypt,
// in query results and in COPY.
func TestTypesByteaOutputEscape(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	rows := map[string][]string{
		"text":  {`'héllo'`, `''`, `NULL`, `E'back\\slash'`},
		"int4":  {`'-7'`, `2147483647`},
		"bytea": {`'\x00ff5c41'`, `'\x'`, `NULL`},
	}
	what := map[int]string{}
	for typ, lits := range rows {
		for i, lit := range lits {
			what[i+1] = lit
			if _, err := dx.Exec(ctx, fmt.Sprintf("INSERT INTO plain_%s (id, v) VALUES (%d, %s)", typ, i+1, lit), simple); err != nil {
				t.Fatal(err)
			}
			if _, err := px.Exec(ctx, fmt.Sprintf("INSERT INTO enc_%s (id, v, d) VALUES (%d, %s, NULL)", typ, i+1, lit), simple); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []*pgx.Conn{px, dx} {
		if _, err := c.Exec(ctx, "SET bytea_output = 'escape'"); err != nil {
			t.Fatal(err)
		}
	}
	for typ := range rows {
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			want, err := tyQuery(ctx, dx, fmt.Sprintf("SELECT id, v FROM plain_%s ORDER BY id", typ), mode)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tyQuery(ctx, px, fmt.Sprintf("SELECT id, v FROM enc_%s ORDER BY id", typ), mode)
			if err != nil {
				t.Errorf("%s with bytea_output = escape: %v", typ, err)
				continue
			}
			tyCompare(t, fmt.Sprintf("%s with bytea_output = escape, mode %v", typ, mode), got, want, what)
		}
		var got, want bytes.Buffer
		if _, err := dx.PgConn().CopyTo(ctx, &want, fmt.Sprintf("COPY plain_%s (id, v) TO STDOUT (FORMAT csv)", typ)); err != nil {
			t.Fatal(err)
		}
		if _, err := px.PgConn().CopyTo(ctx, &got, fmt.Sprintf("COPY enc_%s (id, v) TO STDOUT (FORMAT csv)", typ)); err != nil {
			t.Errorf("COPY %s with bytea_output = escape: %v", typ, err)
		} else if got.String() != want.String() {
			t.Errorf("COPY %s with bytea_output = escape:\n  proxy      %q\n  PostgreSQL %q", typ, got.String(), want.String())
		}
	}
}

// TestTypesExtraFloatDigits: PostgreSQL prints float8 with %.{15+n}g when
// a session sets extra_float_digits to n <= 0 (the shortest exact form
// otherwise); the proxy follows the setting through SET, SET LOCAL,
// set_config and RESET, and prints encrypted float8 values alike.
func TestTypesExtraFloatDigits(t *testing.T) {
	cases := tyCases()
	h := newHarness(t, tyPolicy(cases), tySchema(cases))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	px := tyConnect(t, ctx, h.dsn("doctor"))
	dx := tyConnect(t, ctx, h.pg.DSN())
	simple := pgx.QueryExecModeSimpleProtocol
	lits := []string{`'0.30000000000000004'`, `'1e300'`, `'3.141592653589793'`, `'1e-5'`, `'123456789012345678'`}
	what := map[int]string{}
	for i, lit := range lits {
		what[i+1] = lit
		if _, err := dx.Exec(ctx, fmt.Sprintf("INSERT INTO plain_float8 (id, v) VALUES (%d, %s)", i+1, lit), simple); err != nil {
			t.Fatal(err)
		}
		if _, err := px.Exec(ctx, fmt.Sprintf("INSERT INTO enc_float8 (id, v) VALUES (%d, %s)", i+1, lit), simple); err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range []string{
		"SET extra_float_digits = 0", "SET extra_float_digits = -5", "SET extra_float_digits TO '-15'",
		"SET extra_float_digits = 3", "SELECT pg_catalog.set_config('extra_float_digits', '-3', false)",
		"RESET extra_float_digits",
	} {
		tySetting(t, ctx, set, px, dx)
		want, err := tyQuery(ctx, dx, "SELECT id, v FROM plain_float8 ORDER BY id", simple)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tyQuery(ctx, px, "SELECT id, v FROM enc_float8 ORDER BY id", simple)
		if err != nil {
			t.Fatal(err)
		}
		tyCompare(t, set, got, want, what)
	}
	// SET LOCAL lasts until the transaction ends.
	tySetting(t, ctx, "SET extra_float_digits = 0", px, dx)
	tySetting(t, ctx, "BEGIN; SET LOCAL extra_float_digits = -10; COMMIT", px, dx)
	want, err := tyQuery(ctx, dx, "SELECT id, v FROM plain_float8 ORDER BY id", simple)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tyQuery(ctx, px, "SELECT id, v FROM enc_float8 ORDER BY id", simple)
	if err != nil {
		t.Fatal(err)
	}
	tyCompare(t, "after SET LOCAL", got, want, what)
}

func tySetting(t *testing.T, ctx context.Context, set string, conns ...*pgx.Conn) {
	t.Helper()
	for _, c := range conns {
		if _, err := c.Exec(ctx, set); err != nil {
			t.Fatalf("%s: %v", set, err)
		}
	}
}

const tzPolicy = `
policy:
  keys:
    - {name: k, kind: randomized}
  columns:
    - {table: public.tz_t, column: ts, key: k, type: timestamptz}
  roles:
    - {role: doctor, read: [k], write: [k]}
`

// 3.2: a TimeZone change and a timestamptz literal in one string: the
// literal was encrypted in the old zone.
func TestTimeZoneChangeAndLiteralInOneStringRefused(t *testing.T) {
	h := newHarness(t, tzPolicy, "CREATE TABLE public.tz_t (id serial, ts bytea); GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;")
	c := protoConnect(t, h, "doctor")
	c.query("SET TIME ZONE 'UTC'")
	for _, sql := range []string{
		"SET TIME ZONE 'Asia/Tokyo'; INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"SELECT set_config('TimeZone', 'Asia/Tokyo', false); INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"RESET ALL; INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')",
		"SET TIME ZONE 'Asia/Tokyo'; COPY tz_t (ts) FROM STDIN",
		"SET TIME ZONE 'Asia/Tokyo'; SELECT ts FROM tz_t",
	} {
		wantTokens(t, sql, c.query(sql), "E:0A000", "Z:I")
	}
	// Sent separately, the literal is read in the new zone.
	wantTokens(t, "set", c.query("SET TIME ZONE 'Asia/Tokyo'"), "C:SET", "Z:I")
	wantTokens(t, "insert", c.query("INSERT INTO tz_t (ts) VALUES ('2024-01-01 10:00')"), "C:INSERT 0 1", "Z:I")
	wantTokens(t, "utc", c.query("SET TIME ZONE 'UTC'"), "C:SET", "Z:I")
	wantTokens(t, "read back", c.query("SELECT ts FROM tz_t"), "Row:ts/1184", "D:2024-01-01 01:00:00+00", "C:SELECT 1", "Z:I")
	// Strings without such a value keep working.
	wantTokens(t, "plain", c.query("SET TIME ZONE 'Asia/Tokyo'; SELECT count(*) FROM tz_t"), "C:SET", "Row:count/20", "D:1", "C:SELECT 1", "Z:I")
}
