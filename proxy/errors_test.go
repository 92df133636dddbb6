package proxy_test

// Result error tests: values that cannot be decrypted or encrypted fail
// the statement as PostgreSQL would fail it.

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestProtoUndecryptableValue(t *testing.T) {
	// A stored value that does not decrypt fails the result with the
	// proxy's error; the answer the client gets must still be shaped as
	// PostgreSQL's would be after an error (nothing more until
	// ReadyForQuery), or drivers lose track of the protocol.
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	insertPatients(t, conn, [3]string{"G", "u-1", "good"}, [3]string{"B", "u-2", "bad"})
	h.pg.ExecAdmin(t, `UPDATE patients SET diagnosis = '\x0102'::bytea WHERE name = 'B'`)

	c := protoConnect(t, h, "doctor")
	wantTokens(t, "simple", c.query("SELECT name, diagnosis FROM patients ORDER BY id"), "Row:name/25,diagnosis/25", "D:G,good", "E:XX001", "Z:I")
	if strings.Contains(c.lastErr.Message, `\x0102`) || !strings.Contains(c.lastErr.Message, "public.patients.diagnosis") {
		t.Fatalf("error message %q", c.lastErr.Message)
	}
	c.send(
		&pgproto3.Parse{Query: "SELECT name, diagnosis FROM patients ORDER BY id"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "later", Query: "SELECT 2"}, &pgproto3.Describe{ObjectType: 'S', Name: "later"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "extended", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25,diagnosis/25", "D:G,good", "E:XX001", "Z:I")
	wantTokens(t, "after", c.query("SELECT name FROM patients WHERE diagnosis IS NULL"), "Row:name/25", "C:SELECT 0", "Z:I")

	// pgx batches in every mode: the error, and a connection that lives on.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("SELECT name, diagnosis FROM patients ORDER BY id")
		b.Queue("SELECT ssn FROM patients WHERE ssn = $1", "u-1")
		err = conn.SendBatch(ctx, b).Close()
		wantCode(t, err, "XX001")
		if conn.IsClosed() {
			t.Fatalf("mode %v: the undecryptable value closed the pgx connection", mode)
		}
		b = &pgx.Batch{}
		b.Queue("SELECT name, diagnosis FROM patients ORDER BY id")
		b.Queue("SELECT ssn FROM patients WHERE ssn = $1", "u-1")
		br := conn.SendBatch(ctx, b)
		rows, err := br.Query()
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		wantCode(t, err, "XX001")
		br.Close()
		var ssn string
		if err := conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE ssn = $1", mode, "u-1").Scan(&ssn); err != nil || ssn != "u-1" {
			t.Fatalf("mode %v: session after the error: %q %v", mode, ssn, err)
		}
	}
}

func TestProtoResultErrorAbortsTransaction(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	insertPatients(t, conn, [3]string{"B", "u-2", "bad"})
	h.pg.ExecAdmin(t, `UPDATE patients SET diagnosis = '\x0102'::bytea WHERE name = 'B'`)
	c := protoConnect(t, h, "doctor")
	// Outside a transaction the client sees the error and an idle session.
	wantTokens(t, "simple", c.query("SELECT diagnosis FROM patients"), "Row:diagnosis/25", "E:XX001", "Z:I")
	c.send(
		&pgproto3.Parse{Query: "SELECT diagnosis FROM patients"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "extended", c.recvReady(), "ParseComplete", "BindComplete", "E:XX001", "Z:I")
	// Inside one, the transaction is failed on the server too (25P02 for
	// what follows), as after any error.
	wantTokens(t, "in a transaction", c.query("BEGIN; SELECT diagnosis FROM patients"), "C:BEGIN", "Row:diagnosis/25", "E:XX001", "Z:E")
	wantTokens(t, "aborted", c.query("INSERT INTO other.patients VALUES (1, 'x', 'y')"), "E:25P02", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM other.patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows committed in the failed transaction (%v)", n, err)
	}
}

// A value out of its type's range gets PostgreSQL's SQLSTATE for it (issue
// 8, finding 5), compared with PostgreSQL's own answer for the same input.
func TestOutOfRangeValuesGetPostgreSQLsCode(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	direct := h.direct()
	cases := []struct{ insert, cast string }{
		{"INSERT INTO accounts (num) VALUES ('99999999999999999999')", "SELECT '99999999999999999999'::int8"},
		{"INSERT INTO patients (name, dob) VALUES ('r', '2024-01-32')", "SELECT '2024-01-32'::date"},
		{"INSERT INTO patients (name, dob) VALUES ('r', '5874898-01-01')", "SELECT '5874898-01-01'::date"},
		{"INSERT INTO patients (name, dob) VALUES ('r', 'not a date')", "SELECT 'not a date'::date"},
	}
	for _, c := range cases {
		_, want := direct.Exec(ctx, c.cast)
		var wantPE *pgconn.PgError
		if !errors.As(want, &wantPE) {
			t.Fatalf("%s: PostgreSQL accepted it: %v", c.cast, want)
		}
		_, err := conn.Exec(ctx, c.insert, pgx.QueryExecModeSimpleProtocol)
		wantCode(t, err, wantPE.Code)
	}
}
