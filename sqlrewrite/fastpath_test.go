package sqlrewrite

import "testing"

func TestPlainDMLFastPath(t *testing.T) {
	env := testEnv()
	tests := []struct {
		sql  string
		fast bool
		kind Kind
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7", true, KindSelect},
		{"  select 1;  ", true, KindSelect},
		{"select(1)", true, KindSelect},
		{"SELECT * FROM accounts", true, KindSelect},
		{"insert into accounts values (1, 'x')", true, KindInsert},
		{"UPDATE accounts SET n = n + 1 WHERE id = $1", true, KindUpdate},
		{"DELETE FROM accounts WHERE id = 3", true, KindDelete},
		{"WITH x AS (SELECT 1) SELECT * FROM x", true, KindSelect},
		{"VALUES (1), (2)", true, KindSelect},
		{"TABLE accounts", true, KindSelect},
		// Anything less certain takes the full path.
		{"SELECT 1; SELECT 2", false, KindSelect},
		{"SELECT ';'", false, KindSelect},
		{"/* c */ SELECT 1", false, KindSelect},
		{"-- c\nSELECT 1", false, KindSelect},
		{"SET search_path TO x", false, KindSet},
		{"BEGIN", false, KindTransaction},
		{"SELECT set_config('role', 'x', false)", false, KindSelect},
		{"SELECT * FROM U&\"p\\0061tients\"", false, KindSelect},
		// An encrypted relation's name anywhere means the full analysis.
		{"SELECT ssn FROM patients", false, KindSelect},
		{"SELECT 1 FROM accounts WHERE note = 'patients'", false, KindSelect},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			a := newAnalyzer(tt.sql, env)
			_, fast := plainDML(tt.sql)
			fast = fast && !a.deep
			if fast != tt.fast {
				t.Fatalf("fast path = %v, want %v", fast, tt.fast)
			}
			got := mustAnalyze(t, tt.sql, env)
			full, err := newAnalyzer(tt.sql, env).analyze()
			if err != nil {
				t.Fatalf("full analysis: %v", err)
			}
			if len(got.Statements) != len(full.Statements) || len(got.Edits) != len(full.Edits) || len(got.Params) != len(full.Params) {
				t.Fatalf("fast plan %+v differs from full plan %+v", got, full)
			}
			if got.Statements[0].Kind != tt.kind || full.Statements[0].Kind != tt.kind {
				t.Fatalf("kind fast=%v full=%v, want %v", got.Statements[0].Kind, full.Statements[0].Kind, tt.kind)
			}
		})
	}
}

func BenchmarkAnalyzePlainSelect(b *testing.B) {
	env := testEnv()
	const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	for b.Loop() {
		if _, err := Analyze(sql, env); err != nil {
			b.Fatal(err)
		}
	}
}
