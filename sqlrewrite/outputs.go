package sqlrewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgcloak/pgcloak/policy"
)

// OutputColumns analyses a query (a view definition, as pg_get_viewdef
// prints it) and returns, per output column in order, the rule of the
// encrypted column it passes through unchanged, or nil for a plain column.
// The proxy uses it to learn which view columns carry ciphertext. A query
// that would be refused, or whose output positions are unknown, is an
// error.
func OutputColumns(sql string, env *Env) ([]*policy.ColumnRule, error) {
	a := newAnalyzer(sql, env)
	// A view made straight in PostgreSQL was never bounded by the proxy.
	if err := a.admit(); err != nil {
		return nil, err
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, syntaxRefusal("view definition does not parse")
	}
	stmts := tree.GetStmts()
	if len(stmts) != 1 || stmts[0].GetStmt().GetSelectStmt() == nil {
		return nil, refuse("", "view definition is not a single SELECT")
	}
	a.deep = true
	a.stmt = &Statement{Kind: KindSelect}
	sh, err := a.selectStmt(stmts[0].GetStmt().GetSelectStmt(), nil)
	if err != nil {
		return nil, err
	}
	if !sh.complete {
		return nil, refuse("", "view output columns are not all known")
	}
	rules := make([]*policy.ColumnRule, len(sh.cols))
	for i, c := range sh.cols {
		if c.v.kind == valEnc {
			rules[i] = c.v.rule
		}
	}
	return rules, nil
}
