package proxy_test

// Simple query protocol tests: strings of several statements, and
// transactions.

import "testing"

func TestProtoSimpleQueryMultiStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()
	results, err := pc.Exec(ctx, `INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('A', 'm-1', 'd-1', '1990-01-02');
SELECT name, ssn, diagnosis, dob FROM patients;
SELECT 7 AS seven, 'x' AS ex;
UPDATE patients SET diagnosis = 'd-2' WHERE ssn = 'm-1'`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results, want 4", len(results))
	}
	if tag := results[0].CommandTag.String(); tag != "INSERT 0 1" {
		t.Fatalf("tag %q", tag)
	}
	r := results[1]
	if len(r.Rows) != 1 || string(r.Rows[0][1]) != "m-1" || string(r.Rows[0][2]) != "d-1" || string(r.Rows[0][3]) != "1990-01-02" {
		t.Fatalf("rows %q", r.Rows)
	}
	if r.FieldDescriptions[1].DataTypeOID != 25 || r.FieldDescriptions[3].DataTypeOID != 1082 {
		t.Fatalf("encrypted columns described as %d and %d, want text and date", r.FieldDescriptions[1].DataTypeOID, r.FieldDescriptions[3].DataTypeOID)
	}
	if len(results[2].Rows) != 1 || string(results[2].Rows[0][0]) != "7" || string(results[2].Rows[0][1]) != "x" {
		t.Fatalf("plain result %q", results[2].Rows)
	}
	if tag := results[3].CommandTag.String(); tag != "UPDATE 1" {
		t.Fatalf("tag %q", tag)
	}

	c := protoConnect(t, h, "doctor")
	// Empty query strings.
	wantTokens(t, "empty query", c.query(""), "EmptyQuery", "Z:I")
	wantTokens(t, "only semicolons", c.query(" ; ;"), "EmptyQuery", "Z:I")
	wantTokens(t, "comment only", c.query("-- nothing"), "EmptyQuery", "Z:I")
	// Results of each statement, in order, decrypted.
	wantTokens(t, "two selects", c.query("SELECT ssn FROM patients; SELECT diagnosis, dob FROM patients"),
		"Row:ssn/25", "D:m-1", "C:SELECT 1", "Row:diagnosis/25,dob/1082", "D:d-2,1990-01-02", "C:SELECT 1", "Z:I")

	// An error mid-string: PostgreSQL runs the string in one implicit
	// transaction, so the statements before the error are rolled back and
	// those after it do not run.
	got := c.query("INSERT INTO patients (name, ssn) VALUES ('B', 'm-2'); SELECT 1/0; INSERT INTO patients (name, ssn) VALUES ('C', 'm-3')")
	wantTokens(t, "error mid-string", got, "C:INSERT 0 1", "E:22012", "Z:I")
	// A refusal mid-string: same rule, nothing before it runs either.
	got = c.query("INSERT INTO patients (name, ssn) VALUES ('B', 'm-2'); SELECT 1 FROM patients WHERE ssn LIKE 'm%'")
	if len(got) != 2 || got[0] != "E:0A000" || got[1] != "Z:I" {
		t.Fatalf("refusal mid-string: %q", got)
	}
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows after failed strings, want 1 (%v)", n, err)
	}
	// Explicit transaction control inside one string.
	wantTokens(t, "BEGIN in a string", c.query("BEGIN; INSERT INTO patients (name, ssn) VALUES ('D', 'm-4'); SELECT ssn FROM patients WHERE ssn = 'm-4'"),
		"C:BEGIN", "C:INSERT 0 1", "Row:ssn/25", "D:m-4", "C:SELECT 1", "Z:T")
	wantTokens(t, "error in open transaction", c.query("SELECT 1/0"), "E:22012", "Z:E")
	wantTokens(t, "in failed transaction", c.query("SELECT 1"), "E:25P02", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	// COMMIT in the middle of a string commits what came before even if a
	// later statement fails.
	wantTokens(t, "commit mid-string", c.query("BEGIN; INSERT INTO patients (name, ssn) VALUES ('E', 'm-5'); COMMIT; SELECT 1/0"),
		"C:BEGIN", "C:INSERT 0 1", "C:COMMIT", "E:22012", "Z:I")
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows, want 2 (%v)", n, err)
	}
}

func TestProtoTransactions(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()
	step := func(sql string, wantErr string, wantTx byte) {
		t.Helper()
		_, err := pc.Exec(ctx, sql).ReadAll()
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%s: %v", sql, err)
		case wantErr != "" && pgCode(err) != wantErr:
			t.Fatalf("%s: want %s, got %v", sql, wantErr, err)
		}
		if st := pc.TxStatus(); st != wantTx {
			t.Fatalf("after %s: TxStatus %q, want %q", sql, st, wantTx)
		}
	}
	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('rolled back', 't-0', 'x')", "", 'T')
	step("SELECT 1/0", "22012", 'E')
	step("SELECT 1", "25P02", 'E')
	step("INSERT INTO patients (name, ssn) VALUES ('no', 't-x')", "25P02", 'E')
	// A refusal in a failed transaction is still an error; state stays E.
	step("SELECT 1 FROM patients ORDER BY ssn", "0A000", 'E')
	step("ROLLBACK", "", 'I')

	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('kept', 't-1', 'd-1')", "", 'T')
	step("SAVEPOINT s1", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('undone', 't-2', 'd-2')", "", 'T')
	step("INSERT INTO patients (name, ssn) VALUES ('dup', 't-1')", "23505", 'E') // unique violation on ciphertext
	step("SELECT 1", "25P02", 'E')
	step("ROLLBACK TO SAVEPOINT s1", "", 'T')
	step("SAVEPOINT s2", "", 'T')
	step("SELECT 1 FROM patients WHERE diagnosis = 'd-1'", "0A000", 'E') // equality on a randomized column
	step("ROLLBACK TO s2", "", 'T')
	step("RELEASE SAVEPOINT s2", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('also kept', 't-3', 'd-3')", "", 'T')
	step("COMMIT", "", 'I')
	// COMMIT of a failed transaction rolls back and says so.
	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn) VALUES ('lost', 't-4')", "", 'T')
	step("SELECT 1/0", "22012", 'E')
	results, err := pc.Exec(ctx, "COMMIT").ReadAll()
	if err != nil || len(results) != 1 || results[0].CommandTag.String() != "ROLLBACK" || pc.TxStatus() != 'I' {
		t.Fatalf("COMMIT of failed tx: %v %v %q", results, err, pc.TxStatus())
	}

	rows, err := conn.Query(ctx, "SELECT name, ssn, diagnosis FROM patients ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name, ssn string
		var diag *string
		if err := rows.Scan(&name, &ssn, &diag); err != nil {
			t.Fatal(err)
		}
		d := "NULL"
		if diag != nil {
			d = *diag
		}
		got = append(got, name+"/"+ssn+"/"+d)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	wantTokens(t, "committed rows", got, "kept/t-1/d-1", "also kept/t-3/d-3")

	// pgx's own transaction API on top.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "changed", "t-1"); err != nil {
		t.Fatal(err)
	}
	nested, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nested.Exec(ctx, "UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "nested", "t-1"); err != nil {
		t.Fatal(err)
	}
	if err := nested.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "t-1").Scan(&diag); err != nil || diag != "changed" {
		t.Fatalf("diagnosis %q, %v", diag, err)
	}
}
