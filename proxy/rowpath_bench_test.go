package proxy

// Micro-benchmarks of the per-row path (issue 11): a DataRow with an
// encrypted field turned into the client's DataRow (shapeFor once, then
// resultShape.rewriteRow per row, as the backend loop does), and a Bind's
// parameter encrypted (encryptParams, as the frontend loop does), for
// every logical type of the registry in text and binary format. They use
// a real keyring over a local key store and need no server. Each checks
// once, before timing, that its output decrypts to its input.
//
//	go test ./proxy -run XXX -bench 'RowDecrypt|BindEncrypt'

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// benchSamples is a value of every logical type in its text output form
// (TimeZone UTC, DateStyle ISO): a row field's expected text, and a
// parameter's text input.
var benchSamples = map[policy.LogicalType]string{
	policy.TypeText:        "a typical 32-byte column value..",
	policy.TypeVarchar:     "alice@example.com",
	policy.TypeChar:        "pad  ",
	policy.TypeInt2:        "-32768",
	policy.TypeInt4:        "2147483647",
	policy.TypeInt8:        "-9223372036854775808",
	policy.TypeNumeric:     "-12345.6789",
	policy.TypeFloat8:      "0.1",
	policy.TypeBool:        "t",
	policy.TypeDate:        "2024-02-29",
	policy.TypeTimestamp:   "2024-02-29 13:45:30.5",
	policy.TypeTimestamptz: "2024-02-29 13:45:30.5+00",
	policy.TypeUUID:        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
	policy.TypeJSONB:       `{"a": [1, null], "b": "x"}`,
	policy.TypeBytea:       `\x00ff10203040506070`,
}

// benchTableOID is the catalog's OID of public.t, the benchmarks' table.
const benchTableOID = 16384

// rowBench is a session with no connection whose catalog has public.t:
// id int4, then for every logical type T a column r_T under a
// randomized key and d_T under a deterministic one. Its role may read
// and write both keys.
type rowBench struct {
	ss    *session
	table *policy.Table
	attno map[string]uint16
}

// logicalTypes are the registry's logical types, in registry order.
func logicalTypes(b *testing.B) []policy.LogicalType {
	var out []policy.LogicalType
	for t := range policy.NumPGTypes {
		if lt := t.Logical(); lt != "" {
			if _, ok := benchSamples[lt]; !ok {
				b.Fatalf("no benchmark sample for logical type %s", lt)
			}
			out = append(out, lt)
		}
	}
	return out
}

func newRowBench(b *testing.B) *rowBench {
	b.Helper()
	types := logicalTypes(b)
	pol := policy.Policy{
		Keys:  []policy.Key{{Name: "rnd", Kind: policy.Randomized}, {Name: "det", Kind: policy.Deterministic}},
		Roles: []policy.Role{{Role: "doctor", Read: []string{"rnd", "det"}, Write: []string{"rnd", "det"}}},
	}
	for _, lt := range types {
		pol.Columns = append(pol.Columns,
			policy.Column{Table: "public.t", Column: "r_" + string(lt), Key: "rnd", Type: lt},
			policy.Column{Table: "public.t", Column: "d_" + string(lt), Key: "det", Type: lt})
	}
	store, _, err := keymap.NewLocalStoreInDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := keymap.CreateMissing(context.Background(), store, pol.Keys); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Config{
		Server:   policy.Server{Listen: "127.0.0.1:0", TLS: policy.ServerTLS{Mode: "disable"}},
		Upstream: policy.Upstream{Address: "127.0.0.1:1", TLS: policy.UpstreamTLS{Mode: "disable"}},
		Policy:   policy.NewIndex(pol),
		Keyring:  keymap.NewKeyring(store, 5*time.Minute),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	table := srv.cfg.Policy.Table("public", "t")
	rb := &rowBench{table: table, attno: map[string]uint16{}}
	cols := []string{"id"}
	byAttno := map[uint16]*policy.ColumnRule{}
	for _, lt := range types {
		for _, prefix := range []string{"r_", "d_"} {
			name := prefix + string(lt)
			cols = append(cols, name)
			rb.attno[name] = uint16(len(cols))
			byAttno[uint16(len(cols))] = table.Columns[name]
		}
	}
	cat := &catalog{
		loaded:      time.Now(),
		relations:   map[string]*sqlrewrite.Relation{"public.t": {Schema: "public", Name: "t", Columns: cols, Encrypted: table.Columns}},
		schemasWith: map[string][]string{"t": {"public"}},
		byOID:       map[uint32]map[uint16]*policy.ColumnRule{benchTableOID: byAttno},
	}
	rb.ss = &session{
		srv:    srv,
		cat:    cat,
		state:  newSessionState(settings{sessionAuth: "doctor", searchPath: []string{"public"}, floatDigits: "1", byteaOutput: "hex"}),
		pl:     newBooks(),
		params: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY", "server_version": "17.2"},
	}
	return rb
}

// canonical is the canonical form of lt's sample.
func (rb *rowBench) canonical(b *testing.B, lt policy.LogicalType) []byte {
	canon, err := keymap.CodecFor(lt).Canonical(keymap.TextFormat, []byte(benchSamples[lt]), rb.ss.textContext())
	if err != nil {
		b.Fatalf("%s sample: %v", lt, err)
	}
	return canon
}

// dataRowBody is a DataRow body of the given fields (nil: NULL).
func dataRowBody(fields ...[]byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		body = appendField(body, f, f == nil)
	}
	return body
}

// dataRowFields splits a framed DataRow into its fields.
func dataRowFields(b *testing.B, msg []byte) [][]byte {
	if len(msg) < 7 || msg[0] != 'D' || int(binary.BigEndian.Uint32(msg[1:])) != len(msg)-1 {
		b.Fatalf("malformed DataRow %x", msg)
	}
	n := int(binary.BigEndian.Uint16(msg[5:]))
	out := make([][]byte, n)
	p := 7
	for i := range out {
		l := int(int32(binary.BigEndian.Uint32(msg[p:])))
		p += 4
		if l >= 0 {
			out[i] = msg[p : p+l]
			p += l
		}
	}
	if p != len(msg) {
		b.Fatalf("DataRow has %d trailing bytes", len(msg)-p)
	}
	return out
}

var formatNames = map[int16]string{keymap.TextFormat: "text", keymap.BinaryFormat: "binary"}

// BenchmarkRowDecrypt turns one server DataRow (id int4, one encrypted
// bytea field of a randomized-key column) into the client's DataRow, in
// the result format the client asked for (the server sends the bytea in
// the same format). The row buffer is reused, as the backend loop's is.
func BenchmarkRowDecrypt(b *testing.B) {
	rb := newRowBench(b)
	for _, lt := range logicalTypes(b) {
		for _, format := range []int16{keymap.TextFormat, keymap.BinaryFormat} {
			b.Run(string(lt)+"/"+formatNames[format], func(b *testing.B) {
				name := "r_" + string(lt)
				rule := rb.table.Columns[name]
				canon := rb.canonical(b, lt)
				c, err := rb.ss.cipher(rule)
				if err != nil {
					b.Fatal(err)
				}
				ct, err := c.Encrypt(canon)
				if err != nil {
					b.Fatal(err)
				}
				id := []byte("42")
				stored := ct
				if format == keymap.TextFormat {
					stored = appendByteaHex(nil, ct)
				} else {
					id = []byte{0, 0, 0, 42}
				}
				fields := []pgproto3.FieldDescription{
					{Name: []byte("id"), TableOID: benchTableOID, TableAttributeNumber: 1, DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1, Format: format},
					{Name: []byte(name), TableOID: benchTableOID, TableAttributeNumber: rb.attno[name], DataTypeOID: byteaOID, DataTypeSize: -1, TypeModifier: -1, Format: format},
				}
				shape := rb.ss.shapeFor(fields, nil, nil)
				if shape == nil || shape.actions[1].cipher == nil {
					b.Fatal("the encrypted column is not decrypted")
				}
				body := dataRowBody(id, stored)

				// Once, untimed: the client's field is the sample.
				out, err := shape.rewriteRow(nil, body)
				if err != nil {
					b.Fatal(err)
				}
				got := dataRowFields(b, out)
				if len(got) != 2 || !bytes.Equal(got[0], id) {
					b.Fatalf("fields %q", got)
				}
				back, err := keymap.CodecFor(lt).Canonical(format, got[1], shape.tc)
				if err != nil || !bytes.Equal(back, canon) {
					b.Fatalf("field %q reads back as %x (%v), want %x", got[1], back, err, canon)
				}
				if format == keymap.TextFormat && string(got[1]) != benchSamples[lt] {
					b.Fatalf("text field %q, want %q", got[1], benchSamples[lt])
				}

				buf := out
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if buf, err = shape.rewriteRow(buf[:0], body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// appendByteaHex appends bytea's hex text output.
func appendByteaHex(dst, v []byte) []byte {
	dst = append(dst, `\x`...)
	return fmt.Appendf(dst, "%x", v)
}

// BenchmarkBindEncrypt encrypts the one parameter of a Bind, in the
// client's text or binary format, undeclared in the Parse (as pgx and
// libpq leave it): "store" binds the value of an INSERT into a
// randomized-key column; "compare" binds the value of a WHERE col = $1
// on a deterministic-key column, which the proxy sends as its hidden
// bytea candidate slots. The plans are sqlrewrite's own.
func BenchmarkBindEncrypt(b *testing.B) {
	rb := newRowBench(b)
	for _, lt := range logicalTypes(b) {
		for _, use := range []string{"store", "compare"} {
			for _, format := range []int16{keymap.TextFormat, keymap.BinaryFormat} {
				b.Run(string(lt)+"/"+use+"/"+formatNames[format], func(b *testing.B) {
					rb.benchBind(b, lt, use, format)
				})
			}
		}
	}
}

func (rb *rowBench) benchBind(b *testing.B, lt policy.LogicalType, use string, format int16) {
	var sql, name string
	if use == "store" {
		name = "r_" + string(lt)
		sql = "INSERT INTO t (" + name + ") VALUES ($1)"
	} else {
		name = "d_" + string(lt)
		sql = "SELECT id FROM t WHERE " + name + " = $1"
	}
	rule := rb.table.Columns[name]
	plan, err := sqlrewrite.Analyze(sql, &sqlrewrite.Env{Catalog: rb.ss.cat, SearchPath: []string{"public"}})
	if err != nil {
		b.Fatal(err)
	}
	st := &preparedStmt{plan: plan, env: rb.ss.planEnvNow()}
	if err := st.checkParamTypes(); err != nil {
		b.Fatal(err)
	}
	canon := rb.canonical(b, lt)
	value := []byte(benchSamples[lt])
	if format == keymap.BinaryFormat {
		if value, err = keymap.CodecFor(lt).AppendBinary(nil, canon); err != nil {
			b.Fatal(err)
		}
	}
	formats := []int16{format}
	params := [][]byte{value}
	msg := pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: formats, Parameters: params}
	bind := func() {
		msg.ParameterFormatCodes = formats
		msg.Parameters = params[:1:1]
		params[0] = value
		changed, err := rb.ss.encryptParams(st, &msg)
		if err != nil || !changed {
			b.Fatal(changed, err)
		}
	}

	// Once, untimed: what goes upstream decrypts to the sample.
	bind()
	c, err := rb.ss.cipher(rule)
	if err != nil {
		b.Fatal(err)
	}
	var cts [][]byte
	switch use {
	case "store":
		if len(msg.Parameters) != 1 || msg.ParameterFormatCodes[0] != keymap.BinaryFormat {
			b.Fatalf("bound %d parameters, formats %v", len(msg.Parameters), msg.ParameterFormatCodes)
		}
		cts = [][]byte{msg.Parameters[0]}
	case "compare":
		if len(msg.Parameters) != 2 || msg.ParameterFormatCodes[1] != keymap.BinaryFormat {
			b.Fatalf("bound %d parameters, formats %v (want the hidden candidates)", len(msg.Parameters), msg.ParameterFormatCodes)
		}
		var arr [][]byte
		if err := pgtype.NewMap().Scan(byteaArrayOID, keymap.BinaryFormat, msg.Parameters[1], &arr); err != nil {
			b.Fatal(err)
		}
		if len(arr) == 0 {
			b.Fatal("no candidates")
		}
		cts = arr
	}
	for _, ct := range cts {
		pt, err := c.Decrypt(ct)
		if err != nil || !bytes.Equal(pt, canon) {
			b.Fatalf("bound %x decrypts to %x (%v), want %x", ct, pt, err, canon)
		}
	}

	b.ReportAllocs()
	for b.Loop() {
		bind()
	}
}
