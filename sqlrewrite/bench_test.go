package sqlrewrite

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

var benchStatements = []struct{ name, sql string }{
	{"insert", `INSERT INTO patients (id, name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4, $5) RETURNING id`},
	{"insert_literals", `INSERT INTO patients (id, name, ssn, diagnosis, dob) VALUES (1, 'Ann', '123-45-6789', 'flu', '1980-01-01')`},
	{"select", `SELECT p.id, p.name, p.ssn, v.note FROM patients p JOIN visits v ON v.patient_ssn = p.ssn WHERE p.ssn = $1 AND v.visited_at > now() - interval '1 year' LIMIT 10`},
	{"select_plain", `SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1 ORDER BY o.created_at DESC LIMIT 50`},
}

// BenchmarkAnalyze measures Analyze on typical statements; BenchmarkParse
// is the floor it cannot go below.
func BenchmarkAnalyze(b *testing.B) {
	env := testEnv()
	for _, s := range benchStatements {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Analyze(s.sql, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, s := range benchStatements {
		b.Run(s.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := pg_query.Parse(s.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLargeStatementsAreLinear guards against quadratic work on the
// statements bulk loaders send.
func TestLargeStatementsAreLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("INSERT INTO patients (id, ssn, diagnosis, dob) VALUES ")
	for i := 0; i < 20000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, 'ssn-%d', 'diag', '2020-01-01')", i, i)
	}
	in := "SELECT id FROM patients WHERE ssn IN ('0'" + strings.Repeat(", 'x'", 20000) + ")"
	for _, sql := range []string{b.String(), in} {
		start := time.Now()
		p := mustAnalyze(t, sql, testEnv())
		if _, err := p.Rewrite(fakeEncrypt); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%d bytes, %d edits took %v", len(sql), len(p.Edits), d)
		}
	}
}
