package proxy_test

// COPY tests: COPY FROM STDIN encrypts what it stores, COPY TO STDOUT
// decrypts, in text, CSV and binary, from the simple and the extended
// protocol.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawPatients reads the stored (ciphertext) columns of patients directly.
func rawPatients(t *testing.T, h *harness) map[string][3][]byte {
	t.Helper()
	rows, err := h.direct().Query(ctxT(t), "SELECT name, ssn, diagnosis, dob FROM patients")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][3][]byte{}
	for rows.Next() {
		var name string
		var ssn, diag, dob []byte
		if err := rows.Scan(&name, &ssn, &diag, &dob); err != nil {
			t.Fatal(err)
		}
		out[name] = [3][]byte{ssn, diag, dob}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

// assertCiphertext checks that stored values hold none of the plaintexts
// and that non-NULL plaintexts are stored non-NULL.
func assertCiphertext(t *testing.T, h *harness, want map[string][3]string) {
	t.Helper()
	got := rawPatients(t, h)
	if len(got) != len(want) {
		t.Fatalf("%d stored rows, want %d", len(got), len(want))
	}
	for name, vals := range want {
		stored, ok := got[name]
		if !ok {
			t.Fatalf("row %s missing", name)
		}
		for i, v := range vals {
			switch {
			case v == "" && stored[i] != nil:
				t.Fatalf("%s column %d: NULL stored as %x", name, i, stored[i])
			case v != "" && stored[i] == nil:
				t.Fatalf("%s column %d: stored NULL", name, i)
			case v != "" && (len(v) >= 4 && bytes.Contains(stored[i], []byte(v)) || len(stored[i]) < 16):
				t.Fatalf("%s column %d: %q stored as %x, not ciphertext", name, i, v, stored[i])
			}
		}
	}
}

func TestProtoCopyTextCSV(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()

	text := "Ann\t100-00-0001\tflu\t1990-01-02\nBob\t100-00-0002\t\\N\t\\N\nCid\t100-00-0003\ttab\\there\t2001-12-31\n"
	tag, err := pc.CopyFrom(ctx, strings.NewReader(text), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN")
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("COPY FROM text: %v %v", tag, err)
	}
	csv := "name,ssn,diagnosis,dob\nDee,100-00-0004,\"comma, quoted\",1985-07-08\nEli,100-00-0005,,\n"
	tag, err = pc.CopyFrom(ctx, strings.NewReader(csv), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT csv, HEADER true)")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY FROM csv: %v %v", tag, err)
	}
	assertCiphertext(t, h, map[string][3]string{
		"Ann": {"100-00-0001", "flu", "1990-01-02"},
		"Bob": {"100-00-0002", "", ""},
		"Cid": {"100-00-0003", "tab\there", "2001-12-31"},
		"Dee": {"100-00-0004", "comma, quoted", "1985-07-08"},
		"Eli": {"100-00-0005", "", ""},
	})
	// Queries see the plaintext, and the deterministic column is
	// searchable.
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "100-00-0004").Scan(&diag); err != nil || diag != "comma, quoted" {
		t.Fatalf("diagnosis %q %v", diag, err)
	}

	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT 1) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	wantText := text + "Dee\t100-00-0004\tcomma, quoted\t1985-07-08\nEli\t100-00-0005\t\\N\t\\N\n"
	if out.String() != wantText {
		t.Fatalf("COPY TO text:\n%q\nwant\n%q", out.String(), wantText)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT csv, HEADER true)"); err != nil {
		t.Fatal(err)
	}
	wantCSV := "name,ssn,diagnosis,dob\nAnn,100-00-0001,flu,1990-01-02\nBob,100-00-0002,,\nCid,100-00-0003,tab\there,2001-12-31\nDee,100-00-0004,\"comma, quoted\",1985-07-08\nEli,100-00-0005,,\n"
	if out.String() != wantCSV {
		t.Fatalf("COPY TO csv:\n%q\nwant\n%q", out.String(), wantCSV)
	}

	// A role without the keys gets its on_denied view in COPY TO as well.
	out.Reset()
	if _, err := h.connect("billing").PgConn().CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Ann\t100-00-0001\t\\N\n") || strings.Contains(out.String(), "flu") {
		t.Fatalf("billing COPY TO: %q", out.String())
	}

	// Bad values: nothing of the COPY is inserted and the session goes on.
	// (PostgreSQL's codes: 22007 a date it cannot read, 22008 one out of
	// range.)
	for _, bad := range []struct{ sql, data, code string }{
		{"COPY patients (name, ssn, dob) FROM STDIN", "Ok\t200-1\t2000-01-01\nBad\t200-2\tnot-a-date\n", "22007"},
		{"COPY patients (name, ssn, dob) FROM STDIN (FORMAT csv)", "Ok,200-3,2000-01-01\nBad,200-4,2000-13-45\n", "22008"},
	} {
		_, err := pc.CopyFrom(ctx, strings.NewReader(bad.data), bad.sql)
		pe := wantCode(t, err, bad.code)
		if strings.Contains(pe.Message, "not-a-date") || strings.Contains(pe.Message, "2000-13-45") {
			t.Fatalf("error echoes the value: %q", pe.Message)
		}
		if pc.TxStatus() != 'I' {
			t.Fatalf("TxStatus %q", pc.TxStatus())
		}
	}
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 5 {
		t.Fatalf("%d rows after failed COPYs, want 5 (%v)", n, err)
	}
	// A failed COPY inside a transaction aborts it.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("X\t300-1\tnope\n"), "COPY patients (name, ssn, dob) FROM STDIN")
	wantCode(t, err, "22007")
	if pc.TxStatus() != 'E' {
		t.Fatalf("TxStatus after failed COPY in tx: %q", pc.TxStatus())
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// The client's own CopyFail is reported as PostgreSQL reports it.
	_, err = pc.CopyFrom(ctx, &failingReader{data: []byte("Y\t300-2\n")}, "COPY patients (name, ssn) FROM STDIN")
	if code := pgCode(err); code != "57014" {
		t.Fatalf("client CopyFail: want 57014, got %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 5 {
		t.Fatalf("%d rows, want 5 (%v)", n, err)
	}
}

// failingReader yields data then fails, which makes pgconn send CopyFail.
type failingReader struct {
	data []byte
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		return copy(p, r.data), nil
	}
	return 0, errors.New("client gave up")
}

// parseBinaryCopy splits PGCOPY binary data into rows of fields (nil for
// NULL).
func parseBinaryCopy(t *testing.T, data []byte) [][][]byte {
	t.Helper()
	sig := []byte("PGCOPY\n\xff\r\n\x00")
	if !bytes.HasPrefix(data, sig) || len(data) < len(sig)+8 {
		t.Fatalf("not binary COPY data: %q", data)
	}
	data = data[len(sig)+4:]
	ext := binary.BigEndian.Uint32(data)
	data = data[4+ext:]
	var rows [][][]byte
	for {
		if len(data) < 2 {
			t.Fatalf("truncated binary COPY")
		}
		n := int16(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n == -1 {
			if len(data) != 0 {
				t.Fatalf("%d bytes after the trailer", len(data))
			}
			return rows
		}
		row := make([][]byte, n)
		for i := range row {
			l := int32(binary.BigEndian.Uint32(data))
			data = data[4:]
			if l >= 0 {
				row[i] = data[:l]
				data = data[l:]
			}
		}
		rows = append(rows, row)
	}
}

func TestProtoCopyBinary(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	d1 := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	d2 := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"name", "ssn", "diagnosis", "dob"}, pgx.CopyFromRows([][]any{
		{"Bin1", "400-1", "binary one", d1},
		{"Bin2", "400-2", nil, d2},
		{"Bin3", "400-3", "ünïcødé", nil},
	}))
	if err != nil || n != 3 {
		t.Fatalf("pgx CopyFrom (binary): %d %v", n, err)
	}
	assertCiphertext(t, h, map[string][3]string{
		"Bin1": {"400-1", "binary one", "1970-01-01"},
		"Bin2": {"400-2", "", "2024-02-29"},
		"Bin3": {"400-3", "ünïcødé", ""},
	})
	// Canonical encryption: a value copied in binary is found by a text
	// parameter on the deterministic column.
	var dob time.Time
	var diag *string
	if err := conn.QueryRow(ctx, "SELECT dob, diagnosis FROM patients WHERE ssn = $1", "400-2").Scan(&dob, &diag); err != nil || !dob.Equal(d2) || diag != nil {
		t.Fatalf("row copied in binary: %v %v %v", dob, diag, err)
	}
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	rows := parseBinaryCopy(t, out.Bytes())
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	days := func(b []byte) int32 { return int32(binary.BigEndian.Uint32(b)) }
	if string(rows[0][1]) != "400-1" || string(rows[0][2]) != "binary one" || len(rows[0][3]) != 4 || days(rows[0][3]) != -10957 {
		t.Fatalf("binary COPY TO row 1: %q", rows[0])
	}
	if rows[1][2] != nil || days(rows[1][3]) != 8825 || string(rows[2][2]) != "ünïcødé" || rows[2][3] != nil {
		t.Fatalf("binary COPY TO rows: %q", rows)
	}
	// Binary COPY FROM raw, then round trip what COPY TO gave back.
	if _, err := conn.Exec(ctx, "DELETE FROM patients"); err != nil {
		t.Fatal(err)
	}
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(out.Bytes()), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT binary)")
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("binary COPY FROM of COPY TO output: %v %v", tag, err)
	}
	var again bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &again, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), out.Bytes()) {
		t.Fatalf("binary round trip differs")
	}
	// A bad binary value: a date field of 3 bytes.
	var bad bytes.Buffer
	bad.WriteString("PGCOPY\n\xff\r\n\x00")
	bad.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	bad.Write([]byte{0, 2, 0, 0, 0, 3})
	bad.WriteString("Bad")
	bad.Write([]byte{0, 0, 0, 3, 1, 2, 3})
	bad.Write([]byte{0xff, 0xff})
	_, err = conn.PgConn().CopyFrom(ctx, &bad, "COPY patients (name, dob) FROM STDIN (FORMAT binary)")
	// PostgreSQL's date_recv runs out of data: a protocol violation.
	wantCode(t, err, "08P01")
	var cnt int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&cnt); err != nil || cnt != 3 {
		t.Fatalf("%d rows, want 3 (%v)", cnt, err)
	}
}

func TestProtoCopyPlainTablePassesThrough(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	pc := h.connect("doctor").PgConn()
	data := "1\tplain\t000-11-2222\n2\t\\N\tx\\\\y\n"
	if tag, err := pc.CopyFrom(ctx, strings.NewReader(data), "COPY other.patients FROM STDIN"); err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY plain: %v %v", tag, err)
	}
	// Stored as sent: the same-named column in another schema is not
	// encrypted.
	var ssn string
	if err := h.direct().QueryRow(ctx, "SELECT ssn FROM other.patients WHERE id = 1").Scan(&ssn); err != nil || ssn != "000-11-2222" {
		t.Fatalf("other.patients.ssn stored as %q (%v)", ssn, err)
	}
	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY other.patients TO STDOUT"); err != nil || out.String() != data {
		t.Fatalf("COPY TO plain: %q %v", out.String(), err)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY other.patients TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	if _, err := h.direct().PgConn().CopyTo(ctx, &direct, "COPY other.patients TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), direct.Bytes()) {
		t.Fatal("binary COPY TO of a plain table differs from PostgreSQL's own")
	}
	// PostgreSQL's own error for bad data in a plain table.
	_, err := pc.CopyFrom(ctx, strings.NewReader("notanint\tx\ty\n"), "COPY other.patients FROM STDIN")
	wantCode(t, err, "22P02")
	// COPY of a query over plain data.
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT id, name FROM other.patients WHERE id = 1 UNION ALL SELECT 9, 'q') TO STDOUT (FORMAT csv)"); err != nil || out.String() != "1,plain\n9,q\n" {
		t.Fatalf("COPY (query): %q %v", out.String(), err)
	}
}

func TestProtoCopyExtendedProtocol(t *testing.T) {
	// COPY started with Parse/Bind/Execute: its data must be encrypted as
	// for a simple-query COPY.
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Query: "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT csv)"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "copy in", c.recvN(3), "ParseComplete", "BindComplete", "CopyIn")
	c.send(
		&pgproto3.CopyData{Data: []byte("Ext,ext-ssn-1,ext diagnosis,1999-09-09\n")},
		&pgproto3.CopyData{Data: []byte("Ext2,ext-ssn-2,,\n")},
		&pgproto3.CopyDone{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "copy done", c.recvReady(), "C:COPY 2", "Z:I")
	assertCiphertext(t, h, map[string][3]string{
		"Ext":  {"ext-ssn-1", "ext diagnosis", "1999-09-09"},
		"Ext2": {"ext-ssn-2", "", ""},
	})
	c.send(
		&pgproto3.Parse{Query: "COPY patients (ssn, diagnosis, dob) TO STDOUT"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "copy out", c.recvReady(), "ParseComplete", "BindComplete", "CopyOut",
		"d:ext-ssn-1\text diagnosis\t1999-09-09\n", "d:ext-ssn-2\t\\N\t\\N\n", "CopyDone", "C:COPY 2", "Z:I")
	// A bad value: the COPY fails with PostgreSQL's 22007, nothing is stored.
	c.send(
		&pgproto3.Parse{Query: "COPY patients (name, dob) FROM STDIN"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.CopyData{Data: []byte("Bad\tnever\n")},
		&pgproto3.CopyDone{},
		&pgproto3.Sync{},
	)
	got := c.recvReady()
	wantTokens(t, "bad copy", got, "ParseComplete", "BindComplete", "CopyIn", "E:22007", "Z:I")

	// libpq's way (PQexecParams): Sync right after Execute, which the
	// server ignores in copy-in mode, then CopyDone and another Sync.
	for _, tc := range []struct{ table, row string }{
		{"patients (name, ssn, diagnosis)", "Lib\tlibpq-ssn\tlibpq diagnosis\n"},
		{"other.patients (name, ssn, id)", "Lib\tlibpq-ssn\t3\n"},
	} {
		c.send(
			&pgproto3.Parse{Query: "COPY " + tc.table + " FROM STDIN"},
			&pgproto3.Bind{},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		)
		wantTokens(t, "copy in, libpq style", c.recvN(4), "ParseComplete", "BindComplete", "NoData", "CopyIn")
		c.send(
			&pgproto3.CopyData{Data: []byte(tc.row)},
			&pgproto3.Sync{}, // also ignored
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
		)
		wantTokens(t, "copy done, libpq style", c.recvReady(), "C:COPY 1", "Z:I")
		// The proxy is still in step with the server.
		wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
		wantTokens(t, "select", c.query("SELECT ssn FROM patients WHERE name = 'Lib'"), "Row:ssn/25", "D:libpq-ssn", "C:SELECT 1", "Z:T")
		wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	}
	// A simple-query COPY with a stray Sync in the data.
	c.send(&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "simple copy", c.recvN(1), "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Str\tstray-ssn\n")}, &pgproto3.Sync{}, &pgproto3.CopyDone{})
	wantTokens(t, "simple copy done", c.recvReady(), "C:COPY 1", "Z:I")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	assertCiphertext(t, h, map[string][3]string{
		"Ext":  {"ext-ssn-1", "ext diagnosis", "1999-09-09"},
		"Ext2": {"ext-ssn-2", "", ""},
		"Lib":  {"libpq-ssn", "libpq diagnosis", ""},
		"Str":  {"stray-ssn", "", ""},
	})
}

// A value COPY cannot encrypt is named by row and column, once (issue 8,
// finding 10).
func TestCopyErrorNamesRowOnce(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("a\tb\tc\t2001-01-01\nx\ty\tz\tnot-a-date\n"),
		"COPY patients (name, ssn, diagnosis, dob) FROM STDIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("COPY of a bad date: %v", err)
	}
	if !strings.Contains(pe.Message, "COPY row 2, column 4: ") || strings.Count(pe.Message, "COPY row") != 1 {
		t.Fatalf("message %q: want the row and column named once", pe.Message)
	}
}

// 1.1: with two COPY FROM STDIN in one string, the data of the second was
// sent raw (or encrypted with the other's rewriter).
func TestCopyTwoFromStdinInOneStringRefused(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	for _, sql := range []string{
		"COPY other.patients (name, ssn) FROM STDIN; COPY public.patients (name, ssn) FROM STDIN",
		"COPY public.patients (name, ssn) FROM STDIN; COPY other.patients (name, ssn) FROM STDIN",
	} {
		wantTokens(t, sql, recvReadyAfter(t, c, &pgproto3.Query{String: sql}), "E:0A000", "Z:I")
	}
	// One COPY per string still works.
	c.send(&pgproto3.Query{String: "COPY public.patients (name, ssn) FROM STDIN"})
	wantTokens(t, "single copy", c.recvN(1), "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Single\tsingle-ssn-1\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "single copy done", c.recvReady(), "C:COPY 1", "Z:I")
	assertCiphertext(t, h, map[string][3]string{"Single": {"single-ssn-1", "", ""}})
}

// 2.1: COPY FROM STDIN in a string that also needs a barrier deadlocked:
// the proxy waited for the string to end before relaying the COPY data.
func TestCopyInStringWithBarrierDoesNotDeadlock(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Query{String: "BEGIN; COPY other.patients (name) FROM STDIN; COMMIT"})
	wantTokens(t, "copy", c.recvN(2), "C:BEGIN", "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "done", recvReadyWithin(t, c, 5*time.Second), "C:COPY 1", "C:COMMIT", "Z:I")

	// An encrypted COPY too.
	c.send(&pgproto3.Query{String: "SET search_path = public; COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "encrypted copy", c.recvN(2), "C:SET", "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Barrier\tbarrier-ssn-1\n")}, &pgproto3.CopyDone{})
	wantTokens(t, "encrypted done", recvReadyWithin(t, c, 5*time.Second), "C:COPY 1", "Z:I")
	assertCiphertext(t, h, map[string][3]string{"Barrier": {"barrier-ssn-1", "", ""}})

	// A client that sends a query instead of COPY data: PostgreSQL fails
	// the COPY and drops the message; so does the proxy, without hanging.
	c.send(&pgproto3.Query{String: "BEGIN; COPY other.patients (name) FROM STDIN; COMMIT"})
	wantTokens(t, "copy again", c.recvN(2), "C:BEGIN", "CopyIn")
	c.send(&pgproto3.Query{String: "SELECT 1"})
	wantTokens(t, "violation", recvReadyWithin(t, c, 5*time.Second), "E:08P01", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	wantTokens(t, "in step", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
}

// 2.2: a COPY whose rewriter could not be built was started anyway and
// then failed too early: the server waited for data forever.
func TestCopyWithoutRewriterRefusedBeforeStart(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	const sql = `COPY public.patients (name, ssn) FROM STDIN (NULL 'a\')`
	wantTokens(t, "simple", recvReadyAfter(t, c, &pgproto3.Query{String: sql}), "E:0A000", "Z:I")
	c.send(&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "extended", recvReadyWithin(t, c, 5*time.Second), "ParseComplete", "BindComplete", "E:0A000", "Z:I")
	wantTokens(t, "in step", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:I")
}

// 2.4: a Sync swallowed by COPY left the queue without waking a frontend
// waiting for it (here: a Bind of a statement parsed before that Sync).
func TestSyncSwallowedByCopyReleasesFrontend(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Name: "c", Query: "COPY other.patients (name) FROM STDIN"},
		&pgproto3.Bind{PreparedStatement: "c"},
		&pgproto3.Execute{},
		&pgproto3.Sync{}, // ignored by the server in copy-in mode
		&pgproto3.Bind{PreparedStatement: "c"},
	)
	var got []string
	for len(got) < 4 {
		tok, err := recvWithin(c, 5*time.Second)
		if err != nil {
			t.Fatalf("after %q: %v (the proxy hangs)", got, err)
		}
		if tok != "" {
			got = append(got, tok)
		}
	}
	// PostgreSQL takes the Bind for a protocol violation during COPY,
	// which ends the session.
	wantTokens(t, "copy", got, "ParseComplete", "BindComplete", "CopyIn", "E:08P01")
	expectEOF(t, c.conn)
	stillServes(t, h)
}
