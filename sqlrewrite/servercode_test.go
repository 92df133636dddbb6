package sqlrewrite

import "testing"

// Statements that create or run code the proxy cannot see are named, deep
// or not (a body need not spell an encrypted name); others are not.
func TestServerCodeIsNamed(t *testing.T) {
	cases := map[string]string{
		`DO $$ BEGIN EXECUTE 'x'; END $$`:                            "DO",
		`DO LANGUAGE plpgsql 'BEGIN NULL; END'`:                      "DO",
		`CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'`: "CREATE FUNCTION",
		`CREATE OR REPLACE FUNCTION f() RETURNS int RETURN 1`:        "CREATE FUNCTION",
		`CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'`:            "CREATE PROCEDURE",
		`CALL p()`:                        "CALL",
		`CREATE LANGUAGE plfoo HANDLER h`: "CREATE LANGUAGE",
		`CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION f()`: "CREATE EVENT TRIGGER",
		`SELECT f()`:                  "",
		`CREATE TABLE t (x int)`:      "",
		`SELECT 'DO $$ BEGIN END $$'`: "",
	}
	for sql, want := range cases {
		plan, err := Analyze(sql, testEnv())
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if got := plan.Statements[0].ServerCode; got != want {
			t.Errorf("%s: ServerCode = %q, want %q", sql, got, want)
		}
	}
}
