package sqlrewrite

import (
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// shape is the output of a query: its columns in order.
type shape struct {
	cols []outCol
	// complete is false when a * expanded over a relation whose columns
	// are unknown: positions are then unknown (names still resolve, and
	// every encrypted column is among cols).
	complete bool
}

// outCol is one output column. v summarizes it for references from an
// outer query; leaves are the values of every row and branch (VALUES rows,
// set-operation branches) for INSERT … SELECT and IN (subquery), where a
// constant in the subquery is encrypted for the target column.
type outCol struct {
	name   string
	v      value
	leaves []value
	// compared marks a column whose values PostgreSQL compares with each
	// other in the query that makes it (UNION, INTERSECT, EXCEPT,
	// DISTINCT, GROUP BY): constants and parameters there are compared
	// as what the proxy turned them into.
	compared bool
}

// markCompared marks every column of sh compared.
func (sh *shape) markCompared() {
	for i := range sh.cols {
		sh.cols[i].compared = true
	}
}

func (sh *shape) hasEncrypted() bool {
	for _, c := range sh.cols {
		if c.v.kind == valEnc {
			return true
		}
	}
	return false
}

// selectStmt analyzes a SELECT (or VALUES, or set operation) whose outer
// levels are parent, and returns its output.
func (a *analyzer) selectStmt(s *pg_query.SelectStmt, parent *scope) (*shape, error) {
	if s == nil {
		return &shape{complete: true}, nil
	}
	sc := &scope{parent: parent}
	if err := a.withClause(s.GetWithClause(), sc); err != nil {
		return nil, err
	}
	var sh *shape
	var err error
	switch {
	case s.GetOp() != pg_query.SetOperation_SETOP_NONE:
		sh, err = a.setOperation(s, sc)
	case len(s.GetValuesLists()) > 0:
		sh, err = a.valuesLists(s.GetValuesLists(), sc)
	default:
		sh, err = a.simpleSelect(s, sc)
	}
	if err != nil {
		return nil, err
	}
	if err := a.sortClause(s.GetSortClause(), sc, sh); err != nil {
		return nil, err
	}
	if err := a.plain(s.GetLimitCount(), sc, "LIMIT"); err != nil {
		return nil, err
	}
	return sh, a.plain(s.GetLimitOffset(), sc, "OFFSET")
}

// simpleSelect is SELECT … FROM … WHERE … GROUP BY … HAVING ….
func (a *analyzer) simpleSelect(s *pg_query.SelectStmt, sc *scope) (*shape, error) {
	for _, f := range s.GetFromClause() {
		if err := a.fromItem(f, sc); err != nil {
			return nil, err
		}
	}
	if err := a.plain(s.GetWhereClause(), sc, "WHERE"); err != nil {
		return nil, err
	}
	sh, err := a.targetList(s.GetTargetList(), sc)
	if err != nil {
		return nil, err
	}
	if err := a.groupClause(s.GetGroupClause(), sc, sh, "GROUP BY"); err != nil {
		return nil, err
	}
	if err := a.plain(s.GetHavingClause(), sc, "HAVING"); err != nil {
		return nil, err
	}
	if err := a.distinctClause(s.GetDistinctClause(), sc, sh); err != nil {
		return nil, err
	}
	if len(s.GetGroupClause()) > 0 || len(s.GetDistinctClause()) > 0 {
		sh.markCompared()
	}
	for _, w := range s.GetWindowClause() {
		if err := a.windowDef(w.GetWindowDef(), sc); err != nil {
			return nil, err
		}
	}
	return sh, nil
}

// targetList evaluates a SELECT list or RETURNING list.
func (a *analyzer) targetList(targets []*pg_query.Node, sc *scope) (*shape, error) {
	sh := &shape{complete: true}
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil {
			return nil, refuse("", "unsupported target list entry")
		}
		if cr := rt.GetVal().GetColumnRef(); cr != nil && isStar(cr) {
			a.seen[cr] = true
			a.expandStar(cr, sc, sh)
			continue
		}
		if rt.GetName() == "" {
			// A rewritten min/max keeps the column name PostgreSQL
			// would give it.
			a.unnamed = rt.GetVal().GetFuncCall()
		}
		v, err := a.expr(rt.GetVal(), sc)
		a.unnamed = nil
		if err != nil {
			return nil, err
		}
		sh.cols = append(sh.cols, outCol{name: targetName(rt), v: v, leaves: []value{v}})
	}
	return sh, nil
}

func isStar(cr *pg_query.ColumnRef) bool {
	f := cr.GetFields()
	return len(f) > 0 && f[len(f)-1].GetAStar() != nil
}

// expandStar appends the columns of * or t.*.
func (a *analyzer) expandStar(cr *pg_query.ColumnRef, sc *scope, sh *shape) {
	var names []string
	for _, f := range cr.GetFields() {
		if s := f.GetString_(); s != nil {
			names = append(names, s.GetSval())
		}
	}
	items := a.starItems(names, sc)
	if len(names) > 0 && len(items) == 0 {
		// t.* of something not in scope: PostgreSQL will complain.
		sh.complete = false
	}
	for _, it := range items {
		for _, c := range it.cols {
			sh.cols = append(sh.cols, outCol{name: c.name, v: c.v, leaves: []value{c.v}})
		}
		if !it.complete {
			sh.complete = false
		}
	}
}

// targetName is the column name PostgreSQL gives a target (FigureColname,
// as far as references from outer queries need it).
func targetName(rt *pg_query.ResTarget) string {
	if rt.GetName() != "" {
		return rt.GetName()
	}
	return exprName(rt.GetVal())
}

func exprName(n *pg_query.Node) string {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		f := x.ColumnRef.GetFields()
		if len(f) > 0 {
			return f[len(f)-1].GetString_().GetSval()
		}
	case *pg_query.Node_FuncCall:
		f := x.FuncCall.GetFuncname()
		if len(f) > 0 {
			return f[len(f)-1].GetString_().GetSval()
		}
	case *pg_query.Node_TypeCast:
		if name := exprName(x.TypeCast.GetArg()); name != "?column?" {
			return name
		}
		parts := typeNameParts(x.TypeCast.GetTypeName())
		if len(parts) > 0 {
			return parts[len(parts)-1]
		}
	case *pg_query.Node_SubLink:
		if x.SubLink.GetSubLinkType() == pg_query.SubLinkType_EXPR_SUBLINK {
			if s := x.SubLink.GetSubselect().GetSelectStmt(); s != nil && len(s.GetTargetList()) > 0 {
				return targetName(s.GetTargetList()[0].GetResTarget())
			}
		}
	}
	return "?column?"
}

// valuesLists is VALUES (…), (…): every row's value is a leaf.
func (a *analyzer) valuesLists(rows []*pg_query.Node, sc *scope) (*shape, error) {
	sh := &shape{complete: true}
	for _, r := range rows {
		for i, n := range r.GetList().GetItems() {
			v, err := a.expr(n, sc)
			if err != nil {
				return nil, err
			}
			for len(sh.cols) <= i {
				sh.cols = append(sh.cols, outCol{name: "column" + strconv.Itoa(len(sh.cols)+1)})
			}
			sh.cols[i].leaves = append(sh.cols[i].leaves, v)
		}
	}
	for i := range sh.cols {
		v, err := mergeLeaves(sh.cols[i].leaves, true)
		if err != nil {
			return nil, err
		}
		sh.cols[i].v = v
	}
	return sh, nil
}

// mergeLeaves summarizes the values that meet in one output column of a
// set operation or VALUES list. Ciphertexts may meet only ciphertexts of
// the same key (or NULL): anything else would mix ciphertext with
// plaintext in one column. Without ALL, rows are compared, so the key must
// be deterministic.
func mergeLeaves(leaves []value, all bool) (value, error) {
	var enc *value
	for i := range leaves {
		if leaves[i].kind == valEnc {
			enc = &leaves[i]
			break
		}
	}
	if enc == nil {
		if len(leaves) == 1 {
			return leaves[0], nil
		}
		return plainValue, nil
	}
	for _, l := range leaves {
		switch {
		case l.kind == valNull:
		case l.kind != valEnc:
			return plainValue, refuse(enc.rule.Name(), "encrypted column %s is combined with plain values in one result column", enc.rule.Name())
		case !enc.rule.Interchangeable(l.rule):
			return plainValue, refuse(enc.rule.Name(), "encrypted columns %s and %s use different keys and cannot share a result column", enc.rule.Name(), l.rule.Name())
		}
	}
	if !all && !enc.rule.Deterministic() {
		return plainValue, refuse(enc.rule.Name(), "column %s is encrypted with a randomized key: UNION, INTERSECT and EXCEPT compare it", enc.rule.Name())
	}
	return *enc, nil
}

// setOperation is UNION / INTERSECT / EXCEPT.
func (a *analyzer) setOperation(s *pg_query.SelectStmt, sc *scope) (*shape, error) {
	left, err := a.selectStmt(s.GetLarg(), sc)
	if err != nil {
		return nil, err
	}
	a.registerRecursive(s, left)
	right, err := a.selectStmt(s.GetRarg(), sc)
	if err != nil {
		return nil, err
	}
	if (!left.complete || !right.complete) && (left.hasEncrypted() || right.hasEncrypted()) {
		return nil, refuse("", "a set operation over * of a relation with unknown columns cannot be checked")
	}
	all := s.GetAll() && s.GetOp() == pg_query.SetOperation_SETOP_UNION
	out := &shape{complete: left.complete && right.complete}
	for i := 0; i < max(len(left.cols), len(right.cols)); i++ {
		var c outCol
		c.compared = !all
		if i < len(left.cols) {
			c.name = left.cols[i].name
			c.leaves = append(c.leaves, left.cols[i].leaves...)
			c.compared = c.compared || left.cols[i].compared
		}
		if i < len(right.cols) {
			c.leaves = append(c.leaves, right.cols[i].leaves...)
			c.compared = c.compared || right.cols[i].compared
		}
		if c.v, err = mergeLeaves(c.leaves, all); err != nil {
			return nil, err
		}
		if !all && c.v.kind == valEnc {
			a.comparedInDatabase(c.v.rule)
		}
		out.cols = append(out.cols, c)
	}
	return out, nil
}

// withClause analyzes CTEs in order and makes them visible in sc.
func (a *analyzer) withClause(w *pg_query.WithClause, sc *scope) error {
	if w == nil {
		return nil
	}
	sc.ctes = map[string]*cteEntry{}
	if w.GetRecursive() {
		for _, c := range w.GetCtes() {
			sc.ctes[c.GetCommonTableExpr().GetCtename()] = &cteEntry{pending: true}
		}
	}
	for _, c := range w.GetCtes() {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			return refuse("", "unsupported WITH entry")
		}
		sh, err := a.cteQuery(cte, sc, w.GetRecursive())
		if err != nil {
			return err
		}
		if err := a.cteClauses(cte, sh); err != nil {
			return err
		}
		sh, err = renameShape(sh, cte.GetAliascolnames())
		if err != nil {
			return err
		}
		sc.ctes[cte.GetCtename()] = &cteEntry{shape: sh}
	}
	return nil
}

// cteQuery analyzes one CTE body. A recursive CTE is registered with the
// shape of its non-recursive branch before the recursive one is analyzed.
func (a *analyzer) cteQuery(cte *pg_query.CommonTableExpr, sc *scope, recursive bool) (*shape, error) {
	q := cte.GetCtequery()
	if s := q.GetSelectStmt(); s != nil {
		if recursive && s.GetOp() == pg_query.SetOperation_SETOP_UNION {
			prev := a.pendingRecursive
			a.pendingRecursive = &recursiveCTE{stmt: s, cte: cte, sc: sc}
			defer func() { a.pendingRecursive = prev }()
		}
		return a.selectStmt(s, sc)
	}
	sh, err := a.dml(q, sc)
	if err != nil {
		return nil, err
	}
	return sh, nil
}

type recursiveCTE struct {
	stmt *pg_query.SelectStmt
	cte  *pg_query.CommonTableExpr
	sc   *scope
}

// registerRecursive makes a recursive CTE visible to its recursive branch
// once the non-recursive branch gave its shape.
func (a *analyzer) registerRecursive(s *pg_query.SelectStmt, left *shape) {
	r := a.pendingRecursive
	if r == nil || r.stmt != s {
		return
	}
	sh, err := renameShape(left, r.cte.GetAliascolnames())
	if err != nil {
		// Leave it pending: a reference to it is then refused.
		return
	}
	r.sc.ctes[r.cte.GetCtename()] = &cteEntry{shape: sh}
	a.pendingRecursive = nil
}

// cteClauses checks SEARCH and CYCLE: they order and compare columns.
func (a *analyzer) cteClauses(cte *pg_query.CommonTableExpr, sh *shape) error {
	check := func(cols []*pg_query.Node, what string, ok func(*policy.ColumnRule) bool) error {
		for _, n := range cols {
			name := n.GetString_().GetSval()
			for _, c := range sh.cols {
				if c.name == name && c.v.kind == valEnc && !ok(c.v.rule) {
					return needsPlaintext(what, c.v.rule)
				}
			}
		}
		return nil
	}
	never := func(*policy.ColumnRule) bool { return false }
	if err := check(cte.GetSearchClause().GetSearchColList(), "SEARCH", never); err != nil {
		return err
	}
	return check(cte.GetCycleClause().GetCycleColList(), "CYCLE", (*policy.ColumnRule).Deterministic)
}

// renameShape applies a CTE's column aliases by position.
func renameShape(sh *shape, names []*pg_query.Node) (*shape, error) {
	if len(names) == 0 {
		return sh, nil
	}
	if !sh.complete && sh.hasEncrypted() {
		return nil, refuse("", "column aliases over * of a relation with unknown columns cannot be checked")
	}
	out := &shape{complete: sh.complete, cols: append([]outCol(nil), sh.cols...)}
	for i, n := range names {
		if i < len(out.cols) {
			out.cols[i].name = n.GetString_().GetSval()
		}
	}
	return out, nil
}

// fromItem adds one FROM-clause entry to sc.
func (a *analyzer) fromItem(n *pg_query.Node, sc *scope) error {
	items, err := a.fromItems(n, sc)
	if err != nil {
		return err
	}
	sc.items = append(sc.items, items...)
	return nil
}

// fromItems analyzes a FROM-clause entry and returns the items it adds.
func (a *analyzer) fromItems(n *pg_query.Node, sc *scope) ([]*item, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_RangeVar:
		it, err := a.rangeVar(x.RangeVar, sc, true)
		if err != nil {
			return nil, err
		}
		return []*item{it}, nil
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		sh, err := a.subquery(rs.GetSubquery(), sc.outerForFrom(rs.GetLateral()))
		if err != nil {
			return nil, err
		}
		it, err := a.shapeItem(rs.GetAlias().GetAliasname(), sh, rs.GetAlias().GetColnames())
		if err != nil {
			return nil, err
		}
		return []*item{it}, nil
	case *pg_query.Node_JoinExpr:
		return a.join(x.JoinExpr, sc)
	case *pg_query.Node_RangeFunction:
		return a.rangeFunction(x.RangeFunction, sc)
	case *pg_query.Node_RangeTableSample:
		rts := x.RangeTableSample
		if err := a.plainList(rts.GetArgs(), sc, "TABLESAMPLE"); err != nil {
			return nil, err
		}
		if err := a.plain(rts.GetRepeatable(), sc, "TABLESAMPLE"); err != nil {
			return nil, err
		}
		return a.fromItems(rts.GetRelation(), sc)
	}
	// XMLTABLE and the like: whatever they read must be plain.
	if err := a.opaque(n, sc.outerForFrom(true)); err != nil {
		return nil, err
	}
	return []*item{{name: aliasOf(n)}}, nil
}

func aliasOf(n *pg_query.Node) string {
	if t := n.GetRangeTableFunc(); t != nil {
		return t.GetAlias().GetAliasname()
	}
	return ""
}

// subquery analyzes a subquery node (normally a SelectStmt).
func (a *analyzer) subquery(n *pg_query.Node, outer *scope) (*shape, error) {
	if s := n.GetSelectStmt(); s != nil {
		return a.selectStmt(s, outer)
	}
	return nil, refuse("", "unsupported subquery")
}

func (a *analyzer) rangeFunction(rf *pg_query.RangeFunction, sc *scope) ([]*item, error) {
	// Functions in FROM are always lateral in PostgreSQL.
	outer := sc.outerForFrom(true)
	inner := &scope{parent: outer}
	for _, f := range rf.GetFunctions() {
		// Each entry is a List of (function call, column definitions).
		for _, part := range f.GetList().GetItems() {
			if err := a.plain(part, inner, "a function in FROM"); err != nil {
				return nil, err
			}
		}
	}
	it := &item{name: rf.GetAlias().GetAliasname()}
	if it.name == "" && len(rf.GetFunctions()) == 1 {
		items := rf.GetFunctions()[0].GetList().GetItems()
		if len(items) > 0 {
			it.name = exprName(items[0])
		}
	}
	for _, c := range rf.GetAlias().GetColnames() {
		it.cols = append(it.cols, column{name: c.GetString_().GetSval(), v: plainValue})
	}
	return []*item{it}, nil
}

// join analyzes a JOIN: its inputs, USING / NATURAL / ON.
func (a *analyzer) join(j *pg_query.JoinExpr, sc *scope) ([]*item, error) {
	left, err := a.fromItems(j.GetLarg(), sc)
	if err != nil {
		return nil, err
	}
	// The right side of a join sees the left one only when lateral; the
	// scope with both is used for ON.
	mark := len(sc.items)
	sc.items = append(sc.items, left...)
	right, err := a.fromItems(j.GetRarg(), sc)
	sc.items = sc.items[:mark]
	if err != nil {
		return nil, err
	}
	if j.GetIsNatural() {
		for _, it := range append(append([]*item(nil), left...), right...) {
			if it.hasEncrypted() {
				return nil, refuse("", "NATURAL JOIN involving %s, which has encrypted columns, is not supported; name the join columns", it.describe())
			}
		}
	}
	merged, err := a.joinUsing(j.GetUsingClause(), left, right)
	if err != nil {
		return nil, err
	}
	both := append(append([]*item(nil), left...), right...)
	onScope := &scope{parent: sc.parent, ctes: sc.ctes, items: append(append([]*item(nil), sc.items...), both...)}
	if err := a.plain(j.GetQuals(), onScope, "JOIN … ON"); err != nil {
		return nil, err
	}
	if j.GetAlias() != nil {
		if len(j.GetAlias().GetColnames()) > 0 && len(merged) > 0 {
			// The merged columns reorder the join's columns; renaming them
			// by position is not modeled.
			for _, side := range both {
				if side.hasEncrypted() {
					return nil, refuse("", "column aliases on a JOIN … USING involving %s, which has encrypted columns, are not supported", side.describe())
				}
			}
		}
		it := &item{name: j.GetAlias().GetAliasname(), complete: true, cols: merged}
		for _, side := range both {
			it.cols = append(it.cols, side.cols...)
			it.complete = it.complete && side.complete
		}
		renamed, err := a.renameColumns(it, j.GetAlias().GetColnames())
		if err != nil {
			return nil, err
		}
		return []*item{renamed}, nil
	}
	if j.GetJoinUsingAlias() != nil {
		both = append(both, &item{name: j.GetJoinUsingAlias().GetAliasname(), cols: merged, complete: true})
	}
	return both, nil
}

// joinUsing checks JOIN … USING (c): both sides' c are compared for
// equality. It returns the merged columns.
func (a *analyzer) joinUsing(cols []*pg_query.Node, left, right []*item) ([]column, error) {
	var merged []column
	for _, c := range cols {
		name := c.GetString_().GetSval()
		l, r := findColumn(left, name), findColumn(right, name)
		if err := a.compareValues(l, r); err != nil {
			return nil, err
		}
		merged = append(merged, column{name: name, v: l})
	}
	return merged, nil
}

// findColumn looks a name up among items, an encrypted match first.
func findColumn(items []*item, name string) value {
	found := plainValue
	for _, it := range items {
		if v, ok := it.lookup(name); ok {
			if v.kind == valEnc {
				return v
			}
			found = v
		}
	}
	return found
}

// outputRef resolves a GROUP BY / ORDER BY / DISTINCT ON entry that refers
// to an output column by position or name.
func outputRef(n *pg_query.Node, sh *shape) (value, bool, error) {
	if c := n.GetAConst(); c != nil && c.GetIval() != nil {
		if !sh.complete && sh.hasEncrypted() {
			return plainValue, true, refuse("", "a column position over * of a relation with unknown columns cannot be checked")
		}
		i := int(c.GetIval().GetIval())
		if i >= 1 && i <= len(sh.cols) {
			return sh.cols[i-1].v, true, nil
		}
		return plainValue, true, nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.GetFields()) == 1 {
		name := cr.GetFields()[0].GetString_().GetSval()
		for _, c := range sh.cols {
			if c.name == name && c.v.kind == valEnc {
				return c.v, true, nil
			}
		}
	}
	return plainValue, false, nil
}

// groupingValue evaluates an entry of GROUP BY, DISTINCT ON or PARTITION
// BY: a bare ciphertext is allowed under a deterministic key (equal
// plaintexts, equal ciphertexts).
func (a *analyzer) groupingValue(n *pg_query.Node, sc *scope, sh *shape, what string) error {
	if gs := n.GetGroupingSet(); gs != nil {
		for _, c := range gs.GetContent() {
			if err := a.groupingValue(c, sc, sh, what); err != nil {
				return err
			}
		}
		return nil
	}
	out, ok, err := outputRef(n, sh)
	if err != nil {
		return err
	}
	if ok && out.kind == valEnc && !out.rule.Deterministic() {
		return refuse(out.rule.Name(), "%s on column %s, encrypted with a randomized key, is not possible", what, out.rule.Name())
	}
	if ok && out.kind == valEnc {
		a.comparedInDatabase(out.rule)
	}
	if n.GetAConst() != nil {
		return nil
	}
	v, err := a.expr(n, sc)
	if err != nil {
		return err
	}
	if v.kind == valEnc && !v.rule.Deterministic() {
		return refuse(v.rule.Name(), "%s on column %s, encrypted with a randomized key, is not possible", what, v.rule.Name())
	}
	if v.kind == valEnc {
		a.comparedInDatabase(v.rule)
	}
	a.flowOut(v)
	return nil
}

func (a *analyzer) groupClause(items []*pg_query.Node, sc *scope, sh *shape, what string) error {
	for _, n := range items {
		if err := a.groupingValue(n, sc, sh, what); err != nil {
			return err
		}
	}
	return nil
}

// distinctClause: DISTINCT compares whole output rows; DISTINCT ON its
// expressions.
func (a *analyzer) distinctClause(items []*pg_query.Node, sc *scope, sh *shape) error {
	if len(items) == 1 && items[0].GetNode() == nil {
		for _, c := range sh.cols {
			if c.v.kind == valEnc && !c.v.rule.Deterministic() {
				return refuse(c.v.rule.Name(), "DISTINCT on column %s, encrypted with a randomized key, is not possible", c.v.rule.Name())
			}
			if c.v.kind == valEnc {
				a.comparedInDatabase(c.v.rule)
			}
		}
		return nil
	}
	return a.groupClause(items, sc, sh, "DISTINCT ON")
}

// sortClause refuses ordering by a ciphertext: its order says nothing
// about the plaintexts'.
func (a *analyzer) sortClause(items []*pg_query.Node, sc *scope, sh *shape) error {
	for _, n := range items {
		sb := n.GetSortBy()
		if sb == nil {
			if err := a.plain(n, sc, "ORDER BY"); err != nil {
				return err
			}
			continue
		}
		out, ok, err := outputRef(sb.GetNode(), sh)
		if err != nil {
			return err
		}
		if ok && out.kind == valEnc {
			if err := a.sortValue(sb, out); err != nil {
				return err
			}
			if cr := sb.GetNode().GetColumnRef(); cr != nil {
				// PostgreSQL takes the name for the output column.
				a.seen[cr] = true
			}
			continue
		}
		if sb.GetNode().GetAConst() != nil {
			continue
		}
		v, err := a.expr(sb.GetNode(), sc)
		if err != nil {
			return err
		}
		if v.kind == valEnc {
			if err := a.sortValue(sb, v); err != nil {
				return err
			}
			continue
		}
		a.flowOut(v)
	}
	return nil
}

// plainSortKeys checks sort keys where no ciphertext may be sorted.
func (a *analyzer) plainSortKeys(items []*pg_query.Node, sc *scope, what string) error {
	for _, n := range items {
		if sb := n.GetSortBy(); sb != nil {
			n = sb.GetNode()
		}
		if err := a.plain(n, sc, what); err != nil {
			return err
		}
	}
	return nil
}

// sortValue allows sorting by a ciphertext under an ordered key, in its
// byte order (no USING operator: PostgreSQL's < on bytea is the order).
func (a *analyzer) sortValue(sb *pg_query.SortBy, v value) error {
	if !v.rule.Ordered() {
		return needsPlaintext("ORDER BY", v.rule)
	}
	if sb.GetSortbyDir() == pg_query.SortByDir_SORTBY_USING {
		return needsPlaintext("ORDER BY … USING", v.rule)
	}
	return a.sortsBy(v.rule, "ORDER BY")
}

// windowDef checks a window: PARTITION BY groups, ORDER BY sorts.
func (a *analyzer) windowDef(w *pg_query.WindowDef, sc *scope) error {
	if w == nil {
		return nil
	}
	// Window clauses see input columns only, never output positions.
	sh := &shape{}
	if err := a.groupClause(w.GetPartitionClause(), sc, sh, "PARTITION BY"); err != nil {
		return err
	}
	if err := a.sortClause(w.GetOrderClause(), sc, sh); err != nil {
		return err
	}
	if err := a.plain(w.GetStartOffset(), sc, "a window frame"); err != nil {
		return err
	}
	return a.plain(w.GetEndOffset(), sc, "a window frame")
}
