package proxy_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/proxy"
)

// SQL-semantics tests: what the README's SQL table promises, through pgx
// and the proxy against the real PostgreSQL, in both protocols.

// sqPolicy is testPolicy plus an int8 column under a deterministic key of
// its own, to check that text and binary values encrypt alike.
const sqPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
    - {name: dates, kind: randomized}
    - {name: acct, kind: deterministic}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
    - {table: public.patients, column: dob, key: dates, type: date}
    - {table: public.visits, column: patient_ssn, key: ssn, type: text}
    - {table: public.visits, column: note, key: clinical, type: text}
    - {table: public.accounts, column: num, key: acct, type: int8}
  roles:
    - {role: doctor, read: [ssn, clinical, dates, acct], write: [ssn, clinical, dates, acct]}
    - {role: billing, read: [ssn], on_denied: "null"}
    - {role: auditor, read: [], on_denied: mask}
    - {role: archivist, read: [], on_denied: ciphertext}
    - {role: strict, read: [ssn], on_denied: error}
`

// sqSchema is testSchema plus the relations name-resolution tests need.
const sqSchema = testSchema + `
CREATE TABLE public.accounts (id serial PRIMARY KEY, owner text, num bytea UNIQUE);
CREATE TABLE public."Patients" (id int, name text, ssn text);
CREATE SCHEMA hidden;
CREATE TABLE hidden.patients (id int, name text, ssn text, diagnosis text);
GRANT USAGE ON SCHEMA hidden TO PUBLIC;
GRANT CREATE ON SCHEMA public, other TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA public, other, hidden TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
`

// args prepends the mode to query arguments.
func (m sxMode) args(args ...any) []any { return append([]any{m.mode}, args...) }

// sqRows runs a query and renders each row as its values joined by "|",
// NULL as "NULL".
func sqRows(t *testing.T, ctx context.Context, conn *pgx.Conn, m sxMode, sql string, args ...any) []string {
	t.Helper()
	out, err := sqTryRows(ctx, conn, m, sql, args...)
	if err != nil {
		t.Fatalf("%s (%s): %v", sql, m.name, err)
	}
	return out
}

func sqTryRows(ctx context.Context, conn *pgx.Conn, m sxMode, sql string, args ...any) ([]string, error) {
	out, err := sqTryRowsOnce(ctx, conn, m, sql, args...)
	if pe := pgErr(err); pe != nil && pe.Code == "0A000" && strings.Contains(pe.Message, "prepare it again") {
		// See sqMustExecCached.
		out, err = sqTryRowsOnce(ctx, conn, m, sql, args...)
	}
	return out, err
}

func sqTryRowsOnce(ctx context.Context, conn *pgx.Conn, m sxMode, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, m.args(args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case nil:
				parts[i] = "NULL"
			case time.Time:
				parts[i] = x.Format("2006-01-02")
			case []byte:
				parts[i] = `\x` + hex.EncodeToString(x)
			default:
				parts[i] = fmt.Sprint(x)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out, rows.Err()
}

func sqWant(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// sqSorted returns the rows sorted, for results whose order is unspecified.
func sqSorted(rows []string) []string {
	rows = slices.Clone(rows)
	slices.Sort(rows)
	return rows
}

// sqExec runs a statement with arguments in the mode (without arguments
// pgx would fall back to the simple protocol; sxExecMode handles that).
func sqExec(ctx context.Context, conn *pgx.Conn, m sxMode, sql string, args ...any) (int64, error) {
	if len(args) == 0 && !m.simple() {
		res := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
		return res.CommandTag.RowsAffected(), res.Err
	}
	tag, err := conn.Exec(ctx, sql, m.args(args...)...)
	return tag.RowsAffected(), err
}

// sqMustExecCached runs a statement through pgx's statement cache. A
// cached statement prepared under another search_path whose plan would
// now differ is refused once (0A000, "prepare it again"); pgx then drops
// it from its cache and the retry prepares it afresh.
func sqMustExecCached(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := conn.Exec(ctx, sql, args...)
	if pe := pgErr(err); pe != nil && pe.Code == "0A000" && strings.Contains(pe.Message, "prepare it again") {
		_, err = conn.Exec(ctx, sql, args...)
	}
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func pgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

func sqMustExec(t *testing.T, ctx context.Context, conn *pgx.Conn, m sxMode, sql string, args ...any) int64 {
	t.Helper()
	n, err := sqExec(ctx, conn, m, sql, args...)
	if err != nil {
		t.Fatalf("%s (%s): %v", sql, m.name, err)
	}
	return n
}

// sqDirectText reads one text value straight from PostgreSQL.
func sqDirectText(t *testing.T, ctx context.Context, h *harness, sql string, args ...any) *string {
	t.Helper()
	var v *string
	if err := h.direct().QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("direct %s: %v", sql, err)
	}
	return v
}

// sqDirectBytes reads bytea values straight from PostgreSQL.
func sqDirectBytes(t *testing.T, ctx context.Context, h *harness, sql string, args ...any) [][]byte {
	t.Helper()
	rows, err := h.direct().Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("direct %s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatalf("direct %s: %v", sql, err)
	}
	return out
}

// sqSealed checks that a stored value is pgcloak ciphertext and does not
// contain any of the plaintexts, raw or hex-encoded.
func sqSealed(t *testing.T, what string, raw []byte, plains ...string) {
	t.Helper()
	if len(raw) < 5 || !bytes.HasPrefix(raw, []byte{0xC7, 'p', 'g', 'c'}) {
		t.Fatalf("%s: stored value %q is not pgcloak ciphertext", what, raw)
	}
	h := hex.EncodeToString(raw)
	for _, p := range plains {
		if bytes.Contains(raw, []byte(p)) || strings.Contains(h, hex.EncodeToString([]byte(p))) {
			t.Fatalf("%s: stored value contains the plaintext %q", what, p)
		}
	}
}

// sqRefused checks a 0A000 refusal naming col (schema.table.column).
func sqRefused(t *testing.T, what string, err error, code string, cols ...string) {
	t.Helper()
	pe := wantCode(t, err, code)
	if !strings.HasPrefix(pe.Message, "pgcloak: ") {
		t.Fatalf("%s: message %q lacks the pgcloak prefix", what, pe.Message)
	}
	if len(cols) == 0 {
		return
	}
	for _, c := range cols {
		if strings.Contains(pe.Message, c) {
			return
		}
	}
	t.Fatalf("%s: message %q names none of %q", what, pe.Message, cols)
}

func TestSearchPathResolution(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for i, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			tag := fmt.Sprintf("%s-%d", m.name, i)
			ins := func(name, ssn string) {
				t.Helper()
				if m.simple() {
					sqMustExec(t, ctx, conn, m, fmt.Sprintf("INSERT INTO patients (name, ssn) VALUES ('%s', '%s')", name, ssn))
				} else {
					sqMustExecCached(t, ctx, conn, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", name, ssn)
				}
			}
			isPublic := func(step string) {
				t.Helper()
				_, err := sqTryRows(ctx, conn, m, "SELECT name FROM patients ORDER BY ssn")
				sqRefused(t, step+": ORDER BY ssn", err, "0A000", "public.patients.ssn")
			}
			isOther := func(step string) {
				t.Helper()
				if _, err := sqTryRows(ctx, conn, m, "SELECT name FROM patients ORDER BY ssn"); err != nil {
					t.Fatalf("%s: patients should be the plain other.patients: %v", step, err)
				}
			}

			// Default search_path: public.patients, encrypted.
			ins("pub-"+tag, "PUB-SSN-"+tag)
			sqSealed(t, "public.patients.ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = $1", "pub-"+tag)[0], "PUB-SSN-"+tag)
			isPublic("default path")

			// other first: other.patients is plain; values go in and
			// come out as plaintext.
			sqMustExec(t, ctx, conn, m, "SET search_path TO other, public")
			isOther("SET search_path TO other, public")
			ins("oth-"+tag, "OTH-SSN-"+tag)
			if v := sqDirectText(t, ctx, h, "SELECT ssn FROM other.patients WHERE name = $1", "oth-"+tag); v == nil || *v != "OTH-SSN-"+tag {
				t.Fatalf("other.patients.ssn stored %v, want the plaintext", v)
			}
			sqWant(t, "read other.patients", sqRows(t, ctx, conn, m, "SELECT ssn FROM patients WHERE ssn LIKE $1", "OTH-SSN-"+tag+"%"), "OTH-SSN-"+tag)
			// visits exists only in public: still the encrypted one.
			sqMustExec(t, ctx, conn, m, "INSERT INTO visits (patient_ssn) VALUES ('VIS-SSN-"+tag+"')")
			for _, raw := range sqDirectBytes(t, ctx, h, "SELECT patient_ssn FROM public.visits") {
				sqSealed(t, "public.visits.patient_ssn", raw, "VIS-SSN-"+tag)
			}
			// Qualified public.patients is still encrypted.
			_, err := sqTryRows(ctx, conn, m, "SELECT name FROM public.patients WHERE ssn LIKE 'PUB%'")
			sqRefused(t, "public.patients LIKE", err, "0A000", "public.patients.ssn")

			// Back to public.
			sqMustExec(t, ctx, conn, m, "SET search_path TO public")
			isPublic("SET search_path TO public")
			sqWant(t, "read public.patients", sqRows(t, ctx, conn, m, "SELECT ssn FROM patients WHERE name = $1", "pub-"+tag), "PUB-SSN-"+tag)

			// set_config is tracked like SET.
			sqMustExec(t, ctx, conn, m, "SELECT set_config('search_path', 'other,public', false)")
			isOther("set_config search_path")
			sqWant(t, "read via set_config path", sqRows(t, ctx, conn, m, "SELECT ssn FROM patients WHERE name = $1", "oth-"+tag), "OTH-SSN-"+tag)
			sqMustExec(t, ctx, conn, m, "RESET search_path")
			isPublic("RESET search_path")

			// Quoted "Patients" is a different, plain table.
			if m.simple() {
				sqMustExec(t, ctx, conn, m, "INSERT INTO \"Patients\" VALUES (1, 'quoted-"+tag+"', 'QUO-SSN-"+tag+"')")
			} else {
				sqMustExec(t, ctx, conn, m, "INSERT INTO \"Patients\" VALUES ($1, $2, $3)", 1, "quoted-"+tag, "QUO-SSN-"+tag)
			}
			if v := sqDirectText(t, ctx, h, `SELECT ssn FROM public."Patients" WHERE name = $1`, "quoted-"+tag); v == nil || *v != "QUO-SSN-"+tag {
				t.Fatalf(`"Patients".ssn stored %v, want the plaintext`, v)
			}
			sqWant(t, `read "Patients"`, sqRows(t, ctx, conn, m, `SELECT ssn FROM "Patients" WHERE name = $1 ORDER BY ssn`, "quoted-"+tag), "QUO-SSN-"+tag)

			// Schema-qualified other.patients is plain whatever the path.
			sqMustExec(t, ctx, conn, m, "INSERT INTO other.patients (id, name, ssn) VALUES (2, 'q-oth-"+tag+"', 'QOTH-SSN-"+tag+"')")
			if v := sqDirectText(t, ctx, h, "SELECT ssn FROM other.patients WHERE name = $1", "q-oth-"+tag); v == nil || *v != "QOTH-SSN-"+tag {
				t.Fatalf("other.patients.ssn stored %v, want the plaintext", v)
			}
			sqWant(t, "qualified other.patients", sqRows(t, ctx, conn, m, "SELECT ssn FROM other.patients WHERE ssn LIKE 'QOTH-SSN-"+tag+"' ORDER BY ssn"), "QOTH-SSN-"+tag)

			// hidden.patients is not on the path and never confuses.
			ins("pub2-"+tag, "PUB2-SSN-"+tag)
			sqSealed(t, "public.patients.ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = $1", "pub2-"+tag)[0], "PUB2-SSN-"+tag)
			if n := sqDirectText(t, ctx, h, "SELECT count(*)::text FROM hidden.patients"); *n != "0" {
				t.Fatalf("hidden.patients has %s rows", *n)
			}
			sqMustExec(t, ctx, conn, m, "SET search_path TO hidden")
			isOther("SET search_path TO hidden")
			sqMustExec(t, ctx, conn, m, "SET search_path TO public, hidden")
			isPublic("SET search_path TO public, hidden")
			sqMustExec(t, ctx, conn, m, "RESET search_path")
		})
	}
}

func TestSearchPathRolledBack(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			isPublic := func(step string) {
				t.Helper()
				_, err := sqTryRows(ctx, conn, m, "SELECT name FROM patients ORDER BY ssn")
				sqRefused(t, step, err, "0A000", "public.patients.ssn")
			}
			isOther := func(step string) {
				t.Helper()
				if _, err := sqTryRows(ctx, conn, m, "SELECT name FROM patients ORDER BY ssn"); err != nil {
					t.Fatalf("%s: patients should be other.patients: %v", step, err)
				}
			}
			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "SET search_path TO other, public")
			isOther("SET in a transaction")
			sqMustExec(t, ctx, conn, m, "ROLLBACK")
			isPublic("after ROLLBACK")
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ('rb-"+m.name+"', 'RB-SSN-"+m.name+"')")
			sqSealed(t, "after ROLLBACK", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = $1", "rb-"+m.name)[0], "RB-SSN-"+m.name)

			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "SET LOCAL search_path TO other, public")
			isOther("SET LOCAL")
			sqMustExec(t, ctx, conn, m, "COMMIT")
			isPublic("after COMMIT of SET LOCAL")

			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "SAVEPOINT s")
			sqMustExec(t, ctx, conn, m, "SELECT set_config('search_path', 'other, public', false)")
			isOther("set_config after SAVEPOINT")
			sqMustExec(t, ctx, conn, m, "ROLLBACK TO SAVEPOINT s")
			isPublic("ROLLBACK TO SAVEPOINT")
			sqMustExec(t, ctx, conn, m, "COMMIT")
			isPublic("after COMMIT")

			// A failed transaction's SET is undone at COMMIT too.
			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "SET search_path TO other, public")
			wantCode(t, func() error { _, err := sqExec(ctx, conn, m, "SELECT 1/0"); return err }(), "22012")
			sqMustExec(t, ctx, conn, m, "COMMIT")
			isPublic("after COMMIT of a failed transaction")

			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "SET search_path TO other, public")
			sqMustExec(t, ctx, conn, m, "COMMIT")
			isOther("after COMMIT")
			sqMustExec(t, ctx, conn, m, "RESET search_path")
		})
	}
}

// TestSearchPathInString: a SET search_path earlier in a query string
// decides where the later statements' names resolve.
func TestSearchPathInString(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	simple := sxModes[1]
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO other, public")
	if _, err := sxMulti(ctx, conn, "SET search_path TO public; INSERT INTO patients (name, ssn) VALUES ('in-string', 'INSTR-SSN-1')"); err != nil {
		t.Fatal(err)
	}
	sqSealed(t, "public.patients.ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = 'in-string'")[0], "INSTR-SSN-1")
	if _, err := sxMulti(ctx, conn, "SET search_path TO other, public; INSERT INTO patients (id, name, ssn) VALUES (7, 'in-string-2', 'INSTR-SSN-2')"); err != nil {
		t.Fatal(err)
	}
	if v := sqDirectText(t, ctx, h, "SELECT ssn FROM other.patients WHERE name = 'in-string-2'"); v == nil || *v != "INSTR-SSN-2" {
		t.Fatalf("other.patients.ssn = %v", v)
	}
	// A refusal that depends on the path in effect.
	_, err := sxMulti(ctx, conn, "SET search_path TO public; SELECT name FROM patients ORDER BY ssn")
	sqRefused(t, "ORDER BY after SET in the string", err, "0A000", "public.patients.ssn")
	if _, err := sxMulti(ctx, conn, "SET search_path TO other; SELECT name FROM patients ORDER BY ssn"); err != nil {
		t.Fatalf("ORDER BY on the plain table after SET in the string: %v", err)
	}
	sxMustExecMode(t, ctx, conn, simple, "RESET search_path")
}

// TestSearchPathUser: "$user" in the search path follows the current role.
func TestSearchPathUser(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema+`
CREATE SCHEMA billing AUTHORIZATION billing;
CREATE TABLE billing.patients (id int, name text, ssn text);
GRANT ALL ON billing.patients TO PUBLIC;
`)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			// doctor has no schema: "$user" skipped, public.patients.
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ('u-doc-"+m.name+"', 'UDOC-SSN-"+m.name+"')")
			sqSealed(t, "public.patients.ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = $1", "u-doc-"+m.name)[0], "UDOC-SSN-"+m.name)
			// As billing, "$user" is billing: billing.patients, plain;
			// the write needs no grant.
			sqMustExec(t, ctx, conn, m, "SET ROLE billing")
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ('u-bil-"+m.name+"', 'UBIL-SSN')")
			if v := sqDirectText(t, ctx, h, "SELECT ssn FROM billing.patients WHERE name = $1", "u-bil-"+m.name); v == nil || *v != "UBIL-SSN" {
				t.Fatalf("billing.patients.ssn = %v", v)
			}
			sqWant(t, "billing.patients", sqRows(t, ctx, conn, m, "SELECT ssn FROM patients WHERE name = $1 ORDER BY ssn", "u-bil-"+m.name), "UBIL-SSN")
			sqMustExec(t, ctx, conn, m, "RESET ROLE")
			_, err := sqTryRows(ctx, conn, m, "SELECT name FROM patients ORDER BY ssn")
			sqRefused(t, "after RESET ROLE", err, "0A000", "public.patients.ssn")
		})
	}
}

func TestWritePathInsert(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sfx := "-" + m.name
			q := func(s string) string { return strings.ReplaceAll(s, "~", sfx) }
			dob := time.Date(1980, 2, 29, 0, 0, 0, 0, time.UTC)
			if m.simple() {
				sqMustExec(t, ctx, conn, m, q("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('list~', 'L-SSN~', 'l-diag', '1980-02-29')"))
				sqMustExec(t, ctx, conn, m, q("INSERT INTO patients VALUES (DEFAULT, 'nolist~', 'N-SSN~', 'n-diag', '1980-02-29')"))
				sqMustExec(t, ctx, conn, m, q("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('multi1~', 'M1-SSN~', 'm1', NULL), ('multi2~', NULL, DEFAULT, '2001-01-01'), ('multi3~', 'M3-SSN~', E'm3\\ttab', DEFAULT)"))
			} else {
				sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)", q("list~"), q("L-SSN~"), "l-diag", dob)
				sqMustExec(t, ctx, conn, m, "INSERT INTO patients VALUES (DEFAULT, $1, $2, $3, $4)", q("nolist~"), q("N-SSN~"), "n-diag", dob)
				sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, NULL), ($4, NULL, DEFAULT, $5), ($6, $7, $8, DEFAULT)",
					q("multi1~"), q("M1-SSN~"), "m1", q("multi2~"), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), q("multi3~"), q("M3-SSN~"), "m3\ttab")
			}
			sqWant(t, "inserted rows", sqRows(t, ctx, conn, m, "SELECT name, ssn, diagnosis, dob FROM patients WHERE name LIKE $1 ORDER BY id", "%"+sfx),
				q("list~|L-SSN~|l-diag|1980-02-29"),
				q("nolist~|N-SSN~|n-diag|1980-02-29"),
				q("multi1~|M1-SSN~|m1|NULL"),
				q("multi2~|NULL|NULL|2001-01-01"),
				q("multi3~|M3-SSN~|m3\ttab|NULL"))
			for _, raw := range sqDirectBytes(t, ctx, h, "SELECT diagnosis FROM patients WHERE name LIKE $1 AND diagnosis IS NOT NULL", "%"+sfx) {
				sqSealed(t, "diagnosis", raw, "l-diag", "n-diag", "m3\ttab")
			}

			// ON CONFLICT on the unique ciphertext of a deterministic column.
			var n int64
			if m.simple() {
				n = sqMustExec(t, ctx, conn, m, q("INSERT INTO patients (name, ssn) VALUES ('dup~', 'L-SSN~') ON CONFLICT (ssn) DO NOTHING"))
			} else {
				n = sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ($1, $2) ON CONFLICT (ssn) DO NOTHING", q("dup~"), q("L-SSN~"))
			}
			if n != 0 {
				t.Fatalf("ON CONFLICT DO NOTHING inserted %d rows", n)
			}
			if m.simple() {
				sqMustExec(t, ctx, conn, m, q("INSERT INTO patients (name, ssn, diagnosis) VALUES ('dup~', 'L-SSN~', 'updated-by-upsert') ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis"))
			} else {
				sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis", q("dup~"), q("L-SSN~"), "updated-by-upsert")
			}
			sqWant(t, "after upsert", sqRows(t, ctx, conn, m, "SELECT name, diagnosis FROM patients WHERE ssn = $1", q("L-SSN~")), q("list~|updated-by-upsert"))

			// RETURNING encrypted columns: decrypted for the client.
			var got []string
			if m.simple() {
				got = sqRows(t, ctx, conn, m, q("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('ret~', 'R-SSN~', 'r-diag', '1999-12-31') RETURNING name, ssn, diagnosis AS d, dob"))
			} else {
				got = sqRows(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4) RETURNING name, ssn, diagnosis AS d, dob", q("ret~"), q("R-SSN~"), "r-diag", time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC))
			}
			sqWant(t, "INSERT RETURNING", got, q("ret~|R-SSN~|r-diag|1999-12-31"))
			sqWant(t, "upsert RETURNING", sqRows(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis RETURNING ssn, diagnosis", q("ret2~"), q("R-SSN~"), "r-diag-2"),
				q("R-SSN~|r-diag-2"))
			sqWant(t, "RETURNING *", sqRows(t, ctx, conn, m, "UPDATE patients SET dob = NULL WHERE ssn = $1 RETURNING name, ssn, diagnosis, dob", q("R-SSN~")), q("ret~|R-SSN~|r-diag-2|NULL"))
		})
	}
}

func TestWritePathUpdateDelete(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sfx := "-" + m.name
			q := func(s string) string { return strings.ReplaceAll(s, "~", sfx) }
			for _, r := range []string{"a", "b", "c", "d"} {
				sqMustExec(t, ctx, conn, sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", r+sfx, strings.ToUpper(r)+"-SSN"+sfx, r+"-diag")
			}
			// SET with a literal, WHERE on the deterministic column.
			if n := sqMustExec(t, ctx, conn, m, q("UPDATE patients SET diagnosis = 'lit-upd' WHERE ssn = 'A-SSN~'")); n != 1 {
				t.Fatalf("UPDATE literal: %d rows", n)
			}
			// SET with parameters.
			if n := sqMustExec(t, ctx, conn, m, "UPDATE patients SET diagnosis = $1, ssn = $2 WHERE ssn = $3", "param-upd", q("B2-SSN~"), q("B-SSN~")); n != 1 {
				t.Fatalf("UPDATE params: %d rows", n)
			}
			// NULL and IN.
			if n := sqMustExec(t, ctx, conn, m, q("UPDATE patients SET diagnosis = NULL WHERE ssn IN ('C-SSN~', 'no-such')")); n != 1 {
				t.Fatalf("UPDATE IN: %d rows", n)
			}
			sqWant(t, "after updates", sqRows(t, ctx, conn, m, "SELECT name, ssn, diagnosis FROM patients WHERE name LIKE $1 ORDER BY name", "%"+sfx),
				q("a~|A-SSN~|lit-upd"), q("b~|B2-SSN~|param-upd"), q("c~|C-SSN~|NULL"), q("d~|D-SSN~|d-diag"))
			for _, raw := range sqDirectBytes(t, ctx, h, "SELECT ssn FROM patients WHERE name LIKE $1", "%"+sfx) {
				sqSealed(t, "ssn", raw, q("B2-SSN~"), q("A-SSN~"))
			}
			if n := sqMustExec(t, ctx, conn, m, q("DELETE FROM patients WHERE ssn = 'A-SSN~'")); n != 1 {
				t.Fatalf("DELETE literal: %d rows", n)
			}
			if n := sqMustExec(t, ctx, conn, m, "DELETE FROM patients WHERE ssn IN ($1, $2)", q("B2-SSN~"), q("C-SSN~")); n != 2 {
				t.Fatalf("DELETE IN params: %d rows", n)
			}
			sqWant(t, "after deletes", sqRows(t, ctx, conn, m, "SELECT name FROM patients WHERE name LIKE $1", "%"+sfx), q("d~"))
		})
	}
}

// TestWritePathIntCanonical: an int8 value written in binary (pgx,
// extended) is found by a text literal written differently (007) and the
// reverse, because values are canonicalised before deterministic
// encryption.
func TestWritePathIntCanonical(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	ext, simple := sxModes[0], sxModes[1]
	sqMustExec(t, ctx, conn, ext, "INSERT INTO accounts (owner, num) VALUES ($1, $2)", "bin", int64(7))
	sqMustExec(t, ctx, conn, simple, "INSERT INTO accounts (owner, num) VALUES ('txt', '0042')")
	sqMustExec(t, ctx, conn, simple, "INSERT INTO accounts (owner, num) VALUES ('bare', 123456789)")
	sqWant(t, "literal 007 finds binary 7", sqRows(t, ctx, conn, simple, "SELECT owner, num FROM accounts WHERE num = '007'"), "bin|7")
	sqWant(t, "binary 42 finds literal 0042", sqRows(t, ctx, conn, ext, "SELECT owner, num FROM accounts WHERE num = $1", int64(42)), "txt|42")
	sqWant(t, "text-format param", sqRows(t, ctx, conn, ext, "SELECT owner FROM accounts WHERE num = $1", "+123456789"), "bare")
	sqWant(t, "IN mixed", sqRows(t, ctx, conn, simple, "SELECT owner FROM accounts WHERE num IN (7, 42) ORDER BY owner"), "bin", "txt")
	// ON CONFLICT on the int column's unique ciphertext.
	if n := sqMustExec(t, ctx, conn, simple, "INSERT INTO accounts (owner, num) VALUES ('dup', '+7') ON CONFLICT (num) DO NOTHING"); n != 0 {
		t.Fatalf("duplicate 7 inserted %d rows", n)
	}
	_, err := sqExec(ctx, conn, simple, "INSERT INTO accounts (owner, num) VALUES ('bad', 'seven')")
	sqRefused(t, "invalid int", err, "22P02", "public.accounts.num")
	for _, raw := range sqDirectBytes(t, ctx, h, "SELECT num FROM accounts") {
		sqSealed(t, "accounts.num", raw)
	}
}

func TestWritePathSQLPrepare(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sfx := "-" + m.name
			sqMustExec(t, ctx, conn, m, "PREPARE ins(text, text, text) AS INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)")
			sqMustExec(t, ctx, conn, m, "EXECUTE ins('prep"+sfx+"', 'P-SSN"+sfx+"', 'p-diag')")
			sqMustExec(t, ctx, conn, m, "EXECUTE ins('prep2"+sfx+"', NULL, 'p2-diag')")
			sqMustExec(t, ctx, conn, m, "PREPARE sel(text) AS SELECT name, diagnosis FROM patients WHERE ssn = $1")
			sqWant(t, "EXECUTE sel", sqRows(t, ctx, conn, m, "EXECUTE sel('P-SSN"+sfx+"')"), "prep"+sfx+"|p-diag")
			sqMustExec(t, ctx, conn, m, "DEALLOCATE ins")
			sqMustExec(t, ctx, conn, m, "DEALLOCATE PREPARE sel")
			// Gone: PostgreSQL would say 26000; the proxy, which cannot
			// judge the arguments without the statement, refuses first.
			_, err := sqExec(ctx, conn, m, "EXECUTE ins('x', 'y', 'z')")
			wantCode(t, err, "0A000")
			sqSealed(t, "prepared ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM patients WHERE name = $1", "prep"+sfx)[0], "P-SSN"+sfx)
			// An argument for an encrypted parameter must be a constant.
			sqMustExec(t, ctx, conn, m, "PREPARE ins2(text, text) AS INSERT INTO patients (name, ssn) VALUES ($1, $2)")
			_, err = sqExec(ctx, conn, m, "EXECUTE ins2('x', upper('y'))")
			sqRefused(t, "EXECUTE with an expression", err, "0A000", "public.patients.ssn")
			sqMustExec(t, ctx, conn, m, "DEALLOCATE ALL")
		})
	}
}

// TestPrepareExecuteInString: EXECUTE of a statement prepared earlier in
// the same query string must encrypt its arguments.
func TestPrepareExecuteInString(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := sxMulti(ctx, conn, "PREPARE p(text, text) AS INSERT INTO patients (name, ssn) VALUES ($1, $2); EXECUTE p('same-string', 'SAME-STRING-SSN'); DEALLOCATE p"); err != nil {
		// Refusing is acceptable; sending the plaintext is not.
		sqRefused(t, "PREPARE; EXECUTE in one string", err, "0A000")
		return
	}
	sqSealed(t, "ssn", sqDirectBytes(t, ctx, h, "SELECT ssn FROM patients WHERE name = 'same-string'")[0], "SAME-STRING-SSN")
}

func TestWritePathInsertSelect(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sfx := "-" + m.name
			sqMustExec(t, ctx, conn, sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "src"+sfx, "IS-SSN"+sfx, "is-diag")
			// ssn → visits.patient_ssn: same deterministic key, allowed.
			if n := sqMustExec(t, ctx, conn, m, "INSERT INTO visits (patient_ssn, visited_on) SELECT ssn, DATE '2020-05-05' FROM patients WHERE name = $1", "src"+sfx); n != 1 {
				t.Fatalf("INSERT … SELECT: %d rows", n)
			}
			sqWant(t, "join on the copied ssn", sqRows(t, ctx, conn, m, "SELECT p.name, v.patient_ssn FROM patients p JOIN visits v ON p.ssn = v.patient_ssn WHERE p.name = $1", "src"+sfx),
				"src"+sfx+"|IS-SSN"+sfx)
			// diagnosis → visits.note: randomized, bound to its column.
			_, err := sqExec(ctx, conn, m, "INSERT INTO visits (note) SELECT diagnosis FROM patients")
			sqRefused(t, "diagnosis into note", err, "0A000", "public.patients.diagnosis", "public.visits.note")
			// ssn → note: different keys.
			_, err = sqExec(ctx, conn, m, "INSERT INTO visits (note) SELECT ssn FROM patients")
			sqRefused(t, "ssn into note", err, "0A000", "public.patients.ssn", "public.visits.note")
			// Encrypted into a plain column.
			_, err = sqExec(ctx, conn, m, "INSERT INTO other.patients (ssn) SELECT ssn FROM patients")
			sqRefused(t, "ssn into a plain column", err, "0A000", "public.patients.ssn")
			_, err = sqExec(ctx, conn, m, "UPDATE patients SET diagnosis = ssn")
			sqRefused(t, "UPDATE SET diagnosis = ssn", err, "0A000", "public.patients.ssn", "public.patients.diagnosis")
			// Copying diagnosis within its own column is fine.
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, diagnosis) SELECT name || '-copy', diagnosis FROM patients WHERE name = $1", "src"+sfx)
			sqWant(t, "copied diagnosis", sqRows(t, ctx, conn, m, "SELECT diagnosis FROM patients WHERE name = $1", "src"+sfx+"-copy"), "is-diag")
		})
	}
}

func TestReadPath(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	// A view made straight in PostgreSQL before any proxy session.
	sxExec(t, ctx, h.direct(), "CREATE VIEW public.v_direct AS SELECT name, ssn, diagnosis FROM public.patients; GRANT SELECT ON public.v_direct TO PUBLIC")
	doc := h.connect("doctor")
	for _, r := range [][3]any{{"alice", "RD-SSN-1", "flu"}, {"bob", "RD-SSN-2", "cold"}, {"carol", "RD-SSN-1x", nil}, {"dave", nil, nil}} {
		sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", r[0], r[1], r[2])
	}
	sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO visits (patient_ssn, note, visited_on) VALUES ($1, $2, $3), ($1, $4, $5), ($6, NULL, NULL)",
		"RD-SSN-1", "first", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), "second", time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC), "RD-SSN-2")
	sqMustExec(t, ctx, doc, sxModes[1], "CREATE VIEW v_proxy AS SELECT name, ssn FROM patients")
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			rows := func(sql string, args ...any) []string { t.Helper(); return sqRows(t, ctx, conn, m, sql, args...) }
			sqWant(t, "aliases", rows("SELECT p.name AS n, p.ssn AS s, diagnosis d FROM patients AS p WHERE p.ssn = 'RD-SSN-1'"), "alice|RD-SSN-1|flu")
			sqWant(t, "join", rows("SELECT patients.name, visits.patient_ssn, visits.note, visits.visited_on FROM patients JOIN visits ON patients.ssn = visits.patient_ssn ORDER BY visits.visited_on NULLS LAST"),
				"alice|RD-SSN-1|first|2024-01-02", "alice|RD-SSN-1|second|2024-03-04", "bob|RD-SSN-2|NULL|NULL")
			sqWant(t, "left join", rows("SELECT p.name, v.note FROM patients p LEFT JOIN visits v ON v.patient_ssn = p.ssn WHERE p.name IN ('carol', 'dave') ORDER BY p.name"),
				"carol|NULL", "dave|NULL")
			sqWant(t, "subquery in FROM", rows("SELECT x.s, x.d FROM (SELECT ssn AS s, diagnosis AS d FROM patients) x WHERE x.s = $1", "RD-SSN-2"), "RD-SSN-2|cold")
			sqWant(t, "CTE", rows("WITH c AS (SELECT name, ssn, diagnosis FROM patients WHERE ssn IS NOT NULL) SELECT ssn, diagnosis FROM c WHERE ssn = 'RD-SSN-1x'"), "RD-SSN-1x|NULL")
			sqWant(t, "IN subquery", rows("SELECT name FROM patients WHERE ssn IN (SELECT patient_ssn FROM visits) ORDER BY name"), "alice", "bob")
			sqWant(t, "view made through the proxy", rows("SELECT name, ssn FROM v_proxy WHERE ssn = 'RD-SSN-VIEWLIT-1' OR ssn = $1", "RD-SSN-2"), "bob|RD-SSN-2")
			sqWant(t, "view made directly", rows("SELECT name, ssn, diagnosis FROM v_direct WHERE ssn = 'RD-SSN-VIEWLIT-2' OR ssn = $1", "RD-SSN-1"), "alice|RD-SSN-1|flu")
			sqWant(t, "view *", rows("SELECT * FROM v_direct WHERE name = 'bob'"), "bob|RD-SSN-2|cold")
			star := rows("SELECT * FROM patients WHERE ssn = $1", "RD-SSN-2")
			for i, r := range star {
				star[i] = r[strings.IndexByte(r, '|')+1:] // drop the serial id
			}
			sqWant(t, "SELECT *", star, "bob|RD-SSN-2|cold|NULL")
			sqWant(t, "NULL stays NULL", rows("SELECT ssn, diagnosis FROM patients WHERE name = 'dave'"), "NULL|NULL")
			sqWant(t, "count", rows("SELECT count(ssn), count(diagnosis), count(*) FROM patients"), "3|2|4")
			sqWant(t, "GROUP BY ssn", sqSorted(rows("SELECT v.patient_ssn, count(*) FROM visits v GROUP BY v.patient_ssn")), "RD-SSN-1|2", "RD-SSN-2|1")
			sqWant(t, "DISTINCT ssn", sqSorted(rows("SELECT DISTINCT patient_ssn FROM visits")), "RD-SSN-1", "RD-SSN-2")
			sqWant(t, "UNION", sqSorted(rows("SELECT ssn FROM patients WHERE name = 'alice' UNION SELECT patient_ssn FROM visits")), "RD-SSN-1", "RD-SSN-2")
		})
	}
	// Search literals on views went upstream encrypted.
	marker := "pgcloak-readpath-marker-" + fmt.Sprint(time.Now().UnixNano())
	sxExec(t, ctx, doc, "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	for _, p := range []string{"RD-SSN-VIEWLIT-1", "RD-SSN-VIEWLIT-2", "RD-SSN-1x"} {
		if strings.Contains(log, p) {
			t.Fatalf("statement log contains the plaintext %q", p)
		}
	}
}

// TestReadPathDirectViewAfterTTL: a view created straight in PostgreSQL
// while sessions run is known once the catalog snapshot expires.
func TestReadPathDirectViewAfterTTL(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema, func(c *proxy.Config) { c.CatalogTTL = 300 * time.Millisecond })
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "ttl", "TTL-SSN-1")
	sxExec(t, ctx, h.direct(), "CREATE VIEW public.v_late AS SELECT name, ssn AS s FROM public.patients; GRANT SELECT ON public.v_late TO PUBLIC")
	time.Sleep(400 * time.Millisecond)
	for _, m := range sxModes {
		sqWant(t, "late view "+m.name, sqRows(t, ctx, doc, m, "SELECT name, s FROM v_late WHERE s = 'TTL-SSN-1'"), "ttl|TTL-SSN-1")
	}
	_, err := sqTryRows(ctx, doc, sxModes[1], "SELECT name FROM v_late ORDER BY s")
	sqRefused(t, "ORDER BY a view's encrypted column", err, "0A000", "public.patients.ssn", "v_late")
}

func TestPredicatesDeterministic(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sqMustExec(t, ctx, conn, m, "DELETE FROM patients")
			for _, r := range [][2]any{{"A", "PR-1"}, {"B", "PR-2"}, {"C", "PR-3"}, {"D", nil}} {
				sqMustExec(t, ctx, conn, sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, 'x')", r[0], r[1])
			}
			names := func(where string, args ...any) []string {
				t.Helper()
				return sqRows(t, ctx, conn, m, "SELECT name FROM patients WHERE "+where+" ORDER BY name", args...)
			}
			sqWant(t, "= literal", names("ssn = 'PR-1'"), "A")
			sqWant(t, "= param", names("ssn = $1", "PR-1"), "A")
			sqWant(t, "literal =", names("'PR-2' = ssn"), "B")
			sqWant(t, "<> literal", names("ssn <> 'PR-1'"), "B", "C")
			sqWant(t, "!= param", names("ssn != $1", "PR-1"), "B", "C")
			sqWant(t, "IN literals", names("ssn IN ('PR-1', 'PR-3', 'nope')"), "A", "C")
			sqWant(t, "IN params", names("ssn IN ($1, $2)", "PR-2", "PR-3"), "B", "C")
			sqWant(t, "NOT IN literals", names("ssn NOT IN ('PR-1', 'PR-2')"), "C")
			sqWant(t, "NOT IN params", names("ssn NOT IN ($1)", "PR-3"), "A", "B")
			sqWant(t, "IS NULL", names("ssn IS NULL"), "D")
			sqWant(t, "IS NOT NULL", names("ssn IS NOT NULL"), "A", "B", "C")
			sqWant(t, "IS DISTINCT FROM", names("ssn IS DISTINCT FROM 'PR-1'"), "B", "C", "D")
			sqWant(t, "IS NOT DISTINCT FROM param", names("ssn IS NOT DISTINCT FROM $1", "PR-3"), "C")
			sqWant(t, "IS NULL on randomized", names("diagnosis IS NOT NULL AND ssn = 'PR-2'"), "B")
			sqWant(t, "= NULL literal", names("ssn = NULL"))
			sqWant(t, "AND/OR", names("(ssn = 'PR-1' OR ssn = $1) AND name <> 'Z'", "PR-3"), "A", "C")

			if n := sqMustExec(t, ctx, conn, m, "UPDATE patients SET name = name || '1' WHERE ssn IN ('PR-1', 'PR-2')"); n != 2 {
				t.Fatalf("UPDATE … IN: %d", n)
			}
			if n := sqMustExec(t, ctx, conn, m, "UPDATE patients SET name = name || '2' WHERE ssn <> $1", "PR-1"); n != 2 {
				t.Fatalf("UPDATE … <>: %d", n)
			}
			if n := sqMustExec(t, ctx, conn, m, "UPDATE patients SET name = name || '3' WHERE ssn IS NULL"); n != 1 {
				t.Fatalf("UPDATE … IS NULL: %d", n)
			}
			sqWant(t, "after updates", sqRows(t, ctx, conn, m, "SELECT name FROM patients ORDER BY name"), "A1", "B12", "C2", "D3")
			if n := sqMustExec(t, ctx, conn, m, "DELETE FROM patients WHERE ssn NOT IN ($1, $2)", "PR-1", "PR-2"); n != 1 {
				t.Fatalf("DELETE … NOT IN: %d", n)
			}
			if n := sqMustExec(t, ctx, conn, m, "DELETE FROM patients WHERE ssn IS NULL OR ssn = 'PR-1'"); n != 2 {
				t.Fatalf("DELETE … IS NULL OR =: %d", n)
			}
			sqWant(t, "after deletes", sqRows(t, ctx, conn, m, "SELECT name, ssn FROM patients"), "B12|PR-2")
		})
	}
}

// sqRefusals are statements that would need plaintext inside PostgreSQL,
// with a column the message must name (any one of them).
var sqRefusals = []struct {
	sql  string
	args []any
	cols []string
}{
	{"SELECT name FROM patients WHERE ssn LIKE 'REFUSE-MARK-1%'", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn LIKE $1", []any{"REFUSE-MARK-2%"}, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn ILIKE 'x'", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn ~ 'x'", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn < 'REFUSE-MARK-3'", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn >= $1", []any{"x"}, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE ssn BETWEEN 'a' AND 'b'", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients ORDER BY ssn", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients p ORDER BY p.ssn DESC", nil, []string{"public.patients.ssn"}},
	{"SELECT diagnosis, count(*) FROM patients GROUP BY diagnosis", nil, []string{"public.patients.diagnosis"}},
	{"SELECT DISTINCT diagnosis FROM patients", nil, []string{"public.patients.diagnosis"}},
	{"SELECT upper(ssn) FROM patients", nil, []string{"public.patients.ssn"}},
	{"SELECT ssn::text FROM patients", nil, []string{"public.patients.ssn"}},
	{"SELECT ssn || 'x' FROM patients", nil, []string{"public.patients.ssn"}},
	{"SELECT max(ssn) FROM patients", nil, []string{"public.patients.ssn"}},
	{"SELECT name FROM patients WHERE diagnosis = 'REFUSE-MARK-4'", nil, []string{"public.patients.diagnosis"}},
	{"SELECT name FROM patients WHERE diagnosis = $1", []any{"x"}, []string{"public.patients.diagnosis"}},
	{"SELECT name FROM patients WHERE ssn = name", nil, []string{"public.patients.ssn"}},
	{"SELECT p.name FROM patients p JOIN visits v ON p.ssn = v.note", nil, []string{"public.patients.ssn", "public.visits.note"}},
	{"INSERT INTO visits (note) SELECT diagnosis FROM patients", nil, []string{"public.patients.diagnosis", "public.visits.note"}},
	{"UPDATE patients SET name = 'x' WHERE ssn LIKE 'a%'", nil, []string{"public.patients.ssn"}},
	{"DELETE FROM patients WHERE ssn > $1", []any{"m"}, []string{"public.patients.ssn"}},
	{"DELETE FROM patients WHERE diagnosis IN ('a', 'b')", nil, []string{"public.patients.diagnosis"}},
}

func TestPredicateRefusals(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	sqMustExec(t, ctx, h.connect("doctor"), sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ('r', 'REF-SSN', 'ref')")
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			for _, c := range sqRefusals {
				_, err := sqExec(ctx, conn, m, c.sql, c.args...)
				sqRefused(t, c.sql, err, "0A000", c.cols...)
				// The session stays usable.
				sqWant(t, "after "+c.sql, sqRows(t, ctx, conn, m, "SELECT ssn FROM patients WHERE name = 'r'"), "REF-SSN")
				// In a transaction the refusal aborts it like any error.
				sqMustExec(t, ctx, conn, m, "BEGIN")
				sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name) VALUES ('in-aborted-tx')")
				_, err = sqExec(ctx, conn, m, c.sql, c.args...)
				sqRefused(t, c.sql+" in a transaction", err, "0A000", c.cols...)
				_, err = sqExec(ctx, conn, m, "SELECT 1")
				wantCode(t, err, "25P02")
				if _, err := sqExec(ctx, conn, m, "COMMIT"); err != nil {
					t.Fatalf("COMMIT of the aborted transaction: %v", err)
				}
				sqWant(t, "aborted insert", sqRows(t, ctx, conn, m, "SELECT name FROM patients WHERE name = 'in-aborted-tx'"))
			}
		})
	}
	// Refused statements never reached PostgreSQL.
	marker := "pgcloak-refusal-marker-" + fmt.Sprint(time.Now().UnixNano())
	sxExec(t, ctx, h.connect("doctor"), "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	if strings.Contains(log, "REFUSE-MARK-") {
		t.Fatalf("a refused statement reached PostgreSQL's log")
	}
}

func TestGrantRefusals(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	sqMustExec(t, ctx, h.connect("doctor"), sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ('g', 'GR-SSN', 'gr')")
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			billing := h.connect("billing")
			cases := []struct {
				sql  string
				args []any
				col  string
			}{
				{"INSERT INTO patients (name, diagnosis) VALUES ('b', 'GRANT-MARK-1')", nil, "public.patients.diagnosis"},
				{"INSERT INTO patients (name, diagnosis) VALUES ($1, $2)", []any{"b", "GRANT-MARK-2"}, "public.patients.diagnosis"},
				{"UPDATE patients SET diagnosis = $1", []any{"x"}, "public.patients.diagnosis"},
				{"UPDATE patients SET diagnosis = NULL WHERE name = 'g'", nil, "public.patients.diagnosis"},
				{"INSERT INTO visits (note) VALUES ('x')", nil, "public.visits.note"},
				// billing reads ssn but may not write it.
				{"INSERT INTO patients (name, ssn) VALUES ('b', 'x')", nil, "public.patients.ssn"},
			}
			for _, c := range cases {
				_, err := sqExec(ctx, billing, m, c.sql, c.args...)
				sqRefused(t, "billing: "+c.sql, err, "42501", c.col)
			}
			// Searching the randomized column: refused for everyone.
			_, err := sqExec(ctx, billing, m, "SELECT name FROM patients WHERE diagnosis = 'x'")
			sqRefused(t, "billing searching diagnosis", err, "0A000", "public.patients.diagnosis")
			// billing may search ssn.
			sqWant(t, "billing searches ssn", sqRows(t, ctx, billing, m, "SELECT name, ssn, diagnosis FROM patients WHERE ssn = $1", "GR-SSN"), "g|GR-SSN|NULL")
			// Roles without the ssn read grant may not search it.
			for _, role := range []string{"auditor", "nokeys", "archivist"} {
				conn := h.connect(role)
				_, err := sqExec(ctx, conn, m, "SELECT name FROM patients WHERE ssn = 'GR-SSN'")
				sqRefused(t, role+" searching ssn", err, "42501", "public.patients.ssn")
				_, err = sqExec(ctx, conn, m, "DELETE FROM patients WHERE ssn = $1", "GR-SSN")
				sqRefused(t, role+" deleting by ssn", err, "42501", "public.patients.ssn")
				// IS NULL compares no value: allowed.
				sqWant(t, role+" IS NULL", sqRows(t, ctx, conn, m, "SELECT name FROM patients WHERE ssn IS NOT NULL"), "g")
			}
			sqWant(t, "row intact", sqRows(t, ctx, h.connect("doctor"), m, "SELECT name, ssn, diagnosis FROM patients"), "g|GR-SSN|gr")
		})
	}
}

func TestOnDenied(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	sqMustExec(t, ctx, h.connect("doctor"), sxModes[0], "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)",
		"od", "OD-SSN", "od-diag", time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC))
	raw := sqDirectBytes(t, ctx, h, "SELECT ssn FROM patients UNION ALL SELECT diagnosis FROM patients UNION ALL SELECT dob FROM patients")
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			const q = "SELECT name, ssn, diagnosis, dob FROM patients"
			sqWant(t, "doctor", sqRows(t, ctx, h.connect("doctor"), m, q), "od|OD-SSN|od-diag|1970-01-01")
			sqWant(t, "null", sqRows(t, ctx, h.connect("billing"), m, q), "od|OD-SSN|NULL|NULL")
			sqWant(t, "mask (text masked, date NULL)", sqRows(t, ctx, h.connect("auditor"), m, q), "od|********|********|NULL")
			sqWant(t, "unlisted role", sqRows(t, ctx, h.connect("nokeys"), m, q), "od|NULL|NULL|NULL")

			// ciphertext: the stored bytes, described as bytea.
			arch := h.connect("archivist")
			rows, err := arch.Query(ctx, q, m.args()...)
			if err != nil {
				t.Fatal(err)
			}
			var name string
			var ssn, diag, dob []byte
			if !rows.Next() {
				t.Fatalf("no row: %v", rows.Err())
			}
			for i, f := range rows.FieldDescriptions()[1:] {
				if f.DataTypeOID != 17 {
					t.Fatalf("column %d described as OID %d, want bytea", i+1, f.DataTypeOID)
				}
			}
			if err := rows.Scan(&name, &ssn, &diag, &dob); err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if !bytes.Equal(ssn, raw[0]) || !bytes.Equal(diag, raw[1]) || !bytes.Equal(dob, raw[2]) {
				t.Fatalf("archivist sees %x %x %x, want the stored ciphertext", ssn, diag, dob)
			}

			// error: reading a column without the grant is 42501; the
			// granted ones and plain ones read fine.
			strict := h.connect("strict")
			for _, sql := range []string{q, "SELECT diagnosis FROM patients", "SELECT * FROM patients", "SELECT x.d FROM (SELECT dob AS d FROM patients) x"} {
				_, err := sqTryRows(ctx, strict, m, sql)
				sqRefused(t, "strict: "+sql, err, "42501", "public.patients.diagnosis", "public.patients.dob")
				sqWant(t, "strict after refusal", sqRows(t, ctx, strict, m, "SELECT name, ssn FROM patients WHERE ssn = 'OD-SSN'"), "od|OD-SSN")
			}
			sqWant(t, "strict IS NULL", sqRows(t, ctx, strict, m, "SELECT name FROM patients WHERE diagnosis IS NOT NULL"), "od")
		})
	}
}

func TestCatalogFreshAfterDDL(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := h.connect("doctor")
			sfx := "_" + m.name
			// doctor may rename it (owner) and create tables in other.
			sxExec(t, ctx, h.direct(), "ALTER TABLE other.patients OWNER TO doctor")
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, 'cf')", "cf"+sfx, "CF-SSN"+sfx)

			// CREATE VIEW: the next statement decrypts it and encrypts
			// literals compared with its columns.
			sqMustExec(t, ctx, conn, m, "CREATE VIEW cv"+sfx+" AS SELECT name AS n, ssn AS s, diagnosis AS d FROM patients")
			sqWant(t, "new view", sqRows(t, ctx, conn, m, "SELECT n, s, d FROM cv"+sfx+" WHERE s = 'CF-SSN"+sfx+"'"), "cf"+sfx+"|CF-SSN"+sfx+"|cf")
			_, err := sqTryRows(ctx, conn, m, "SELECT n FROM cv"+sfx+" ORDER BY d")
			sqRefused(t, "new view ORDER BY", err, "0A000", "public.patients.diagnosis", "cv"+sfx)

			// ALTER … RENAME of the view.
			sqMustExec(t, ctx, conn, m, "ALTER VIEW cv"+sfx+" RENAME TO cv2"+sfx)
			sqWant(t, "renamed view", sqRows(t, ctx, conn, m, "SELECT n, s FROM cv2"+sfx+" WHERE s = $1", "CF-SSN"+sfx), "cf"+sfx+"|CF-SSN"+sfx)
			sqMustExec(t, ctx, conn, m, "ALTER TABLE cv2"+sfx+" RENAME COLUMN s TO ssn_renamed")
			sqWant(t, "renamed view column", sqRows(t, ctx, conn, m, "SELECT ssn_renamed FROM cv2"+sfx+" WHERE ssn_renamed = 'CF-SSN"+sfx+"'"), "CF-SSN"+sfx)

			// Renaming the plain other.patients away makes patients
			// resolve to the encrypted public.patients under the same
			// search path; renaming it back, to the plain one again.
			sqMustExec(t, ctx, conn, m, "SET search_path TO other, public")
			sqMustExec(t, ctx, conn, m, "ALTER TABLE other.patients RENAME TO patients_away")
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ('rn"+sfx+"', 'RN-SSN"+sfx+"')")
			sqSealed(t, "after rename", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = $1", "rn"+sfx)[0], "RN-SSN"+sfx)
			sqMustExec(t, ctx, conn, m, "ALTER TABLE other.patients_away RENAME TO patients")
			sqMustExec(t, ctx, conn, m, "INSERT INTO patients (name, ssn) VALUES ('rn2"+sfx+"', 'RN2-SSN"+sfx+"')")
			if v := sqDirectText(t, ctx, h, "SELECT ssn FROM other.patients WHERE name = $1", "rn2"+sfx); v == nil || *v != "RN2-SSN"+sfx {
				t.Fatalf("other.patients.ssn = %v", v)
			}

			// A new plain table shadowing an encrypted one on the path.
			sqMustExec(t, ctx, conn, m, "CREATE TABLE other.visits (patient_ssn text, note text)")
			sqMustExec(t, ctx, conn, m, "INSERT INTO visits (patient_ssn) VALUES ('SHADOW-SSN"+sfx+"')")
			if v := sqDirectText(t, ctx, h, "SELECT patient_ssn FROM other.visits"); v == nil || *v != "SHADOW-SSN"+sfx {
				t.Fatalf("other.visits.patient_ssn = %v", v)
			}
			// Dropped again: visits is the encrypted one.
			sqMustExec(t, ctx, conn, m, "DROP TABLE other.visits")
			sqMustExec(t, ctx, conn, m, "INSERT INTO visits (patient_ssn) VALUES ('UNSHADOW-SSN"+sfx+"')")
			for _, raw := range sqDirectBytes(t, ctx, h, "SELECT patient_ssn FROM public.visits") {
				sqSealed(t, "public.visits after DROP", raw, "UNSHADOW-SSN"+sfx)
			}
			sqMustExec(t, ctx, conn, m, "RESET search_path")

			// DDL inside a transaction is seen inside it, and forgotten
			// when it rolls back.
			sqMustExec(t, ctx, conn, m, "BEGIN")
			sqMustExec(t, ctx, conn, m, "CREATE VIEW txv"+sfx+" AS SELECT ssn FROM patients")
			sqWant(t, "view in transaction", sqRows(t, ctx, conn, m, "SELECT ssn FROM txv"+sfx+" WHERE ssn = $1", "CF-SSN"+sfx), "CF-SSN"+sfx)
			sqMustExec(t, ctx, conn, m, "ROLLBACK")
			_, err = sqTryRows(ctx, conn, m, "SELECT ssn FROM txv"+sfx)
			wantCode(t, err, "42P01")
		})
	}
}

// TestPreparedAcrossSearchPath: PostgreSQL re-analyses a prepared
// statement when search_path changed since it was prepared. A statement
// prepared while patients meant the plain other.patients must not store
// its literal unencrypted in public.patients once the path changes back.
func TestPreparedAcrossSearchPath(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	simple := sxModes[1]
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO other, public")
	// Protocol level.
	if _, err := conn.Prepare(ctx, "ins_lit", "INSERT INTO patients (name, ssn) VALUES ('prep-proto', 'PREP-PROTO-SSN')"); err != nil {
		t.Fatal(err)
	}
	// SQL level.
	sxMustExecMode(t, ctx, conn, simple, "PREPARE ins_sql AS INSERT INTO patients (name, ssn) VALUES ('prep-sql', 'PREP-SQL-SSN')")
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO public")
	if _, err := conn.Exec(ctx, "ins_lit"); err != nil {
		sqRefused(t, "protocol-level prepared statement after search_path change", err, "0A000")
	} else {
		sqSealed(t, "protocol-level prepared", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = 'prep-proto'")[0], "PREP-PROTO-SSN")
	}
	if _, err := conn.Exec(ctx, "EXECUTE ins_sql", pgx.QueryExecModeSimpleProtocol); err != nil {
		sqRefused(t, "SQL-level prepared statement after search_path change", err, "0A000")
	} else {
		sqSealed(t, "SQL-level prepared", sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = 'prep-sql'")[0], "PREP-SQL-SSN")
	}
	// A refusal depends on the path in effect at execution too.
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO other, public")
	if _, err := conn.Prepare(ctx, "sel_order", "SELECT name FROM patients ORDER BY ssn"); err != nil {
		t.Fatal(err)
	}
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO public")
	_, err := sqTryRows(ctx, conn, sxModes[0], "sel_order")
	sqRefused(t, "ORDER BY ssn prepared under another path", err, "0A000")
	// Statements prepared and run under one path keep working.
	sxMustExecMode(t, ctx, conn, simple, "SET search_path TO other, public")
	if _, err := conn.Prepare(ctx, "sel_other", "SELECT ssn FROM patients ORDER BY ssn"); err != nil {
		t.Fatal(err)
	}
	if _, err := sqTryRows(ctx, conn, sxModes[0], "sel_other"); err != nil {
		t.Fatal(err)
	}
}

// TestSetOperationOutputs: PostgreSQL reports no column of origin for the
// result of UNION / INTERSECT / EXCEPT; the proxy still decrypts it (by
// position), and applies each role's on_denied to it.
func TestSetOperationOutputs(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3), ($4, $5, $6)", "u1", "UN-SSN-1", "un-d1", "u2", "UN-SSN-2", "un-d2")
	sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO visits (patient_ssn) VALUES ($1), ($2)", "UN-SSN-2", "UN-SSN-3")
	const union = "SELECT ssn FROM patients UNION SELECT patient_ssn FROM visits"
	const unionAll = "SELECT diagnosis FROM patients WHERE name = 'u1' UNION ALL SELECT diagnosis FROM patients WHERE name = 'u2'"
	for _, m := range sxModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := ctxT(t)
			sqWant(t, "UNION", sqSorted(sqRows(t, ctx, doc, m, union)), "UN-SSN-1", "UN-SSN-2", "UN-SSN-3")
			sqWant(t, "UNION ALL randomized", sqSorted(sqRows(t, ctx, doc, m, unionAll)), "un-d1", "un-d2")
			sqWant(t, "INTERSECT", sqRows(t, ctx, doc, m, "SELECT ssn FROM patients INTERSECT SELECT patient_ssn FROM visits"), "UN-SSN-2")
			sqWant(t, "EXCEPT in a subquery", sqSorted(sqRows(t, ctx, doc, m, "SELECT x.s, 1 FROM (SELECT ssn AS s FROM patients EXCEPT SELECT patient_ssn FROM visits) x")), "UN-SSN-1|1")
			sqWant(t, "billing: null", sqRows(t, ctx, h.connect("billing"), m, unionAll), "NULL", "NULL")
			sqWant(t, "auditor: mask", sqRows(t, ctx, h.connect("auditor"), m, unionAll), "********", "********")
			_, err := sqTryRows(ctx, h.connect("strict"), m, unionAll)
			sqRefused(t, "strict: error", err, "42501", "public.patients.diagnosis")
			rows, err := h.connect("archivist").Query(ctx, unionAll, m.args()...)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var raw []byte
				if err := rows.Scan(&raw); err != nil {
					t.Fatal(err)
				}
				if rows.FieldDescriptions()[0].DataTypeOID != 17 {
					t.Fatalf("archivist: described as OID %d", rows.FieldDescriptions()[0].DataTypeOID)
				}
				sqSealed(t, "archivist", raw, "un-d1", "un-d2")
			}
			rows.Close()
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			sqMustExec(t, ctx, doc, m, "PREPARE un AS "+union)
			sqWant(t, "EXECUTE of a UNION", sqSorted(sqRows(t, ctx, doc, m, "EXECUTE un")), "UN-SSN-1", "UN-SSN-2", "UN-SSN-3")
			sqMustExec(t, ctx, doc, m, "DEALLOCATE un")
		})
	}
}

// TestViewsFailClosed: a view over encrypted columns that the proxy cannot
// analyse, or a temporary one, never makes it send a search literal in
// plaintext.
func TestViewsFailClosed(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	// Made straight in PostgreSQL: a definition the proxy refuses to
	// analyse (ORDER BY the ciphertext).
	sxExec(t, ctx, h.direct(), "CREATE VIEW public.v_odd AS SELECT name, ssn FROM public.patients ORDER BY ssn; GRANT SELECT ON public.v_odd TO PUBLIC")
	doc := h.connect("doctor")
	sqMustExec(t, ctx, doc, sxModes[0], "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "fc", "FC-SSN")
	secrets := []string{}
	for _, m := range sxModes {
		s := "ODD-SECRET-" + m.name
		secrets = append(secrets, s)
		if got, err := sqTryRows(ctx, doc, m, "SELECT name FROM v_odd WHERE ssn = '"+s+"'"); err == nil && len(got) != 0 {
			t.Fatalf("unanalysable view: %q", got)
		}
		if got, err := sqTryRows(ctx, doc, m, "SELECT name, ssn FROM v_odd"); err == nil && !slices.Equal(got, []string{"fc|FC-SSN"}) {
			// Allowed only if the proxy decrypts it.
			t.Errorf("unanalysable view read (%s): %q", m.name, got)
		}
	}
	// A temporary view made through the proxy.
	for _, m := range sxModes {
		s := "TEMPVIEW-SECRET-" + m.name
		secrets = append(secrets, s)
		if _, err := sqExec(ctx, doc, m, "CREATE TEMP VIEW tv_"+m.name+" AS SELECT name, ssn FROM patients"); err != nil {
			sqRefused(t, "CREATE TEMP VIEW", err, "0A000")
			continue
		}
		got, err := sqTryRows(ctx, doc, m, "SELECT name, ssn FROM tv_"+m.name+" WHERE ssn = '"+s+"' OR ssn = 'FC-SSN'")
		if err == nil && !slices.Equal(got, []string{"fc|FC-SSN"}) {
			t.Errorf("temp view (%s): %q", m.name, got)
		}
	}
	marker := fmt.Sprintf("pgcloak-views-marker-%d", time.Now().UnixNano())
	sxExec(t, ctx, doc, "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("PostgreSQL received the plaintext %q", s)
		}
	}
}

// TestDDLInString: statements after DDL in the same query string run
// against a catalog the proxy has not seen yet; those that use a relation
// are refused (the whole string is), never sent with plaintext.
func TestDDLInString(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxExec(t, ctx, h.direct(), "ALTER TABLE other.patients OWNER TO doctor")
	secrets := []string{"DDLSTR-SECRET-1", "DDLSTR-SECRET-2"}
	_, err := sxMulti(ctx, doc, "CREATE VIEW v_str AS SELECT name, ssn FROM patients; SELECT name FROM v_str WHERE ssn = '"+secrets[0]+"'")
	sqRefused(t, "view used in the string that creates it", err, "0A000")
	sxMustExecMode(t, ctx, doc, sxModes[1], "SET search_path TO other, public")
	_, err = sxMulti(ctx, doc, "ALTER TABLE other.patients RENAME TO patients_gone; INSERT INTO patients (name, ssn) VALUES ('ddl', '"+secrets[1]+"')")
	sqRefused(t, "insert after a rename in the same string", err, "0A000")
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM public.patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("public.patients has %d rows (%v)", n, err)
	}
	sxMustExecMode(t, ctx, doc, sxModes[1], "RESET search_path")
	// Strings that name no encrypted relation are not affected, nor are
	// statements after DDL that use no relation.
	if _, err := sxMulti(ctx, doc, "CREATE TABLE plain_str (a int); INSERT INTO plain_str VALUES (1); SELECT a FROM plain_str"); err != nil {
		t.Fatalf("plain DDL and DML in one string: %v", err)
	}
	if _, err := sxMulti(ctx, doc, "BEGIN; CREATE VIEW v_str2 AS SELECT ssn FROM patients; COMMIT; SELECT 1"); err != nil {
		t.Fatalf("DDL then transaction control: %v", err)
	}
	sqWant(t, "view from the string, next statement", sqRows(t, ctx, doc, sxModes[0], "SELECT ssn FROM v_str2 WHERE ssn = 'x'"))
	marker := fmt.Sprintf("pgcloak-ddlstr-marker-%d", time.Now().UnixNano())
	sxExec(t, ctx, doc, "SELECT '"+marker+"'")
	log := h.pg.AwaitStatement(t, marker)
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Fatalf("PostgreSQL received the plaintext %q", s)
		}
	}
}

// TestSearchPathChangedServerSide: server-side code (a DO block, a
// function) can change search_path without a statement the proxy tracks;
// PostgreSQL 15 does not report search_path (it is not GUC_REPORT), so the
// proxy's name resolution then disagrees with PostgreSQL's. Regression:
// resolved names are pinned (schema-qualified) in the rewritten SQL, so the
// INSERT still goes where the proxy analysed it would, never to the
// encrypted table with plaintext.
func TestSearchPathChangedServerSide(t *testing.T) {
	h := newHarness(t, strings.Replace(sqPolicy, "write: [ssn, clinical, dates, acct]}", "write: [ssn, clinical, dates, acct], server_side_code: allow}", 1), sqSchema)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	sxMustExecMode(t, ctx, doc, sxModes[1], "SET search_path TO other, public")
	if _, err := sxMulti(ctx, doc, "DO $$ BEGIN PERFORM set_config('search_path', 'public', false); END $$"); err != nil {
		sqRefused(t, "DO changing search_path", err, "0A000")
		return
	}
	if _, err := sxMulti(ctx, doc, "INSERT INTO patients (name, ssn) VALUES ('do', 'DO-PATH-SECRET')"); err != nil {
		t.Fatalf("INSERT after the DO block: %v", err)
	}
	if got := sqDirectBytes(t, ctx, h, "SELECT ssn FROM public.patients WHERE name = 'do'"); len(got) != 0 {
		t.Fatalf("the row went to the encrypted public.patients: %q", got)
	}
	got := sqDirectBytes(t, ctx, h, "SELECT ssn::bytea FROM other.patients WHERE name = 'do'")
	if len(got) != 1 || string(got[0]) != "DO-PATH-SECRET" {
		t.Fatalf("other.patients (the table the proxy resolved) holds %q", got)
	}
}

// TestComparisonNullSemantics: the rewritten comparisons return what the
// same comparisons return on a plaintext table, NULLs included.
func TestComparisonNullSemantics(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+`
CREATE TABLE public.plain (name text, ssn text);
INSERT INTO public.plain VALUES ('a','A'),('b','B'),('n',NULL);
GRANT ALL ON public.plain TO PUBLIC;`)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('a','A'),('b','B'),('n',NULL)"); err != nil {
		t.Fatal(err)
	}
	var null *string
	a := "A"
	cases := []struct {
		where string
		args  []any
	}{
		{"ssn <> $1", []any{null}},
		{"ssn = $1", []any{null}},
		{"ssn <> $1", []any{&a}},
		{"ssn NOT IN ($1, 'B')", []any{null}},
		{"ssn NOT IN ('A', NULL)", nil},
		{"ssn IN ('A', NULL)", nil},
		{"ssn IS DISTINCT FROM $1", []any{null}},
		{"ssn IS DISTINCT FROM $1", []any{&a}},
		{"ssn IS NOT DISTINCT FROM $1", []any{null}},
		{"ssn IS NOT DISTINCT FROM $1", []any{&a}},
		{"ssn IS DISTINCT FROM 'A'", nil},
		{"ssn = ALL(ARRAY['A', NULL])", nil},
		{"NOT (ssn = ALL(ARRAY['A', NULL]))", nil},
		{"ssn <> ANY(ARRAY['A', NULL])", nil},
		{"ssn <> ANY(ARRAY['A', $1])", []any{null}},
		{"(ssn = ANY(ARRAY[$1, 'B'])) IS NULL", []any{null}},
		{"(ssn <> ALL(ARRAY[$1, 'B'])) IS NULL", []any{null}},
		{"NOT (ssn IN ($1)) IS NULL", []any{&a}},
	}
	for _, c := range cases {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeSimpleProtocol} {
			q := "SELECT name FROM %s WHERE " + c.where + " ORDER BY name"
			got := names(t, ctx, conn, mode, fmt.Sprintf(q, "patients"), c.args...)
			want := names(t, ctx, conn, mode, fmt.Sprintf(q, "plain"), c.args...)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s %v (%v): proxy %v, plaintext table %v", c.where, c.args, mode, got, want)
			}
		}
	}
}
