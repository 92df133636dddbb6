package sqlrewrite

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

// testCatalog is a map-backed Catalog.
type testCatalog struct {
	rels    map[string]*Relation // schema.name → relation with encrypted columns
	schemas map[string][]string  // name → every schema with a relation of that name
}

func (c *testCatalog) SchemasWith(name string) []string { return c.schemas[name] }

func (c *testCatalog) Relation(schema, name string) *Relation { return c.rels[schema+"."+name] }

func (c *testCatalog) EncryptedName(name string) bool {
	for _, r := range c.rels {
		if r.Name == name {
			return true
		}
	}
	return false
}

func rule(schema, table, column, key string, kind policy.KeyKind, t policy.LogicalType) *policy.ColumnRule {
	return &policy.ColumnRule{Schema: schema, Table: table, Column: column, KeyName: key, Kind: kind, Type: t}
}

// The test policy: keys ssn (deterministic) and clinical (randomized).
var (
	ruleSSN       = rule("public", "patients", "ssn", "ssn", policy.Deterministic, policy.TypeText)
	ruleDiagnosis = rule("public", "patients", "diagnosis", "clinical", policy.Randomized, policy.TypeText)
	ruleDOB       = rule("public", "patients", "dob", "clinical", policy.Randomized, policy.TypeDate)
	ruleVisitSSN  = rule("public", "visits", "patient_ssn", "ssn", policy.Deterministic, policy.TypeText)
	ruleNote      = rule("public", "visits", "note", "clinical", policy.Randomized, policy.TypeText)
	ruleBadge     = rule("public", "staff", "badge", "badge", policy.Deterministic, policy.TypeInt4)
	ruleSecret    = rule("public", "legacy", "secret", "ssn", policy.Deterministic, policy.TypeText)
	ruleArchSSN   = rule("archive", "patients", "ssn", "ssn", policy.Deterministic, policy.TypeText)
	// members.born and heirs.born share the ordered key born; members.pay is
	// under ordered key pay.
	ruleBorn     = rule("public", "members", "born", "born", policy.Ordered, policy.TypeDate)
	rulePay      = rule("public", "members", "pay", "pay", policy.Ordered, policy.TypeInt8)
	ruleHeirBorn = rule("public", "heirs", "born", "born", policy.Ordered, policy.TypeDate)
)

func newTestCatalog() *testCatalog {
	rels := []*Relation{
		{Schema: "public", Name: "patients", Columns: []string{"id", "name", "ssn", "diagnosis", "dob"},
			Encrypted: map[string]*policy.ColumnRule{"ssn": ruleSSN, "diagnosis": ruleDiagnosis, "dob": ruleDOB}},
		{Schema: "public", Name: "visits", Columns: []string{"id", "patient_ssn", "note", "visited_at"},
			Encrypted: map[string]*policy.ColumnRule{"patient_ssn": ruleVisitSSN, "note": ruleNote}},
		{Schema: "public", Name: "patient_names", Columns: []string{"name", "ssn"}, View: true,
			Encrypted: map[string]*policy.ColumnRule{"ssn": ruleSSN}},
		{Schema: "public", Name: "staff", Columns: []string{"id", "badge"},
			Encrypted: map[string]*policy.ColumnRule{"badge": ruleBadge}},
		{Schema: "public", Name: "members", Columns: []string{"id", "name", "born", "pay"},
			Encrypted: map[string]*policy.ColumnRule{"born": ruleBorn, "pay": rulePay}},
		{Schema: "public", Name: "heirs", Columns: []string{"id", "born"},
			Encrypted: map[string]*policy.ColumnRule{"born": ruleHeirBorn}},
		// legacy's column list is unknown to the proxy.
		{Schema: "public", Name: "legacy", Encrypted: map[string]*policy.ColumnRule{"secret": ruleSecret}},
		{Schema: "archive", Name: "patients", Columns: []string{"id", "ssn"},
			Encrypted: map[string]*policy.ColumnRule{"ssn": ruleArchSSN}},
	}
	c := &testCatalog{rels: map[string]*Relation{}, schemas: map[string][]string{}}
	for _, r := range rels {
		c.rels[r.Schema+"."+r.Name] = r
	}
	// Every relation of an encrypted name, plain ones included.
	c.schemas["patients"] = []string{"public", "other", "archive"}
	c.schemas["visits"] = []string{"public"}
	c.schemas["patient_names"] = []string{"public"}
	c.schemas["staff"] = []string{"public"}
	c.schemas["legacy"] = []string{"public"}
	c.schemas["members"] = []string{"public"}
	c.schemas["heirs"] = []string{"public"}
	return c
}

var testCat = newTestCatalog()

// testEnv is the default session: search_path public.
func testEnv() *Env {
	return &Env{Catalog: testCat, SearchPath: []string{"public"}}
}

// fakeEncrypt marks where each literal went and under which rule.
func fakeEncrypt(l *Literal) (string, error) {
	w := "enc"
	if l.Write {
		w = "encw"
	}
	if l.Candidates && l.Array {
		return fmt.Sprintf("ARRAY['<elemcands:%s:%s:%v>']", l.Rule.Name(), l.Value, l.Source.Casts), nil
	}
	if l.Candidates && l.Slots > 0 {
		return fmt.Sprintf("'<slots%d:%s:%s>'", l.Slots, l.Rule.Name(), l.Value), nil
	}
	if l.Candidates {
		return fmt.Sprintf("ARRAY['<cands:%s:%s>']", l.Rule.Name(), l.Value), nil
	}
	if l.Bound != nil {
		return fmt.Sprintf("'<%s:%s:%s>'", l.Bound, l.Rule.Name(), l.Value), nil
	}
	return fmt.Sprintf("'<%s:%s:%s>'", w, l.Rule.Name(), l.Value), nil
}

// ruleNames renders rules for comparison.
func ruleNames(rs []*policy.ColumnRule) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name()
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// paramNames renders Plan.Params as "$1=public.patients.ssn/r,$2=-". A
// single value's CandidateSlots hidden parameters, Slot 0 to the last in
// order, show as one entry "$2..$9=public.patients.ssn/c$1".
func paramNames(ps []*ParamRule) string {
	var out []string
	for i := 0; i < len(ps); i++ {
		p := ps[i]
		if p == nil {
			out = append(out, fmt.Sprintf("$%d=-", i+1))
			continue
		}
		if p.Source > 0 && !p.Array {
			n := 0
			for n < CandidateSlots && i+n < len(ps) && ps[i+n] != nil && ps[i+n].Source == p.Source &&
				ps[i+n].Rule == p.Rule && ps[i+n].Slot == n && !ps[i+n].Array && ps[i+n].Candidates {
				n++
			}
			if n == CandidateSlots {
				out = append(out, fmt.Sprintf("$%d..$%d=%s/c$%d", i+1, i+n, p.Rule.Name(), p.Source))
				i += n - 1
				continue
			}
		}
		rw := "r"
		if p.Write {
			rw = "w"
		}
		if p.Source > 0 {
			rw = fmt.Sprintf("c$%d", p.Source)
		}
		if p.Array {
			rw += "[]"
		}
		if p.Bound != nil {
			rw += p.Bound.String()
		}
		out = append(out, fmt.Sprintf("$%d=%s/%s", i+1, p.Rule.Name(), rw))
	}
	return strings.Join(out, ",")
}

func mustAnalyze(t *testing.T, sql string, env *Env) *Plan {
	t.Helper()
	p, err := Analyze(sql, env)
	if err != nil {
		t.Fatalf("Analyze(%q): %v", sql, err)
	}
	return p
}

func mustRewrite(t *testing.T, p *Plan) string {
	t.Helper()
	s, err := p.Rewrite(fakeEncrypt)
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	return s
}

func rulesOf(rs ...*policy.ColumnRule) []*policy.ColumnRule { return rs }

// HoldsPolicyTable implements SchemaHolder.
func (c *testCatalog) HoldsPolicyTable(schema string) bool {
	for _, r := range c.rels {
		if r.Schema == schema && !r.View {
			return true
		}
	}
	return false
}
