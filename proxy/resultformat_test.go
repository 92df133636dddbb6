package proxy_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// describedResult runs statement query (prepared and described first, so
// that the proxy knows its columns at Bind) with arg and the client's
// result formats, through the portal's Describe and Execute; it returns
// the formats the portal was described with and the row's values.
func describedResult(t *testing.T, c *protoClient, query, arg string, formats []int16) ([]int16, [][]byte) {
	t.Helper()
	c.send(&pgproto3.Parse{Name: "s", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	for {
		msg := c.recv()
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("prepare: %s %s", e.Code, e.Message)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	c.send(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{[]byte(arg)}, ResultFormatCodes: formats},
		&pgproto3.Describe{ObjectType: 'P', Name: "p"}, &pgproto3.Execute{Portal: "p"},
		&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	var described []int16
	var row [][]byte
	for {
		switch m := c.recv().(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("execute: %s %s", m.Code, m.Message)
		case *pgproto3.RowDescription:
			for _, f := range m.Fields {
				described = append(described, f.Format)
			}
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				row = append(row, slices.Clone(v))
			}
		case *pgproto3.ReadyForQuery:
			return described, row
		}
	}
}

// annQuery reads back, by name, the row insertAnn writes: a plain column
// and two encrypted ones of different types.
const annQuery = "SELECT name, ssn, dob FROM patients WHERE name = $1"

// insertAnn writes the row the result-format tests read, as a role that
// may write it.
func insertAnn(t *testing.T, h *harness) {
	t.Helper()
	if _, err := h.connect("doctor").Exec(context.Background(), `INSERT INTO patients (name, ssn, dob) VALUES ('ann', '123-45-6789', '1980-02-29')`); err != nil {
		t.Fatal(err)
	}
}

// The proxy asks PostgreSQL for the encrypted columns of a described
// statement in binary, whatever the client asked for: each client still
// gets its own formats, in the portal's description and in the values —
// the plaintext exactly as PostgreSQL gives the logical type, and, for a
// role shown ciphertexts, exactly what PostgreSQL gives for the stored
// bytea.
func TestEncryptedResultColumnsReachTheClientInItsOwnFormats(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := context.Background()
	insertAnn(t, h)
	const query = annQuery
	direct := h.direct().PgConn()
	for _, formats := range [][]int16{nil, {0}, {1}, {0, 0, 0}, {0, 1, 0}, {1, 0, 1}} {
		t.Run(fmt.Sprint(formats), func(t *testing.T) {
			want := func(q string) [][]byte {
				res := direct.ExecParams(ctx, q, [][]byte{[]byte("ann")}, nil, nil, formats).Read()
				if res.Err != nil || len(res.Rows) != 1 {
					t.Fatalf("direct %q: %v, %d rows", q, res.Err, len(res.Rows))
				}
				return res.Rows[0]
			}
			wantFormats := make([]int16, 3)
			for i := range wantFormats {
				if len(formats) == 1 {
					wantFormats[i] = formats[0]
				} else if len(formats) == 3 {
					wantFormats[i] = formats[i]
				}
			}
			for role, wantRow := range map[string][][]byte{
				// The plaintext, as PostgreSQL gives text and date.
				"doctor": want("SELECT $1::text, '123-45-6789'::text, '1980-02-29'::date"),
				// The stored ciphertexts, as PostgreSQL gives bytea.
				"archivist": want(query),
			} {
				gotFormats, gotRow := describedResult(t, protoConnect(t, h, role), query, "ann", formats)
				if !slices.Equal(gotFormats, wantFormats) {
					t.Errorf("%s: portal described with formats %v, want the client's %v", role, gotFormats, wantFormats)
				}
				if !slices.EqualFunc(gotRow, wantRow, func(a, b []byte) bool { return string(a) == string(b) }) {
					t.Errorf("%s: got %q, want %q", role, gotRow, wantRow)
				}
			}
		})
	}
}

// A statement whose result PostgreSQL does not check against its
// description when it runs again (FETCH from a cursor declared anew, SQL
// EXECUTE of a statement prepared anew) can return other columns than it
// was described with: the client gets them as PostgreSQL gives them, not
// the binary form of a text column hex-encoded as if it were a bytea.
func TestStatementsWhoseColumnsChangeUnderTheirDescriptionReturnWhatPostgreSQLGives(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	if _, err := h.connect("doctor").Exec(context.Background(), `INSERT INTO patients (name, ssn) VALUES ('ann', '123-45-6789')`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, before, stmt, after, tag string }{
		{"fetch", "DECLARE c CURSOR FOR SELECT ssn FROM patients", "FETCH 1 FROM c",
			"CLOSE c; DECLARE c CURSOR FOR SELECT name FROM patients", "C:FETCH 1"},
		{"execute", "PREPARE q AS SELECT ssn FROM patients", "EXECUTE q",
			"DEALLOCATE q; PREPARE q AS SELECT name FROM patients", "C:SELECT 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc := protoConnect(t, h, "doctor")
			wantTokens(t, "BEGIN", pc.query("BEGIN"), "C:BEGIN", "Z:T")
			pc.query(c.before)
			pc.send(&pgproto3.Parse{Name: "s", Query: c.stmt}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
			wantTokens(t, "described", pc.recvReady(), "ParseComplete", "Params:", "Row:ssn/25", "Z:T")
			pc.query(c.after)
			pc.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
			wantTokens(t, "executed", pc.recvReady(), "BindComplete", "Row:name/25", "D:ann", c.tag, "Z:T")
		})
	}
}

// A role shown ciphertexts sees them in the session's bytea_output, as
// PostgreSQL shows a bytea, also when the proxy asked PostgreSQL for the
// column in binary.
func TestCiphertextsFollowTheSessionsByteaOutput(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := context.Background()
	insertAnn(t, h)
	const query = annQuery
	direct := h.direct().PgConn()
	if err := direct.Exec(ctx, "SET bytea_output = escape").Close(); err != nil {
		t.Fatal(err)
	}
	res := direct.ExecParams(ctx, query, [][]byte{[]byte("ann")}, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("direct: %v, %d rows", res.Err, len(res.Rows))
	}
	want := res.Rows[0]
	c := protoConnect(t, h, "archivist")
	wantTokens(t, "SET", c.query("SET bytea_output = escape"), "C:SET", "Z:I")
	_, got := describedResult(t, c, query, "ann", nil)
	if !slices.EqualFunc(got, want, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A Bind with bytes after its result formats is a malformed message: the
// session ends with 08P01, as for any other (DESIGN.md, errors), whether or
// not the proxy would rewrite the Bind — never forwarded with the bytes
// dropped — and the proxy goes on serving others.
func TestBindWithTrailingBytesEndsTheSession(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	for _, query := range []string{
		"SELECT name FROM patients",           // forwarded as it came
		"SELECT name, ssn, dob FROM patients", // rewritten (encrypted columns read as text)
	} {
		t.Run(query, func(t *testing.T) {
			c := protoConnect(t, h, "doctor")
			c.send(&pgproto3.Parse{Name: "s", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
			c.recvReady()
			bind, err := (&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			bind = append(bind, "xyz"...)
			binary.BigEndian.PutUint32(bind[1:], uint32(len(bind)-1))
			exec, _ := (&pgproto3.Execute{Portal: "p"}).Encode(nil)
			sync, _ := (&pgproto3.Sync{}).Encode(nil)
			if _, err := c.conn.Write(slices.Concat(bind, exec, sync)); err != nil {
				t.Fatal(err)
			}
			errs := backendErrors(expectEOF(t, c.conn))
			if len(errs) != 1 || errs[0].Code != "08P01" || errs[0].Severity != "FATAL" {
				t.Fatalf("got errors %+v, want one FATAL 08P01", errs)
			}
			stillServes(t, h)
		})
	}
}
