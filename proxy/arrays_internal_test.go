package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/testenv"
)

// TestArrayOIDs: the array types pgcloak knows are pgtype's, and each
// element type is one keymap converts.
func TestArrayOIDs(t *testing.T) {
	m := pgtype.NewMap()
	for arr, elem := range arrayElemOIDs {
		typ, ok := m.TypeForOID(arr)
		if !ok {
			t.Errorf("pgtype does not know array type %d", arr)
			continue
		}
		ac, ok := typ.Codec.(*pgtype.ArrayCodec)
		if !ok || ac.ElementType.OID != elem {
			t.Errorf("array type %d (%s): element %d, pgtype says %v", arr, typ.Name, elem, typ.Codec)
		}
		if !keymap.KnownType(elem) {
			t.Errorf("element type %d of %d is not one keymap converts", elem, arr)
		}
		if arrayOIDs[elem] != arr {
			t.Errorf("arrayOIDs[%d] = %d, want %d", elem, arrayOIDs[elem], arr)
		}
	}
}

// arrayTextCorpus are array literals, well-formed and not.
var arrayTextCorpus = []string{
	`{}`, ` {} `, `{{}}`, `{a}`, `{a,b}`, `{ a , b }`, "{\ta\n,\rb\f}", `{a b,  c  d }`,
	`{"a","b c"," d "}`, `{"",""}`, `{"a\"b","c\\d","\e"}`, `{a\,b,c\}d,\ e\ ,\"}`, `{a\\}`,
	`{NULL,null,NuLl,"NULL",\NULL,NULLx,xNULL,N\ULL}`, `{ NULL }`,
	`{é,"ü,ß",日本}`, `{{a,b},{c,d}}`, `{{a,NULL},{"b c",d}}`, `{{{a}},{{b}}}`, `{ { a } , { b } }`,
	`[1:2]={a,b}`, `[0:0]={a}`, `[-2:-1]={a,b}`, `[1:1][1:2]={{a,b}}`, ` [1:2] = {a,b}`, `[2]={a,b}`,
	`[1:2]={a}`, `[1:2][1:1]={a,b}`, `[1:1]={{a}}`, `[2:1]={a}`, `[1:2={a,b}`, `[]={a}`, `[a]={a}`,
	`[1:2]{a,b}`, `[1:2]=a`, `[1:]={a}`, `[99999999999:1]={a}`,
	`{a,b`, `{a,,b}`, `{,a}`, `{a,}`, `{"a"b}`, `{"a" ,b}`, `{a"b"}`, `{"a}`, `{a}}`, `{{a},b}`, `{a,{b}}`,
	`{{a},{b,c}}`, `{{a,b},{c}}`, `{{a},{}}`, `{{},{}}`, `{{},a}`, `a`, ``, ` `, `{a} b`, `{a}  `, `{a}{b}`,
	`{{{{{{a}}}}}}`, `{{{{{{{a}}}}}}}`, `{"a\`, `{a\`, `{"\""}`, `{\{}`, `{ "a" }`, `{{"a" , "b"} , {c,d}}`,
}

// arrayTextSince17 are the literals PostgreSQL reads differently since
// version 17, whose rules parseArrayText follows.
var arrayTextSince17 = map[string]bool{`{{}}`: true, `{{},{}}`: true, `[99999999999:1]={a}`: true}

// TestParseArrayTextDifferential compares parseArrayText with
// PostgreSQL's array_in on the corpus: the same elements, or an error
// with the same SQLSTATE.
func TestParseArrayTextDifferential(t *testing.T) {
	pg := testenv.Postgres(t)
	if pg == nil {
		return
	}
	conn := pg.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	major := keymap.ServerMajor(conn.PgConn().ParameterStatus("server_version"))
	for _, lit := range arrayTextCorpus {
		if arrayTextSince17[lit] && major < 17 {
			continue
		}
		res := conn.PgConn().ExecParams(ctx, "SELECT x FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
			[][]byte{[]byte(lit)}, nil, []int16{0}, nil).Read()
		var want []*string
		wantCode := ""
		if res.Err != nil {
			var pe *pgconn.PgError
			if !errors.As(res.Err, &pe) {
				t.Fatalf("%q: %v", lit, res.Err)
			}
			wantCode = pe.Code
		} else {
			for _, r := range res.Rows {
				if r[0] == nil {
					want = append(want, nil)
				} else {
					s := string(r[0])
					want = append(want, &s)
				}
			}
		}
		elems, err := parseArrayText([]byte(lit))
		gotCode := ""
		if err != nil {
			gotCode = sqlState(err)
		}
		var got []*string
		for _, e := range elems {
			if e == nil {
				got = append(got, nil)
			} else {
				s := string(e)
				got = append(got, &s)
			}
		}
		if gotCode != wantCode || !slices.EqualFunc(got, want, func(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }) {
			t.Errorf("%q:\n parseArrayText %s %v (%v)\n PostgreSQL     %s %v", lit, gotCode, show(got), err, wantCode, show(want))
		}
	}
}

func show(elems []*string) []string {
	out := []string{}
	for _, e := range elems {
		if e == nil {
			out = append(out, "NULL")
		} else {
			out = append(out, "«"+*e+"»")
		}
	}
	return out
}

// TestDecodeArrayBinary: elements come back as sent, NULLs as nil, any
// dimensions flattened; a malformed header or body is PostgreSQL's error.
func TestDecodeArrayBinary(t *testing.T) {
	m := pgtype.NewMap()
	enc := func(oid uint32, v any) []byte {
		b, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, c := "a", ""
	for _, tc := range []struct {
		name string
		raw  []byte
		elem uint32
		want [][]byte
	}{
		{"text[]", enc(pgtype.TextArrayOID, []*string{&a, nil, &c}), pgtype.TextOID, [][]byte{[]byte("a"), nil, {}}},
		{"empty", enc(pgtype.TextArrayOID, []string{}), pgtype.TextOID, [][]byte{}},
		{"2-D int4[]", enc(pgtype.Int4ArrayOID, [][]int32{{1, 2}, {3, 4}}), pgtype.Int4OID,
			[][]byte{{0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 0, 3}, {0, 0, 0, 4}}},
	} {
		got, err := decodeArrayBinary(tc.raw, tc.elem)
		if err != nil || got == nil || !slices.EqualFunc(got, tc.want, func(x, y []byte) bool { return (x == nil) == (y == nil) && string(x) == string(y) }) {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	one := enc(pgtype.Int4ArrayOID, []int32{1})
	patch := func(off int, v uint32) []byte {
		b := slices.Clone(one)
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		code string
	}{
		{"short header", one[:8], "08P01"},
		{"negative dimensions", patch(0, 0xffffffff), "22P03"},
		{"too many dimensions", patch(0, 7), "54000"},
		{"bad flags", patch(4, 2), "22P03"},
		{"wrong element type", patch(8, pgtype.Int8OID), "42804"},
		{"negative length", patch(12, 0xffffffff), "54000"},
		{"more elements than bytes", patch(12, 2), "22P03"},
		{"element longer than the data", patch(20, 5), "22P03"},
		{"trailing bytes", append(slices.Clone(one), 0), "22P03"},
		{"missing dimensions", one[:16], "08P01"},
	} {
		_, err := decodeArrayBinary(tc.raw, pgtype.Int4OID)
		if sqlState(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}
