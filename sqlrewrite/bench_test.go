package sqlrewrite

import (
	"fmt"
	"strings"
	"testing"

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

// largeStatements are what bulk loaders send: a 20,000-row INSERT and a
// 20,000-item IN list.
func largeStatements() []string {
	var b strings.Builder
	b.WriteString("INSERT INTO patients (id, ssn, diagnosis, dob) VALUES ")
	for i := 0; i < 20000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, 'ssn-%d', 'diag', '2020-01-01')", i, i)
	}
	in := "SELECT id FROM patients WHERE ssn IN ('0'" + strings.Repeat(", 'x'", 20000) + ")"
	return []string{b.String(), in}
}

func TestLargeStatements(t *testing.T) {
	for i, sql := range largeStatements() {
		p := mustAnalyze(t, sql, testEnv())
		out, err := p.Rewrite(fakeEncrypt)
		if err != nil {
			t.Fatal(err)
		}
		// Every constant bound for an encrypted column is edited: three
		// per row, or one per list item (its candidates).
		want := []int{3 * 20000, 20001}[i]
		if n := strings.Count(out, "<enc") + strings.Count(out, "<cands"); n != want {
			t.Fatalf("statement %d: %d encrypted literals, want %d", i, n, want)
		}
	}
}

// BenchmarkLargeStatements guards against quadratic work on them: ns/op
// should stay in proportion to their size.
func BenchmarkLargeStatements(b *testing.B) {
	for i, sql := range largeStatements() {
		b.Run([]string{"insert", "in-list"}[i], func(b *testing.B) {
			for b.Loop() {
				p, err := Analyze(sql, testEnv())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Rewrite(fakeEncrypt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
