package sqlrewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// dml analyzes a data-modifying statement (top level or inside WITH) and
// returns what its RETURNING list outputs.
func (a *analyzer) dml(n *pg_query.Node, parent *scope) (*shape, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		return a.insertStmt(x.InsertStmt, parent)
	case *pg_query.Node_UpdateStmt:
		return a.updateStmt(x.UpdateStmt, parent)
	case *pg_query.Node_DeleteStmt:
		return a.deleteStmt(x.DeleteStmt, parent)
	case *pg_query.Node_SelectStmt:
		return a.selectStmt(x.SelectStmt, parent)
	case *pg_query.Node_MergeStmt:
		if err := a.refuseIfMentions(n, "MERGE"); err != nil {
			return nil, err
		}
		return &shape{}, nil
	}
	return nil, refuse("", "unsupported statement %s inside WITH", nodeName(n))
}

// targetCol is a column a statement stores into; rule is nil for a plain
// column.
type targetCol struct {
	name string
	rel  *item
	rule *policy.ColumnRule
}

func (t targetCol) describe() string {
	if t.rel == nil {
		return t.name
	}
	return t.rel.describe() + "." + t.name
}

// assign applies the storing rules: an encrypted column receives a
// constant or parameter (encrypted by the proxy), NULL, DEFAULT, or a
// ciphertext of the same key; a plain column never receives a ciphertext.
func (a *analyzer) assign(t targetCol, v value) error {
	if t.rule == nil {
		if v.kind == valEnc {
			return refuse(v.rule.Name(), "encrypted column %s cannot be stored in plain column %s", v.rule.Name(), t.describe())
		}
		a.flowOut(v)
		return nil
	}
	if v.kind != valDefault {
		a.wrote(t.rule)
	}
	switch v.kind {
	case valLit:
		return a.encryptLiteral(v, t.rule, true, false)
	case valParam:
		return a.encryptParam(v, t.rule, true, false)
	case valNull:
		return a.dropNullCast(v)
	case valDefault:
		return nil
	case valEnc:
		if !t.rule.Interchangeable(v.rule) {
			return refuse(t.rule.Name(), "copying encrypted column %s into %s is not possible: their ciphertexts are bound to different keys or columns", v.rule.Name(), t.rule.Name())
		}
		a.copied(v.rule)
		return nil
	}
	return refuse(t.rule.Name(), "column %s is encrypted: it can only be assigned a constant, a parameter, NULL, DEFAULT or a column encrypted under the same key", t.rule.Name())
}

// targetColumn finds the column an INSERT or SET names.
func (a *analyzer) targetColumn(target *item, name string, indirection []*pg_query.Node, sc *scope) (targetCol, error) {
	t := targetCol{name: name, rel: target}
	if target.rel != nil {
		t.rule = target.rel.Encrypted[name]
	}
	if len(indirection) > 0 {
		if t.rule != nil {
			return t, needsPlaintext("assigning to a subscript or field", t.rule)
		}
		if err := a.plainList(indirection, sc, "a subscript"); err != nil {
			return t, err
		}
	}
	return t, nil
}

func (a *analyzer) insertStmt(s *pg_query.InsertStmt, parent *scope) (*shape, error) {
	sc := &scope{parent: parent}
	if err := a.withClause(s.GetWithClause(), sc); err != nil {
		return nil, err
	}
	target, err := a.rangeVar(s.GetRelation(), sc, false)
	if err != nil {
		return nil, err
	}
	// VALUES rows and the SELECT do not see the target table.
	var src *shape
	if sel := s.GetSelectStmt(); sel != nil {
		if src, err = a.subquery(sel, sc); err != nil {
			return nil, err
		}
	}
	targets, err := a.insertTargets(s, target, src, sc)
	if err != nil {
		return nil, err
	}
	if err := a.assignShape(targets, src); err != nil {
		return nil, err
	}
	if err := a.onConflict(s.GetOnConflictClause(), target, sc); err != nil {
		return nil, err
	}
	return a.returning(s.GetReturningList(), &scope{parent: sc.parent, ctes: sc.ctes, items: []*item{target}})
}

// insertTargets returns the target columns in order. Without a column
// list the relation's column order decides, and the proxy writes that
// list into the statement so that PostgreSQL rejects it if the list is
// stale rather than storing a value in the wrong column.
func (a *analyzer) insertTargets(s *pg_query.InsertStmt, target *item, src *shape, sc *scope) ([]targetCol, error) {
	var out []targetCol
	for _, c := range s.GetCols() {
		rt := c.GetResTarget()
		t, err := a.targetColumn(target, rt.GetName(), rt.GetIndirection(), sc)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(s.GetCols()) > 0 || target.rel == nil || src == nil {
		return out, nil
	}
	rel := target.rel
	if rel.Columns == nil {
		return nil, refuse("", "INSERT into %s.%s needs a column list: its columns are unknown", rel.Schema, rel.Name)
	}
	if !src.complete {
		return nil, refuse("", "INSERT into %s.%s needs a column list: the values come from * of a relation with unknown columns", rel.Schema, rel.Name)
	}
	n := min(len(src.cols), len(rel.Columns))
	if n == 0 {
		// INSERT … SELECT with an empty target list stores nothing.
		return out, nil
	}
	names := make([]string, n)
	for i := 0; i < n; i++ {
		names[i] = quoteIdent(rel.Columns[i])
		out = append(out, targetCol{name: rel.Columns[i], rel: target, rule: rel.Encrypted[rel.Columns[i]]})
	}
	pos, err := a.relationNameEnd(s.GetRelation().GetLocation(), s.GetRelation().GetAlias() != nil)
	if err != nil {
		return nil, err
	}
	return out, a.addEdit(Edit{Start: pos, End: pos, Text: " (" + strings.Join(names, ", ") + ")"})
}

// assignShape stores a source's columns into targets by position.
func (a *analyzer) assignShape(targets []targetCol, src *shape) error {
	if src == nil {
		return nil
	}
	if !src.complete {
		for _, t := range targets {
			if t.rule != nil {
				return refuse(t.rule.Name(), "the value for encrypted column %s comes from * of a relation with unknown columns", t.rule.Name())
			}
		}
	}
	for i, c := range src.cols {
		t := targetCol{name: c.name}
		if i < len(targets) {
			t = targets[i]
		}
		for _, l := range c.leaves {
			if err := checkComparedConstant(t, c, l); err != nil {
				return err
			}
			if err := a.assign(t, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkComparedConstant refuses a constant or parameter bound for a
// randomized column that the source query compares with other values:
// each is encrypted on its own, so equal plaintexts would differ there
// (SELECT 'x' UNION SELECT 'x' would keep two rows).
func checkComparedConstant(t targetCol, c outCol, l value) error {
	if t.rule == nil || t.rule.Deterministic() || !c.compared || (l.kind != valLit && l.kind != valParam) {
		return nil
	}
	return refuse(t.rule.Name(), "column %s is encrypted with a randomized key: the constants and parameters for it cannot be compared by UNION, INTERSECT, EXCEPT, DISTINCT or GROUP BY (each is encrypted on its own); use UNION ALL or insert the rows separately", t.rule.Name())
}

func (a *analyzer) onConflict(oc *pg_query.OnConflictClause, target *item, sc *scope) error {
	if oc == nil {
		return nil
	}
	tscope := &scope{parent: sc.parent, ctes: sc.ctes, items: []*item{target}}
	if inf := oc.GetInfer(); inf != nil {
		for _, e := range inf.GetIndexElems() {
			if err := a.indexElem(e.GetIndexElem(), tscope, "ON CONFLICT"); err != nil {
				return err
			}
		}
		if err := a.plain(inf.GetWhereClause(), tscope, "ON CONFLICT … WHERE"); err != nil {
			return err
		}
	}
	if oc.GetAction() != pg_query.OnConflictAction_ONCONFLICT_UPDATE {
		return nil
	}
	excluded := &item{name: "excluded", rel: target.rel, cols: target.cols, complete: target.complete}
	uscope := &scope{parent: sc.parent, ctes: sc.ctes, items: []*item{target, excluded}}
	if err := a.setList(oc.GetTargetList(), target, uscope); err != nil {
		return err
	}
	return a.plain(oc.GetWhereClause(), uscope, "ON CONFLICT … WHERE")
}

// indexElem checks a column of an index or conflict target: a bare
// encrypted column is fine under a deterministic key (equal plaintexts,
// equal ciphertexts); expressions, operator classes and collations on it
// are not.
func (a *analyzer) indexElem(ie *pg_query.IndexElem, sc *scope, what string) error {
	_, err := a.indexColumn(ie, sc, what)
	return err
}

// indexColumn is indexElem returning the column's value.
func (a *analyzer) indexColumn(ie *pg_query.IndexElem, sc *scope, what string) (value, error) {
	if ie == nil {
		return plainValue, refuse("", "unsupported %s entry", what)
	}
	var v value
	if ie.GetName() != "" {
		v = findColumn(sc.items, ie.GetName())
	} else {
		var err error
		if v, err = a.expr(ie.GetExpr(), sc); err != nil {
			return v, err
		}
	}
	if v.kind != valEnc {
		a.flowOut(v)
		return v, nil
	}
	if !v.rule.Deterministic() {
		return v, refuse(v.rule.Name(), "%s on column %s, encrypted with a randomized key, is not possible", what, v.rule.Name())
	}
	if len(ie.GetOpclass()) > 0 || len(ie.GetCollation()) > 0 {
		return v, needsPlaintext("an operator class or collation", v.rule)
	}
	return v, nil
}

// setList analyzes SET assignments of UPDATE and ON CONFLICT DO UPDATE.
func (a *analyzer) setList(targets []*pg_query.Node, target *item, sc *scope) error {
	for _, n := range targets {
		rt := n.GetResTarget()
		if rt == nil {
			return refuse("", "unsupported SET entry")
		}
		t, err := a.targetColumn(target, rt.GetName(), rt.GetIndirection(), sc)
		if err != nil {
			return err
		}
		leaves, err := a.setValue(rt.GetVal(), sc)
		if err != nil {
			return err
		}
		for _, v := range leaves {
			if err := a.assign(t, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// setValue returns the value(s) one SET target receives, picking its
// element out of SET (a, b) = (x, y) or = (SELECT x, y …).
func (a *analyzer) setValue(n *pg_query.Node, sc *scope) ([]value, error) {
	mar := n.GetMultiAssignRef()
	if mar == nil {
		v, err := a.expr(n, sc)
		return []value{v}, err
	}
	// Every target of SET (a, b) = … carries its own copy of the source
	// (the parse tree is a protobuf): each target evaluates its element of
	// the row, or the first analyzes the subquery; the rest of each copy
	// is a duplicate of what another target analyzes.
	i := int(mar.GetColno()) - 1
	if row := mar.GetSource().GetRowExpr(); row != nil {
		if i < 0 || i >= len(row.GetArgs()) {
			return nil, refuse("", "malformed multiple-column assignment")
		}
		for j, arg := range row.GetArgs() {
			if j != i {
				a.markSeen(arg)
			}
		}
		v, err := a.expr(row.GetArgs()[i], sc)
		return []value{v}, err
	}
	sl := mar.GetSource().GetSubLink()
	if sl == nil {
		return nil, refuse("", "unsupported multiple-column assignment")
	}
	sh, ok := a.subShapes[sl.GetLocation()]
	if ok {
		a.markSeen(sl.GetSubselect())
	} else {
		var err error
		if sh, err = a.subquery(sl.GetSubselect(), sc); err != nil {
			return nil, err
		}
		a.subShapes[sl.GetLocation()] = sh
	}
	if !sh.complete && sh.hasEncrypted() {
		return nil, refuse("", "multiple-column assignment from * of a relation with unknown columns cannot be checked")
	}
	if i < 0 || i >= len(sh.cols) {
		return []value{plainValue}, nil
	}
	return sh.cols[i].leaves, nil
}

func (a *analyzer) updateStmt(s *pg_query.UpdateStmt, parent *scope) (*shape, error) {
	sc := &scope{parent: parent}
	if err := a.withClause(s.GetWithClause(), sc); err != nil {
		return nil, err
	}
	target, err := a.rangeVar(s.GetRelation(), sc, false)
	if err != nil {
		return nil, err
	}
	sc.items = append(sc.items, target)
	for _, f := range s.GetFromClause() {
		if err := a.fromItem(f, sc); err != nil {
			return nil, err
		}
	}
	if err := a.setList(s.GetTargetList(), target, sc); err != nil {
		return nil, err
	}
	if err := a.plain(s.GetWhereClause(), sc, "WHERE"); err != nil {
		return nil, err
	}
	return a.returning(s.GetReturningList(), sc)
}

func (a *analyzer) deleteStmt(s *pg_query.DeleteStmt, parent *scope) (*shape, error) {
	sc := &scope{parent: parent}
	if err := a.withClause(s.GetWithClause(), sc); err != nil {
		return nil, err
	}
	target, err := a.rangeVar(s.GetRelation(), sc, false)
	if err != nil {
		return nil, err
	}
	sc.items = append(sc.items, target)
	for _, f := range s.GetUsingClause() {
		if err := a.fromItem(f, sc); err != nil {
			return nil, err
		}
	}
	if err := a.plain(s.GetWhereClause(), sc, "WHERE"); err != nil {
		return nil, err
	}
	return a.returning(s.GetReturningList(), sc)
}

func (a *analyzer) returning(list []*pg_query.Node, sc *scope) (*shape, error) {
	if len(list) == 0 {
		return &shape{complete: true}, nil
	}
	return a.targetList(list, sc)
}

// markSeen marks the column references of a duplicate subtree as checked.
func (a *analyzer) markSeen(n *pg_query.Node) {
	forEachColumnRef(n, func(cr *pg_query.ColumnRef) { a.seen[cr] = true })
}
