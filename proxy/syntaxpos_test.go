package proxy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestSyntaxErrorPositionAsPostgreSQL: a statement that does not parse
// and names an encrypted table is refused by pgcloak (its text may carry
// plaintext), with the SQLSTATE and cursor position PostgreSQL gives for
// the same text on a plain table, so that psql's caret points at the
// same place. The message does not quote the text.
func TestSyntaxErrorPositionAsPostgreSQL(t *testing.T) {
	h := newHarness(t, `
policy:
  keys:
    - {name: k, kind: deterministic}
  columns:
    - {table: public.sp_t, column: ssn, key: k, type: text}
  roles:
    - {role: doctor, read: [k], write: [k]}
`, "CREATE TABLE public.sp_t (id int, ssn bytea); GRANT ALL ON public.sp_t TO PUBLIC;")
	proxied := h.connect("doctor")
	direct := h.direct()
	for _, stmt := range []string{
		"SELECT * FROM sp_t WHERE ssn = = 'x'",
		"SELECT 'ééé' AS é FROM sp_t WHERE ssn = = 'x'",
		"INSERT INTO sp_t VALUES (1, '123-45",
		"INSERT INTO sp_t VALUES (1, '123-45-6789') RETURNING",
		"SELECT 1;\nSELECT\n  ssn FROM sp_t WHERE ssn IN (,)",
	} {
		_, err := proxied.Exec(ctxT(t), stmt)
		var got *pgconn.PgError
		if !errors.As(err, &got) {
			t.Fatalf("%q through pgcloak: %v, want a PgError", stmt, err)
		}
		_, err = direct.Exec(ctxT(t), strings.ReplaceAll(stmt, "sp_t", "sp_p"))
		var want *pgconn.PgError
		if !errors.As(err, &want) {
			t.Fatalf("%q directly: %v, want a PgError", stmt, err)
		}
		if got.Code != want.Code || got.Position != want.Position || got.Position == 0 {
			t.Errorf("%q: pgcloak gives %s at %d, PostgreSQL %s at %d", stmt, got.Code, got.Position, want.Code, want.Position)
		}
		if strings.Contains(got.Message, "123-45") || strings.Contains(got.Message, "'x'") {
			t.Errorf("%q: message quotes the statement: %s", stmt, got.Message)
		}
	}
}
