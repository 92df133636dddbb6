package proxy_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// At rest: whatever path a value takes into an encrypted column, PostgreSQL
// never holds, logs or receives its plaintext, and neither does the
// proxy's own log.

// arValues hands out distinctive plaintexts and remembers them.
type arValues struct {
	run   string
	all   []string
	dates []string
}

func (v *arValues) next(what string) string {
	s := fmt.Sprintf("AR%s-%s-%02d", v.run, what, len(v.all))
	v.all = append(v.all, s)
	return s
}

// date hands out a distinctive date (checked in the logs; its stored form
// is a day number, not text).
func (v *arValues) date() (string, time.Time) {
	d := time.Date(1901, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1000+37*len(v.dates))
	s := d.Format("2006-01-02")
	v.dates = append(v.dates, s)
	return s, d
}

// arBinaryCopy builds COPY BINARY data for (name text, ssn text, diagnosis
// text, dob date) rows; "" is NULL.
func arBinaryCopy(rows [][4]string) []byte {
	var b bytes.Buffer
	b.WriteString("PGCOPY\n\xff\r\n\x00")
	b.Write(make([]byte, 8)) // flags, header extension length
	for _, r := range rows {
		binary.Write(&b, binary.BigEndian, int16(4))
		for i, f := range r {
			if f == "" {
				binary.Write(&b, binary.BigEndian, int32(-1))
				continue
			}
			if i == 3 {
				d, _ := time.Parse("2006-01-02", f)
				days := int32(d.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Hours() / 24)
				binary.Write(&b, binary.BigEndian, int32(4))
				binary.Write(&b, binary.BigEndian, days)
				continue
			}
			binary.Write(&b, binary.BigEndian, int32(len(f)))
			b.WriteString(f)
		}
	}
	binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func TestAtRestEveryWritePath(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	v := &arValues{run: fmt.Sprintf("%x", time.Now().UnixNano()%0xffffff)}
	ext, simple := sxModes[0], sxModes[1]
	var names []string
	name := func(path string) string { n := "ar-" + path; names = append(names, n); return n }
	want := map[string][3]string{} // name → ssn, diagnosis, dob as the client should read them

	// Simple-protocol INSERT with literals.
	{
		n, ssn, diag := name("simple-insert"), v.next("ssn"), v.next("diag")
		ds, _ := v.date()
		sqMustExec(t, ctx, conn, simple, fmt.Sprintf("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('%s', '%s', '%s', '%s')", n, ssn, diag, ds))
		want[n] = [3]string{ssn, diag, ds}
	}
	// Extended INSERT with parameters (text and binary).
	{
		n, ssn, diag := name("ext-insert"), v.next("ssn"), v.next("diag")
		ds, d := v.date()
		sqMustExec(t, ctx, conn, ext, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)", n, ssn, diag, d)
		want[n] = [3]string{ssn, diag, ds}
	}
	// Extended INSERT with literals (no parameters).
	{
		n, ssn, diag := name("ext-literal"), v.next("ssn"), v.next("diag")
		ds, _ := v.date()
		sqMustExec(t, ctx, conn, ext, fmt.Sprintf("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('%s', '%s', '%s', '%s')", n, ssn, diag, ds))
		want[n] = [3]string{ssn, diag, ds}
	}
	// UPDATE, both protocols.
	{
		n := name("update")
		sqMustExec(t, ctx, conn, ext, "INSERT INTO patients (name) VALUES ($1)", n)
		ssn, diag := v.next("ssn"), v.next("diag")
		ds, _ := v.date()
		sqMustExec(t, ctx, conn, simple, fmt.Sprintf("UPDATE patients SET ssn = '%s', diagnosis = '%s', dob = '%s' WHERE name = '%s'", ssn, diag, ds, n))
		ssn2, diag2 := v.next("ssn"), v.next("diag")
		ds2, d2 := v.date()
		sqMustExec(t, ctx, conn, ext, "UPDATE patients SET ssn = $1, diagnosis = $2, dob = $3 WHERE ssn = $4", ssn2, diag2, d2, ssn)
		want[n] = [3]string{ssn2, diag2, ds2}
	}
	// ON CONFLICT DO UPDATE, both protocols.
	{
		n, ssn, diag := name("upsert"), v.next("ssn"), v.next("diag")
		sqMustExec(t, ctx, conn, simple, fmt.Sprintf("INSERT INTO patients (name, ssn, diagnosis) VALUES ('%s', '%s', '%s') ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis", n, ssn, diag))
		diag2 := v.next("diag")
		sqMustExec(t, ctx, conn, simple, fmt.Sprintf("INSERT INTO patients (name, ssn, diagnosis) VALUES ('%s', '%s', '%s') ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis", n, ssn, diag2))
		diag3 := v.next("diag")
		sqMustExec(t, ctx, conn, ext, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis", n, ssn, diag3)
		want[n] = [3]string{ssn, diag3, ""}
	}
	// COPY FROM STDIN: text, csv, binary.
	{
		n1, n2, n3 := name("copy-text"), name("copy-csv"), name("copy-binary")
		s1, d1 := v.next("ssn"), v.next("diag")
		ds1, _ := v.date()
		s2, d2 := v.next("ssn"), v.next("diag")+`, "quoted"`
		ds2, _ := v.date()
		s3, d3 := v.next("ssn"), v.next("diag")
		ds3, _ := v.date()
		text := fmt.Sprintf("%s\t%s\t%s\t%s\n", n1, s1, d1, ds1)
		if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(text), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN"); err != nil {
			t.Fatalf("COPY text: %v", err)
		}
		csv := fmt.Sprintf("%s,%s,\"%s\",%s\n", n2, s2, strings.ReplaceAll(d2, `"`, `""`), ds2)
		if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(csv), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN WITH (FORMAT csv)"); err != nil {
			t.Fatalf("COPY csv: %v", err)
		}
		bin := arBinaryCopy([][4]string{{n3, s3, d3, ds3}})
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(bin), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN WITH (FORMAT binary)"); err != nil {
			t.Fatalf("COPY binary: %v", err)
		}
		want[n1] = [3]string{s1, d1, ds1}
		want[n2] = [3]string{s2, d2, ds2}
		want[n3] = [3]string{s3, d3, ds3}
	}
	// SQL-level PREPARE / EXECUTE, both protocols.
	{
		sqMustExec(t, ctx, conn, simple, "PREPARE ar_ins(text, text, text, date) AS INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)")
		for _, m := range sxModes {
			n, ssn, diag := name("execute-"+m.name), v.next("ssn"), v.next("diag")
			ds, _ := v.date()
			sqMustExec(t, ctx, conn, m, fmt.Sprintf("EXECUTE ar_ins('%s', '%s', '%s', '%s')", n, ssn, diag, ds))
			want[n] = [3]string{ssn, diag, ds}
		}
		sqMustExec(t, ctx, conn, simple, "DEALLOCATE ar_ins")
	}
	// pgx CopyFrom (binary COPY with the types the proxy describes).
	{
		var rows [][]any
		for i := 0; i < 3; i++ {
			n, ssn, diag := name(fmt.Sprintf("pgx-copy-%d", i)), v.next("ssn"), v.next("diag")
			ds, d := v.date()
			rows = append(rows, []any{n, ssn, diag, d})
			want[n] = [3]string{ssn, diag, ds}
		}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"name", "ssn", "diagnosis", "dob"}, pgx.CopyFromRows(rows)); err != nil {
			t.Fatalf("pgx CopyFrom: %v", err)
		}
	}
	// visits: INSERT … SELECT of ssn, a note by parameter and by COPY.
	var notes []string
	{
		note := v.next("note")
		notes = append(notes, note)
		sqMustExec(t, ctx, conn, ext, "INSERT INTO visits (patient_ssn, note) SELECT ssn, $1 FROM patients WHERE name = $2", note, "ar-ext-insert")
		vs, note2 := v.next("ssn"), v.next("note")
		notes = append(notes, note2)
		if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(vs+"\t"+note2+"\n"), "COPY visits (patient_ssn, note) FROM STDIN"); err != nil {
			t.Fatalf("COPY visits: %v", err)
		}
	}

	// The client reads back every value.
	for _, n := range names {
		w := want[n]
		var ssn, diag *string
		var dob *time.Time
		if err := conn.QueryRow(ctx, "SELECT ssn, diagnosis, dob FROM patients WHERE name = $1", n).Scan(&ssn, &diag, &dob); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		got := [3]string{deref(ssn), deref(diag), ""}
		if dob != nil {
			got[2] = dob.Format("2006-01-02")
		}
		if got != w {
			t.Fatalf("%s reads back %q, want %q", n, got, w)
		}
	}
	gotNotes := sqSorted(sqRows(t, ctx, conn, ext, "SELECT note FROM visits"))
	if !slices.Equal(gotNotes, sqSorted(notes)) {
		t.Fatalf("visits.note reads back %q, want %q", gotNotes, notes)
	}

	// Straight from PostgreSQL: only ciphertext, no plaintext in the bytes
	// or their hex.
	stored := 0
	for _, col := range []string{"patients.ssn", "patients.diagnosis", "patients.dob", "visits.patient_ssn", "visits.note"} {
		tbl, c, _ := strings.Cut(col, ".")
		for _, raw := range sqDirectBytes(t, ctx, h, fmt.Sprintf("SELECT %s FROM public.%s WHERE %s IS NOT NULL", c, tbl, c)) {
			sqSealed(t, col, raw, v.all...)
			stored++
		}
	}
	if stored < 3*len(names) {
		t.Fatalf("only %d encrypted values stored for %d rows", stored, len(names))
	}
	// The whole database dump, as text, holds none of them either.
	var dump string
	if err := h.direct().QueryRow(ctx, "SELECT string_agg(t::text, E'\\n') FROM (SELECT p::text AS t FROM public.patients p UNION ALL SELECT v::text FROM public.visits v) x").Scan(&dump); err != nil {
		t.Fatal(err)
	}
	for _, p := range v.all {
		if strings.Contains(dump, p) || strings.Contains(dump, hex.EncodeToString([]byte(p))) {
			t.Fatalf("table text holds %q", p)
		}
	}

	// PostgreSQL's statement log and the proxy's log hold none of them.
	marker := "pgcloak-atrest-marker-" + v.run
	sxExec(t, ctx, conn, "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	proxyLog := h.logBuf.String()
	if !strings.Contains(proxyLog, "session started") {
		t.Fatalf("the proxy's debug log is empty: the check would mean nothing")
	}
	for _, p := range append(slices.Clone(v.all), v.dates...) {
		if strings.Contains(log, p) {
			t.Fatalf("PostgreSQL's statement log holds the plaintext %q", p)
		}
		if strings.Contains(proxyLog, p) {
			t.Fatalf("the proxy's log holds the plaintext %q", p)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestAtRestRefusedAndFailedStatements: values in statements the proxy
// refuses, or that fail in PostgreSQL, or that are rolled back, never reach
// PostgreSQL (or its log) as plaintext either.
func TestAtRestRefusedAndFailedStatements(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	v := &arValues{run: fmt.Sprintf("%x", time.Now().UnixNano()%0xffffff)}
	doc := h.connect("doctor")
	billing := h.connect("billing")
	for _, m := range sxModes {
		// Refused: LIKE with the value, a write without the grant.
		_, err := sqExec(ctx, doc, m, "SELECT name FROM patients WHERE ssn LIKE '"+v.next("like")+"%'")
		wantCode(t, err, "0A000")
		_, err = sqExec(ctx, billing, m, "INSERT INTO patients (name, diagnosis) VALUES ('x', $1)", v.next("denied"))
		wantCode(t, err, "42501")
		// Failed in PostgreSQL after encryption (unique violation).
		ssn := v.next("dup")
		sqMustExec(t, ctx, doc, m, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "dup-"+m.name, ssn)
		_, err = sqExec(ctx, doc, m, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('dup2', $1, $2)", ssn, v.next("diag"))
		wantCode(t, err, "23505")
		// Rolled back.
		sqMustExec(t, ctx, doc, m, "BEGIN")
		sqMustExec(t, ctx, doc, m, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "rb-"+m.name, v.next("rolledback"))
		sqMustExec(t, ctx, doc, m, "ROLLBACK")
		// An invalid value for the logical type: PostgreSQL's 22007, value
		// not echoed.
		_, err = sqExec(ctx, doc, m, "INSERT INTO patients (name, dob) VALUES ('bad', '"+v.next("notadate")+"')")
		pe := wantCode(t, err, "22007")
		for _, p := range v.all {
			if strings.Contains(pe.Message, p) || strings.Contains(pe.Detail, p) {
				t.Fatalf("error echoes the value: %+v", pe)
			}
		}
	}
	marker := "pgcloak-atrest-refused-marker-" + v.run
	sxExec(t, ctx, doc, "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	proxyLog := h.logBuf.String()
	for _, p := range v.all {
		if strings.Contains(log, p) {
			t.Fatalf("PostgreSQL's statement log holds the plaintext %q", p)
		}
		if strings.Contains(proxyLog, p) {
			t.Fatalf("the proxy's log holds the plaintext %q", p)
		}
	}
	for _, col := range []string{"ssn", "diagnosis"} {
		for _, raw := range sqDirectBytes(t, ctx, h, "SELECT "+col+" FROM public.patients WHERE "+col+" IS NOT NULL") {
			sqSealed(t, col, raw, v.all...)
		}
	}
}
