package sqlrewrite

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// A small random SQL generator over the test catalog: unlike byte-level
// fuzzing it produces mostly valid statements, so the analysis itself is
// exercised. Every statement goes through checkInvariants.

type genRel struct {
	ref  string // as written in FROM
	name string // alias
	cols []string
}

var genRels = []genRel{
	{"patients p", "p", []string{"id", "name", "ssn", "diagnosis", "dob"}},
	{"public.visits v", "v", []string{"id", "patient_ssn", "note", "visited_at"}},
	{"staff s", "s", []string{"id", "badge"}},
	{"other.patients o", "o", []string{"id", "name", "ssn"}},
	{"patient_names n", "n", []string{"name", "ssn"}},
	{"(SELECT ssn AS k, id FROM patients) q", "q", []string{"k", "id"}},
}

var genConsts = []string{
	`'abc'`, `'it''s'`, `E'a\nb'`, `$$d$$`, `$t$x$t$`, `U&'\0061b'`, `-5`, `- 5`, `-(7)`, `1.5`, `42`,
	`'x'::text`, `CAST('y' AS varchar(3))`, `DATE '2020-01-01'`, `'2020-01-01'::date`, `NULL`, `NULL::text`,
	`$1`, `$2::text`, `($3)`, `'é☃'`, `TRUE`, `'a' 'b'`, "'a'\n'b'", `N'n'`, `(('p'))::text`,
}

var genOps = []string{"=", "=", "<>", "!=", "<", "LIKE", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"}

type gen struct {
	r *rand.Rand
}

func (g *gen) pick(xs []string) string { return xs[g.r.Intn(len(xs))] }

// ws is a separator, sometimes a comment.
func (g *gen) ws() string {
	switch g.r.Intn(8) {
	case 0:
		return " /* c */ "
	case 1:
		return " -- c\n"
	}
	return " "
}

func (g *gen) col(rels []genRel) string {
	r := rels[g.r.Intn(len(rels))]
	c := g.pick(r.cols)
	if g.r.Intn(2) == 0 {
		return r.name + "." + c
	}
	return c
}

func (g *gen) pred(rels []genRel, depth int) string {
	switch n := g.r.Intn(10); {
	case n < 4 || depth > 2:
		return g.col(rels) + g.ws() + g.pick(genOps) + g.ws() + g.pick(genConsts)
	case n == 4:
		items := []string{g.pick(genConsts), g.pick(genConsts)}
		return g.col(rels) + " IN (" + strings.Join(items, ", ") + ")"
	case n == 5:
		return g.col(rels) + " IS NULL"
	case n == 6:
		return g.col(rels) + " = " + g.col(rels)
	case n == 7:
		inner := []genRel{genRels[g.r.Intn(len(genRels))]}
		return "EXISTS (SELECT 1 FROM " + inner[0].ref + " WHERE " + g.pred(append(inner, rels...), depth+1) + ")"
	case n == 8:
		return g.col(rels) + " IN (SELECT patient_ssn FROM visits WHERE " + g.pred([]genRel{genRels[1]}, depth+1) + ")"
	}
	return "(" + g.pred(rels, depth+1) + g.ws() + g.pick([]string{"AND", "OR"}) + g.ws() + "NOT " + g.pred(rels, depth+1) + ")"
}

func (g *gen) from() []genRel {
	rels := []genRel{genRels[g.r.Intn(len(genRels))]}
	if g.r.Intn(2) == 0 {
		rels = append(rels, genRels[g.r.Intn(len(genRels))])
	}
	if len(rels) == 2 && rels[0].name == rels[1].name {
		rels = rels[:1]
	}
	return rels
}

func (g *gen) selectStmt() string {
	rels := g.from()
	refs := make([]string, len(rels))
	for i, r := range rels {
		refs[i] = r.ref
	}
	q := "SELECT " + g.col(rels) + ", " + g.pick([]string{"count(*)", "1", g.col(rels), "*"}) + " FROM " + strings.Join(refs, ", ")
	if len(rels) == 1 && g.r.Intn(3) == 0 {
		other := genRels[g.r.Intn(len(genRels))]
		if other.name != rels[0].name {
			rels = append(rels, other)
			q += " JOIN " + other.ref + " ON " + g.pred(rels, 1)
		}
	}
	q += " WHERE" + g.ws() + g.pred(rels, 0)
	switch g.r.Intn(5) {
	case 0:
		q += " GROUP BY " + g.col(rels)
	case 1:
		q += " ORDER BY " + g.col(rels)
	case 2:
		q += " LIMIT $4"
	}
	return q
}

func (g *gen) writeStmt() string {
	switch g.r.Intn(3) {
	case 0:
		cols := []string{"id", "name", "ssn", "diagnosis", "dob"}
		n := 1 + g.r.Intn(len(cols))
		vals := make([]string, n)
		for i := range vals {
			vals[i] = g.pick(genConsts)
		}
		list := "(" + strings.Join(cols[:n], ", ") + ") "
		if g.r.Intn(4) == 0 {
			list = ""
		}
		return "INSERT INTO patients " + list + "VALUES (" + strings.Join(vals, ", ") + ")" +
			g.pick([]string{"", " RETURNING ssn", " ON CONFLICT (ssn) DO UPDATE SET diagnosis = " + g.pick(genConsts)})
	case 1:
		rels := []genRel{genRels[1]}
		return "UPDATE visits v SET " + g.pick(rels[0].cols) + " = " + g.pick(genConsts) + " WHERE " + g.pred(rels, 0)
	}
	rels := []genRel{genRels[2]}
	return "DELETE FROM staff s WHERE " + g.pred(rels, 0)
}

// generateStatements returns n random statements from seed.
func generateStatements(seed int64, n int) []string {
	g := &gen{r: rand.New(rand.NewSource(seed))}
	out := make([]string, n)
	for i := range out {
		switch g.r.Intn(4) {
		case 0:
			out[i] = g.writeStmt()
		case 1:
			out[i] = "WITH w AS (SELECT id, ssn FROM patients WHERE " + g.pred([]genRel{genRels[0]}, 1) + ") SELECT * FROM w WHERE ssn = " + g.pick(genConsts)
		default:
			out[i] = g.selectStmt()
		}
	}
	return out
}

func TestGeneratedStatements(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	accepted := 0
	for i, sql := range generateStatements(1, n) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkInvariants(t, sql)
		})
		if _, err := Analyze(sql, testEnv()); err == nil {
			accepted++
		}
	}
	if accepted < n/10 {
		t.Errorf("only %d of %d generated statements accepted: the generator is off", accepted, n)
	}
	t.Logf("%d of %d generated statements accepted", accepted, n)
}
