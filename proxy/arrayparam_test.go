package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy"
)

// Issue 8 finding 6: col = ANY($1) with an array parameter on a
// deterministic column, the drivers' "id in list" (pgx, node-postgres,
// lib/pq's pq.Array, JDBC setArray). Every query runs twice: through
// pgcloak on ap_enc, whose columns are encrypted, and straight against
// PostgreSQL on its plaintext twin ap_plain; the two must agree, row by
// row, on the comparison's value (true, false or NULL), or fail with the
// same SQLSTATE.

const apPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: badge, kind: deterministic}
    - {name: notes, kind: randomized}
  columns:
    - {table: public.ap_enc, column: ssn, key: ssn, type: text}
    - {table: public.ap_enc, column: badge, key: badge, type: int4}
    - {table: public.ap_enc, column: note, key: notes, type: text}
  roles:
    - {role: doctor, read: [ssn, badge, notes], write: [ssn, badge, notes]}
    - {role: billing, read: [badge], on_denied: "null"}
`

const apSchema = `
CREATE TABLE public.ap_enc (id int PRIMARY KEY, ssn bytea, badge bytea, note bytea);
CREATE TABLE public.ap_plain (id int PRIMARY KEY, ssn text, badge int4, note text);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
`

// apRow is a row of both tables.
type apRow struct {
	id    int
	ssn   *string
	badge *int32
}

func apStr(s string) *string { return &s }
func apInt(i int32) *int32   { return &i }

var apRows = []apRow{
	{1, apStr("a"), apInt(1)},
	{2, apStr("b c"), apInt(2)},
	{3, apStr(`d"e`), apInt(3)},
	{4, apStr(`f\g`), apInt(-5)},
	{5, apStr("NULL"), apInt(2147483647)},
	{6, apStr(""), apInt(0)},
	{7, apStr(" sp "), nil},
	{8, apStr("é,{}"), apInt(7)},
	{9, nil, apInt(8)},
}

// apQuery is one comparison, with its parameter as pgx sends it (args)
// or as a text-format literal declared oid (text).
type apQuery struct {
	name string
	cond string // on columns of the table (named TABLE); $1 is the array
	args []any
	text *string
	oid  uint32
}

func (q apQuery) sql(table string) string {
	return "SELECT id, (" + q.cond + ") FROM " + table + " ORDER BY id"
}

// apResult runs q and sums it up: "1:t 2:f 3:null …", or "error <SQLSTATE>".
func apResult(ctx context.Context, conn *pgx.Conn, table string, q apQuery) string {
	if q.text != nil || q.args == nil {
		var vals [][]byte
		var oids []uint32
		var formats []int16
		if q.text != nil {
			vals, oids, formats = [][]byte{[]byte(*q.text)}, []uint32{q.oid}, []int16{0}
		} else {
			vals, oids, formats = [][]byte{nil}, []uint32{q.oid}, []int16{0}
		}
		res := conn.PgConn().ExecParams(ctx, q.sql(table), vals, oids, formats, nil).Read()
		if res.Err != nil {
			return "error " + pgCode(res.Err)
		}
		var out []string
		for _, r := range res.Rows {
			v := "null"
			if r[1] != nil {
				v = string(r[1])
			}
			out = append(out, string(r[0])+":"+v)
		}
		return strings.Join(out, " ")
	}
	rows, err := conn.Query(ctx, q.sql(table), q.args...)
	if err != nil {
		return "error " + pgCode(err)
	}
	var out []string
	for rows.Next() {
		var id int
		var b *bool
		if err := rows.Scan(&id, &b); err != nil {
			rows.Close()
			return "error scan " + err.Error()
		}
		v := "null"
		if b != nil {
			v = map[bool]string{true: "t", false: "f"}[*b]
		}
		out = append(out, fmt.Sprintf("%d:%s", id, v))
	}
	if err := rows.Err(); err != nil {
		return "error " + pgCode(err)
	}
	return strings.Join(out, " ")
}

func apText(s string) *string { return &s }

// apVariants adds to queries the same comparisons with the array as a
// constant in the SQL: pgx's simple protocol for the driver's arguments
// (it inlines an array as '{…}'), and each undeclared text array written
// as a string constant, sent in a simple Query.
func apVariants(queries []apQuery) []apQuery {
	out := slices.Clone(queries)
	for _, q := range queries {
		switch {
		case q.args != nil:
			v := q
			v.name += " (pgx simple protocol)"
			v.args = append([]any{pgx.QueryExecModeSimpleProtocol}, q.args...)
			out = append(out, v)
		case q.text != nil && q.oid == 0:
			v := q
			v.name += " (constant)"
			v.cond = strings.ReplaceAll(q.cond, "$1", "'"+strings.ReplaceAll(*q.text, "'", "''")+"'")
			v.text, v.args = nil, []any{pgx.QueryExecModeSimpleProtocol}
			out = append(out, v)
		}
	}
	return out
}

// apQueries are the comparisons of the differential.
func apQueries() []apQuery {
	null := (*string)(nil)
	return []apQuery{
		// pgx: a []string is a binary text[].
		{name: "binary text[]", cond: "ssn = ANY($1)", args: []any{[]string{"a", "b c", "zz", `d"e`, `f\g`, "NULL", "", " sp ", "é,{}"}}},
		{name: "binary text[] some", cond: "ssn = SOME($1)", args: []any{[]string{"a", "zz"}}},
		{name: "binary text[] with NULL elements", cond: "ssn = ANY($1)", args: []any{[]*string{apStr("a"), null, apStr("zz")}}},
		{name: "binary text[] of NULLs", cond: "ssn = ANY($1)", args: []any{[]*string{null, null}}},
		{name: "binary empty text[]", cond: "ssn = ANY($1)", args: []any{[]string{}}},
		{name: "NULL text[]", cond: "ssn = ANY($1)", args: []any{[]string(nil)}},
		{name: "not equal all", cond: "ssn <> ALL($1)", args: []any{[]string{"a", "b c"}}},
		{name: "not equal all with NULL", cond: "ssn <> ALL($1)", args: []any{[]*string{apStr("a"), null}}},
		{name: "not equal all empty", cond: "ssn <> ALL($1)", args: []any{[]string{}}},
		{name: "not equal all NULL", cond: "ssn <> ALL($1)", args: []any{[]string(nil)}},
		{name: "cast to text[]", cond: "ssn = ANY($1::text[])", args: []any{[]string{"a", "zz"}}},
		{name: "cast to varchar(1)[]", cond: "ssn = ANY($1::varchar(1)[])", args: []any{[]string{"ab", "bzz", "zz"}}},
		{name: "2-D binary", cond: "ssn = ANY($1)", args: []any{[][]string{{"a", "zz"}, {"b c", "q"}}}},
		{name: "where clause", cond: "id IN (SELECT id FROM TABLE WHERE ssn = ANY($1) AND id > 1)", args: []any{[]string{"a", "b c", `d"e`}}},
		// Text-format arrays, as node-postgres and JDBC send them, and as
		// people write them.
		{name: "text undeclared", cond: "ssn = ANY($1)", text: apText(`{a,"b c",NULL,zz}`)},
		{name: "text declared text[]", cond: "ssn = ANY($1)", text: apText(`{"a","d\"e","f\\g"}`), oid: 1009},
		{name: "text declared varchar[]", cond: "ssn = ANY($1)", text: apText(`{a,"b c"}`), oid: 1015},
		{name: "text whitespace and escapes", cond: "ssn = ANY($1)", text: apText(" { a , \"b c\" ,  f\\\\g , \" sp \" , d\\\"e } ")},
		{name: "text null spellings", cond: "ssn = ANY($1)", text: apText(`{null,NuLl,"NULL"}`)},
		{name: "text empty element", cond: "ssn = ANY($1)", text: apText(`{"",x}`)},
		{name: "text special characters", cond: "ssn = ANY($1)", text: apText(`{"é,{}"}`)},
		{name: "text 2-D", cond: "ssn = ANY($1)", text: apText(`{{a,zz},{NULL,"b c"}}`)},
		{name: "text dimensions", cond: "ssn = ANY($1)", text: apText(`[0:1]={a,zz}`)},
		{name: "text 2-D dimensions", cond: "ssn = ANY($1)", text: apText(`[1:1][2:3]={{"b c",x}}`)},
		{name: "text empty", cond: "ssn = ANY($1)", text: apText(`{}`)},
		{name: "text not equal all", cond: "ssn <> ALL($1)", text: apText(`{a,NULL}`)},
		{name: "NULL text-format array", cond: "ssn = ANY($1)", oid: 1009},
		{name: "text malformed unclosed", cond: "ssn = ANY($1)", text: apText(`{a,b`)},
		{name: "text malformed quoting", cond: "ssn = ANY($1)", text: apText(`{"a"x}`)},
		{name: "text malformed ragged", cond: "ssn = ANY($1)", text: apText(`{{a},b}`)},
		{name: "text malformed no brace", cond: "ssn = ANY($1)", text: apText(`a,b`)},
		{name: "text malformed junk", cond: "ssn = ANY($1)", text: apText(`{a} x`)},
		{name: "text malformed dimensions", cond: "ssn = ANY($1)", text: apText(`[1:3]={a,b}`)},
		{name: "text malformed empty element", cond: "ssn = ANY($1)", text: apText(`{a,,b}`)},
		{name: "declared text, not an array", cond: "ssn = ANY($1)", text: apText(`{a}`), oid: 25},
		{name: "declared bool[]", cond: "ssn = ANY($1)", text: apText(`{t}`), oid: 1000},
		// An int4 column.
		{name: "int4 binary int4[]", cond: "badge = ANY($1)", args: []any{[]int32{1, 3, 99, -5}}},
		{name: "int4 binary int8[] converted per element", cond: "badge = ANY($1::int8[])", args: []any{[]int64{2, 2147483647, 5000000000, -5}}},
		{name: "int4 int64 undeclared", cond: "badge = ANY($1)", args: []any{[]int64{7, 8}}},
		{name: "int4 binary int8[] not equal all", cond: "badge <> ALL($1::int8[])", args: []any{[]int64{2, 5000000000}}},
		{name: "int4 text numeric[] with a value nothing equals", cond: "badge = ANY($1::numeric[])", text: apText(`{1, 1.5, 2.0, NULL}`)},
		{name: "int4 text numeric[] only values nothing equals", cond: "badge = ANY($1::numeric[])", text: apText(`{1.5}`)},
		{name: "int4 text numeric[] not equal all", cond: "badge <> ALL($1::numeric[])", text: apText(`{1.5, 3}`)},
		{name: "int4 text declared int8[]", cond: "badge = ANY($1)", text: apText(`{ 1 , 8 }`), oid: 1016},
		{name: "int4 text undeclared", cond: "badge = ANY($1)", text: apText(`{{1,2},{3,NULL}}`)},
		{name: "int4 text bad element", cond: "badge = ANY($1)", text: apText(`{1,x}`)},
		{name: "int4 text out of range", cond: "badge = ANY($1)", text: apText(`{1,5000000000}`)},
		{name: "int4 binary float8[]", cond: "badge = ANY($1::float8[])", args: []any{[]float64{1, 2.5, 3}}},
	}
}

func TestArrayParamDifferential(t *testing.T) {
	var kr *keymap.Keyring
	h := newHarness(t, apPolicy, apSchema, func(c *proxy.Config) { kr = c.Keyring })
	ctx := ctxT(t)
	px := h.connect("doctor")
	dx := h.direct()
	insert := func(rows []apRow) {
		for _, r := range rows {
			if _, err := px.Exec(ctx, "INSERT INTO ap_enc (id, ssn, badge) VALUES ($1, $2, $3)", r.id, r.ssn, r.badge); err != nil {
				t.Fatal(err)
			}
			if _, err := dx.Exec(ctx, "INSERT INTO ap_plain (id, ssn, badge) VALUES ($1, $2, $3)", r.id, r.ssn, r.badge); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(apRows)
	run := func(t *testing.T) {
		for _, q := range apVariants(apQueries()) {
			pq, dq := q, q
			pq.cond = strings.ReplaceAll(q.cond, "TABLE", "ap_enc")
			dq.cond = strings.ReplaceAll(q.cond, "TABLE", "ap_plain")
			got, want := apResult(ctx, px, "ap_enc", pq), apResult(ctx, dx, "ap_plain", dq)
			if got != want {
				t.Errorf("%s: %s\n pgcloak:    %s\n PostgreSQL: %s", q.name, q.cond, got, want)
			}
		}
	}
	t.Run("one key version", run)

	// After a rotation the column holds ciphertexts under two versions:
	// each element's candidates find both.
	if err := h.store.Rotate(context.Background(), "ssn"); err != nil {
		t.Fatal(err)
	}
	kr.Invalidate("ssn")
	if err := h.store.Rotate(context.Background(), "badge"); err != nil {
		t.Fatal(err)
	}
	kr.Invalidate("badge")
	insert([]apRow{{11, apStr("zz"), apInt(99)}, {12, apStr("a-new"), apInt(-6)}})
	var oldCT, newCT []byte
	if err := dx.QueryRow(ctx, "SELECT (SELECT ssn FROM ap_enc WHERE id = 1), (SELECT ssn FROM ap_enc WHERE id = 11)").Scan(&oldCT, &newCT); err != nil {
		t.Fatal(err)
	}
	oldID, ok1 := keymap.KeyID(oldCT)
	newID, ok2 := keymap.KeyID(newCT)
	if !ok1 || !ok2 || oldID == newID {
		t.Fatalf("rows not under two key versions: %d, %d", oldID, newID)
	}
	t.Run("after a rotation", run)

	// The ParameterDescription: the array type the driver must send,
	// PostgreSQL's.
	for _, tc := range []struct {
		sql      string
		declared []uint32
		want     []uint32
	}{
		{"SELECT id FROM TABLE WHERE ssn = ANY($1)", nil, []uint32{1009}},
		{"SELECT id FROM TABLE WHERE badge = ANY($1)", nil, []uint32{1007}},
		{"SELECT id FROM TABLE WHERE badge <> ALL($1::int8[])", nil, []uint32{1016}},
		{"SELECT id FROM TABLE WHERE ssn = ANY($1::varchar[]) AND id > $2", nil, []uint32{1015, 23}},
		{"SELECT id FROM TABLE WHERE ssn = ANY($1)", []uint32{1015}, []uint32{1015}},
		{"SELECT id FROM TABLE WHERE ssn = ANY($1)", []uint32{705}, []uint32{1009}},
	} {
		for _, side := range []struct {
			conn  *pgx.Conn
			table string
		}{{px, "ap_enc"}, {dx, "ap_plain"}} {
			sql := strings.ReplaceAll(tc.sql, "TABLE", side.table)
			sd, err := side.conn.PgConn().Prepare(ctx, "", sql, tc.declared)
			if err != nil {
				t.Errorf("%s: %v", sql, err)
				continue
			}
			if !slices.Equal(sd.ParamOIDs, tc.want) {
				t.Errorf("%s (declared %v): ParameterDescription %v, want %v", sql, tc.declared, sd.ParamOIDs, tc.want)
			}
		}
	}

	// A binary array of another element type than declared: PostgreSQL's
	// "wrong element type".
	m := pgtype.NewMap()
	int8s, err := m.Encode(pgtype.Int8ArrayOID, pgtype.BinaryFormatCode, []int64{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ conn, table string }{{"pgcloak", "ap_enc"}, {"PostgreSQL", "ap_plain"}} {
		conn := px
		if c.conn == "PostgreSQL" {
			conn = dx
		}
		res := conn.PgConn().ExecParams(ctx, "SELECT id FROM "+c.table+" WHERE badge = ANY($1)", [][]byte{int8s}, []uint32{pgtype.Int4ArrayOID}, []int16{1}, nil).Read()
		if pgCode(res.Err) != "42804" {
			t.Errorf("%s: int8 elements in an int4[]: %v", c.conn, res.Err)
		}
	}

	// Refusals: a randomized column, = ALL, and a role without the read
	// grant.
	for _, tc := range []struct {
		role, sql, code string
		arg             any
	}{
		{"doctor", "SELECT id FROM ap_enc WHERE note = ANY($1)", "0A000", []string{"x"}},
		{"doctor", "SELECT id FROM ap_enc WHERE ssn = ALL($1)", "0A000", []string{"a"}},
		{"billing", "SELECT id FROM ap_enc WHERE ssn = ANY($1)", "42501", []string{"a"}},
		{"nokeys", "SELECT id FROM ap_enc WHERE badge = ANY($1)", "42501", []int32{1}},
	} {
		conn := px
		if tc.role != "doctor" {
			conn = h.connect(tc.role)
		}
		rows, err := conn.Query(ctx, tc.sql, tc.arg)
		if err == nil {
			rows.Close()
			err = rows.Err()
		}
		if pgCode(err) != tc.code {
			t.Errorf("%s as %s: %v, want %s", tc.sql, tc.role, err, tc.code)
		}
	}
	var n int
	if err := h.connect("billing").QueryRow(ctx, "SELECT count(*) FROM ap_enc WHERE badge = ANY($1)", []int32{1, 2}).Scan(&n); err != nil || n != 2 {
		t.Errorf("billing searching badge: %d, %v", n, err)
	}
}

// TestArrayParamNoPlaintext: the elements of an array parameter or
// constant never reach PostgreSQL, in either format; its statement log
// shows the client's parameter as NULL and the candidates as ciphertexts.
func TestArrayParamNoPlaintext(t *testing.T) {
	h := newHarness(t, apPolicy, apSchema)
	ctx := ctxT(t)
	px := h.connect("doctor")
	secret := func(s string) string { return "aparr-" + s + "-" + h.pg.Database }
	if _, err := px.Exec(ctx, "INSERT INTO ap_enc (id, ssn, badge) VALUES (1, $1, 31337), (2, $2, 31338)", secret("one"), secret("two")); err != nil {
		t.Fatal(err)
	}
	var got []int
	rows, err := px.Query(ctx, "SELECT id FROM ap_enc WHERE ssn = ANY($1) ORDER BY id", []string{secret("one"), secret("two"), secret("none")})
	if err == nil {
		got, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil || !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("binary text[]: %v, %v", got, err)
	}
	res := px.PgConn().ExecParams(ctx, "SELECT id FROM ap_enc WHERE ssn <> ALL($1::text[]) OR badge = ANY($2)",
		[][]byte{[]byte(`{"` + secret("three") + `",NULL}`), []byte("{31338,1234567}")}, nil, []int16{0, 0}, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "2" {
		t.Fatalf("text arrays: %v, %v", res.Err, res.Rows)
	}
	// As a constant: pgx's simple protocol, and written by hand.
	var n int
	rows, err = px.Query(ctx, "SELECT id FROM ap_enc WHERE ssn = ANY($1) ORDER BY id", pgx.QueryExecModeSimpleProtocol, []string{secret("one"), secret("four")})
	if err == nil {
		got, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil || !slices.Equal(got, []int{1}) {
		t.Fatalf("pgx simple protocol: %v, %v", got, err)
	}
	if err := px.QueryRow(ctx, "SELECT count(*) FROM ap_enc WHERE ssn <> ALL('{"+secret("two")+",NULL}'::text[]) OR ssn = ANY('{"+secret("five")+"}')", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 0 {
		t.Fatalf("array constants: %d rows, %v; want 0 (NULL for row 1, false for row 2)", n, err)
	}
	marker := "aparr-marker-" + h.pg.Database
	if _, err := h.direct().Exec(ctx, "SELECT $1::text", marker); err != nil {
		t.Fatal(err)
	}
	log := h.pg.AwaitStatement(t, marker)
	for _, s := range []string{secret("one"), secret("two"), secret("none"), secret("three"), secret("four"), secret("five")} {
		if strings.Contains(log, s) {
			t.Errorf("PostgreSQL's statement log holds the plaintext %q", s)
		}
	}
}
