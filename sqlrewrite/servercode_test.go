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

// A set_config whose value is a parameter is followed for TimeZone and for
// roles (claims PostgreSQL confirms), refused for other tracked settings.
func TestSetConfigParameterValue(t *testing.T) {
	for sql, want := range map[string]*Effect{
		`SELECT set_config('TimeZone', $1, false)`:    {Setting: SettingTimeZone, Claimed: true, Unknown: true},
		`SELECT set_config('role', $1, true)`:         {Setting: SettingRole, Local: true, Claimed: true, Unknown: true},
		`SELECT set_config('search_path', $1, false)`: nil,
	} {
		plan, err := Analyze(sql, testEnv())
		if want == nil {
			if err == nil {
				t.Errorf("%s: accepted", sql)
			}
			continue
		}
		if err != nil || len(plan.Statements[0].Effects) != 1 {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if got := plan.Statements[0].Effects[0]; got.Setting != want.Setting || got.Local != want.Local || !got.Claimed || !got.Unknown {
			t.Errorf("%s: effect %+v, want %+v", sql, got, *want)
		}
	}
}

// Only DDL naming a relation with encrypted columns, and not creating a
// temporary object, changes the other sessions' catalogs.
func TestChangesCatalog(t *testing.T) {
	for sql, want := range map[string]bool{
		`CREATE VIEW v AS SELECT id, ssn FROM patients`:    true,
		`ALTER TABLE patients ADD COLUMN note2 text`:       true,
		`CREATE TABLE other2.patients (id int)`:            true,
		`CREATE TEMP TABLE patients (id int)`:              false,
		`CREATE TABLE pg_temp.patients (id int)`:           false,
		`CREATE TABLE unrelated (id int)`:                  false,
		`CREATE INDEX ON unrelated (id)`:                   false,
		`SELECT id INTO TEMP tmp_p FROM patients`:          false,
		`CREATE TEMP VIEW tv AS SELECT name FROM patients`: false,
	} {
		plan, err := Analyze(sql, testEnv())
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if got := plan.Statements[0].ChangesCatalog; got != want {
			t.Errorf("%s: ChangesCatalog = %v, want %v", sql, got, want)
		}
	}
}
