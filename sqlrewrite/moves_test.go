package sqlrewrite

import (
	"errors"
	"testing"
)

// Renaming or moving a policy table, one of its columns or its schema is
// refused; the same statements on plain tables, views and other schemas
// pass.
func TestMovesOfPolicyTablesRefused(t *testing.T) {
	otherPath := func(e *Env) { e.SearchPath = []string{"other"} }
	cases := []struct {
		sql     string
		env     func(*Env)
		refused bool
	}{
		{`ALTER TABLE patients RENAME TO p2`, nil, true},
		{`ALTER TABLE IF EXISTS public.patients RENAME TO p2`, nil, true},
		{`ALTER TABLE public.patients RENAME COLUMN ssn TO s`, nil, true},
		{`ALTER TABLE patients RENAME name TO n`, nil, true},
		{`ALTER TABLE patients SET SCHEMA archive`, nil, true},
		{`ALTER FOREIGN TABLE visits RENAME TO v2`, nil, true},
		{`ALTER SCHEMA public RENAME TO old`, nil, true},
		{`ALTER SCHEMA archive RENAME TO old`, nil, true},
		// On the path only other.patients, a plain table; but PostgreSQL's
		// search_path may have changed unseen, and the name is not pinned.
		{`ALTER TABLE patients RENAME TO p2`, otherPath, true},
		// Other ALTER forms PostgreSQL applies to a table as well.
		{`ALTER INDEX patients RENAME TO patients_idx`, nil, true},
		{`ALTER VIEW patients RENAME COLUMN ssn TO s`, nil, true},
		{`ALTER MATERIALIZED VIEW patients RENAME COLUMN ssn TO s`, nil, true},
		{`ALTER TYPE patients RENAME ATTRIBUTE ssn TO s`, nil, true},
		{`ALTER SEQUENCE patients RENAME TO s`, nil, true},
		{`ALTER VIEW patients SET SCHEMA archive`, nil, true},
		{`ALTER TABLE U&"p\0061tients" RENAME TO p2`, nil, true},
		// Utilities on an unqualified name are not pinned either.
		{`CREATE TRIGGER t BEFORE UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()`, otherPath, true},
		{`CREATE RULE r AS ON UPDATE TO patients DO INSTEAD NOTHING`, otherPath, true},
		{`CREATE POLICY p ON patients USING (true)`, otherPath, true},
		{`CREATE TRIGGER t BEFORE UPDATE ON other.patients FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()`, otherPath, false},
		// Settings changed where set_config does not show.
		{`UPDATE pg_settings SET setting = 'public' WHERE name = 'search_path'`, nil, true},
		{`WITH x AS (UPDATE pg_catalog.pg_settings SET setting = 'r' WHERE name = 'role' RETURNING 1) SELECT * FROM x`, nil, true},
		{`SELECT setting FROM pg_settings WHERE name = 'search_path'`, nil, false},
		{`ALTER TABLE other.patients RENAME TO p2`, nil, false},
		{`ALTER SCHEMA other RENAME TO o2`, nil, false},
		{`ALTER VIEW patient_names RENAME TO pn`, nil, false},
		{`ALTER TABLE patient_names RENAME COLUMN ssn TO s`, nil, false},
		{`ALTER TABLE accounts RENAME TO a2`, nil, false},
		{`ALTER TABLE accounts SET SCHEMA archive`, nil, false},
		{`ALTER INDEX patients_pkey RENAME TO pk`, nil, false},
		{`ALTER TABLE patients RENAME CONSTRAINT patients_pkey TO pk`, nil, false},
	}
	for _, c := range cases {
		env := testEnv()
		if c.env != nil {
			c.env(env)
		}
		plan, err := Analyze(c.sql, env)
		var refusal *Error
		switch {
		case c.refused && !(errors.As(err, &refusal) && refusal.Code == CodeFeatureNotSupported):
			t.Errorf("%s: want a 0A000 refusal, got %v", c.sql, err)
		case !c.refused && err != nil:
			t.Errorf("%s: %v", c.sql, err)
		case !c.refused && plan.Statements[0].Kind != KindDDL && plan.Statements[0].Kind != KindSelect && plan.Statements[0].Kind != KindOther:
			t.Errorf("%s: kind %v, want DDL (the catalog is reloaded after it)", c.sql, plan.Statements[0].Kind)
		}
	}
}
