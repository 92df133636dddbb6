package sqlrewrite

import "testing"

// TestPinResolvedNames checks that unqualified names of relations with
// encrypted columns are schema-qualified as resolved, so PostgreSQL cannot
// resolve them differently (a search_path changed by server-side code, a
// temp table, a schema created after the catalog was read).
func TestPinResolvedNames(t *testing.T) {
	stale := newTestCatalog()
	// The catalog predates public.staff: only the policy knows it.
	stale.schemas["staff"] = nil
	tests := []struct {
		name string
		env  *Env
		sql  string
		want string
	}{
		{"resolved through search_path", &Env{Catalog: testCat, SearchPath: []string{"public"}},
			`SELECT name FROM patients`, `SELECT name FROM "public".patients`},
		{"plain table first on the path is pinned too", &Env{Catalog: testCat, SearchPath: []string{"other", "public"}},
			`INSERT INTO patients (ssn) VALUES ('x')`, `INSERT INTO "other".patients (ssn) VALUES ('x')`},
		{"encrypted table in another schema", &Env{Catalog: testCat, SearchPath: []string{"archive", "public"}},
			`SELECT id FROM patients WHERE ssn = 'x'`, `SELECT id FROM "archive".patients WHERE (ssn = ANY(ARRAY['<cands:archive.patients.ssn:x>']))`},
		{"qualified names stay as written", testEnv(),
			`SELECT 1 FROM other.patients JOIN public.visits v ON true`, `SELECT 1 FROM other.patients JOIN public.visits v ON true`},
		{"names without encrypted relations stay", testEnv(),
			`SELECT 1 FROM accounts, patients`, `SELECT 1 FROM accounts, "public".patients`},
		{"ONLY and alias", testEnv(),
			`UPDATE ONLY patients p SET name = 'n' WHERE p.id = $1`, `UPDATE ONLY "public".patients p SET name = 'n' WHERE p.id = $1`},
		{"CTE named like a table is not a relation", testEnv(),
			`WITH patients AS (SELECT 1 AS x) SELECT x FROM patients`, `WITH patients AS (SELECT 1 AS x) SELECT x FROM patients`},
		{"COPY target", testEnv(),
			`COPY patients (ssn) FROM STDIN`, `COPY "public".patients (ssn) FROM STDIN`},
		{"catalog older than the policy table", &Env{Catalog: stale, SearchPath: []string{"public"}},
			`INSERT INTO staff (badge) VALUES ('7')`, `INSERT INTO "public".staff (badge) VALUES ('<encw:public.staff.badge:7>')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustAnalyze(t, tt.sql, tt.env)
			if got := mustRewrite(t, p); got != tt.want {
				t.Fatalf("rewrite\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}
