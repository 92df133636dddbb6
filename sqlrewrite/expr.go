package sqlrewrite

import (
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// valueKind says what an expression yields as far as encryption matters.
type valueKind uint8

const (
	valPlain   valueKind = iota // no ciphertext: a plain column or a computed value
	valEnc                      // the ciphertext of an encrypted column (rule)
	valLit                      // a constant the proxy could encrypt (node)
	valNull                     // NULL
	valParam                    // a bind parameter $n, possibly cast (node)
	valDefault                  // DEFAULT in VALUES or SET
)

// value is the kind of an expression. There is no "tainted" kind: an
// expression computed from a ciphertext is refused where it is built.
type value struct {
	kind  valueKind
	rule  *policy.ColumnRule
	node  *pg_query.Node // the constant or parameter expression (valLit, valParam)
	param int32
	// scalar marks a ciphertext that comes out of a scalar subquery:
	// PostgreSQL reports no table column of origin for it.
	scalar bool
}

var plainValue = value{kind: valPlain}

// flowOut is called where a value leaves the analysis as plain data: a
// parameter there is a plain parameter. Ciphertexts pass unchanged.
func (a *analyzer) flowOut(v value) value {
	switch v.kind {
	case valParam:
		a.params.usePlain(v.param)
		return plainValue
	case valLit, valDefault:
		return plainValue
	}
	return v
}

// plain evaluates n where no ciphertext may appear.
func (a *analyzer) plain(n *pg_query.Node, sc *scope, what string) error {
	if n == nil {
		return nil
	}
	v, err := a.expr(n, sc)
	if err != nil {
		return err
	}
	return a.requirePlain(v, what)
}

func (a *analyzer) requirePlain(v value, what string) error {
	if v.kind == valEnc {
		return needsPlaintext(what, v.rule)
	}
	a.flowOut(v)
	return nil
}

func (a *analyzer) plainList(ns []*pg_query.Node, sc *scope, what string) error {
	for _, n := range ns {
		if err := a.plain(n, sc, what); err != nil {
			return err
		}
	}
	return nil
}

func needsPlaintext(what string, r *policy.ColumnRule) *Error {
	return refuse(r.Name(), "%s on encrypted column %s needs its plaintext inside PostgreSQL", what, r.Name())
}

// expr returns the kind of value n yields, refusing any computation on a
// ciphertext. Constants and parameters are returned unedited: only the
// context (a comparison, an assignment) knows whether they need encrypting.
func (a *analyzer) expr(n *pg_query.Node, sc *scope) (value, error) {
	if n == nil {
		return plainValue, nil
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		return a.columnRef(x.ColumnRef, sc)
	case *pg_query.Node_AConst:
		if x.AConst.GetIsnull() {
			return value{kind: valNull}, nil
		}
		return value{kind: valLit, node: n}, nil
	case *pg_query.Node_ParamRef:
		return value{kind: valParam, node: n, param: x.ParamRef.GetNumber()}, nil
	case *pg_query.Node_TypeCast:
		return a.typeCast(n, x.TypeCast, sc)
	case *pg_query.Node_AExpr:
		return a.aExpr(n, x.AExpr, sc)
	case *pg_query.Node_BoolExpr:
		return plainValue, a.plainList(x.BoolExpr.GetArgs(), sc, "a boolean operator")
	case *pg_query.Node_NullTest:
		return a.nullTest(x.NullTest, sc)
	case *pg_query.Node_BooleanTest:
		return plainValue, a.plain(x.BooleanTest.GetArg(), sc, "IS TRUE/FALSE/UNKNOWN")
	case *pg_query.Node_FuncCall:
		return a.funcCall(x.FuncCall, sc)
	case *pg_query.Node_SubLink:
		return a.subLink(x.SubLink, sc)
	case *pg_query.Node_CaseExpr:
		return a.caseExpr(x.CaseExpr, sc)
	case *pg_query.Node_CoalesceExpr:
		return plainValue, a.plainList(x.CoalesceExpr.GetArgs(), sc, "COALESCE")
	case *pg_query.Node_MinMaxExpr:
		return plainValue, a.plainList(x.MinMaxExpr.GetArgs(), sc, "GREATEST/LEAST")
	case *pg_query.Node_AArrayExpr:
		return plainValue, a.plainList(x.AArrayExpr.GetElements(), sc, "an ARRAY constructor")
	case *pg_query.Node_RowExpr:
		return plainValue, a.plainList(x.RowExpr.GetArgs(), sc, "a ROW constructor")
	case *pg_query.Node_CollateClause:
		return plainValue, a.plain(x.CollateClause.GetArg(), sc, "COLLATE")
	case *pg_query.Node_AIndirection:
		return a.indirection(x.AIndirection, sc)
	case *pg_query.Node_NamedArgExpr:
		return a.expr(x.NamedArgExpr.GetArg(), sc)
	case *pg_query.Node_SetToDefault:
		return value{kind: valDefault}, nil
	case *pg_query.Node_SqlvalueFunction, *pg_query.Node_CurrentOfExpr:
		return plainValue, nil
	case *pg_query.Node_String_, *pg_query.Node_Integer, *pg_query.Node_Float,
		*pg_query.Node_Boolean, *pg_query.Node_BitString:
		return plainValue, nil
	case *pg_query.Node_List:
		return plainValue, a.plainList(x.List.GetItems(), sc, "a list")
	case *pg_query.Node_SelectStmt:
		sh, err := a.selectStmt(x.SelectStmt, sc)
		if err != nil {
			return plainValue, err
		}
		return plainValue, a.discardShape(sh)
	case *pg_query.Node_RangeVar:
		it, err := a.rangeVar(x.RangeVar, sc, true)
		if err != nil {
			return plainValue, err
		}
		if it.hasEncrypted() {
			return plainValue, refuse("", "unsupported use of relation %s, which has encrypted columns", it.describe())
		}
		return plainValue, nil
	}
	return plainValue, a.opaque(n, sc)
}

// opaque handles node types the analysis does not model: every expression
// inside is evaluated and none may carry a ciphertext.
func (a *analyzer) opaque(n *pg_query.Node, sc *scope) error {
	what := nodeName(n)
	return eachChildNode(n, func(c *pg_query.Node) error {
		return a.plain(c, sc, what)
	})
}

// discardShape drops a subquery's output where it is not used (EXISTS):
// ciphertexts may go there, parameters are plain.
func (a *analyzer) discardShape(sh *shape) error {
	for _, c := range sh.cols {
		for _, l := range c.leaves {
			a.flowOut(l)
		}
	}
	return nil
}

func (a *analyzer) typeCast(n *pg_query.Node, tc *pg_query.TypeCast, sc *scope) (value, error) {
	v, err := a.expr(tc.GetArg(), sc)
	if err != nil {
		return v, err
	}
	switch v.kind {
	case valEnc:
		return v, needsPlaintext("a cast", v.rule)
	case valLit:
		return value{kind: valLit, node: n}, nil
	case valParam:
		return value{kind: valParam, node: n, param: v.param}, nil
	case valNull:
		// NULL::text next to a bytea column is a type error in
		// PostgreSQL; the cast is dropped where the NULL meets one.
		return value{kind: valNull, node: n}, nil
	}
	return plainValue, nil
}

// dropNullCast turns a typed NULL that meets a ciphertext into a bare NULL.
func (a *analyzer) dropNullCast(v value) error {
	if v.node.GetTypeCast() == nil {
		return nil
	}
	sp, err := a.valueSpan(v.node)
	if err != nil {
		return err
	}
	return a.addEdit(Edit{Start: sp.start, End: sp.end, Text: "NULL"})
}

func (a *analyzer) nullTest(nt *pg_query.NullTest, sc *scope) (value, error) {
	if row := nt.GetArg().GetRowExpr(); row != nil {
		// ROW(a, b) IS NULL tests every field; each may be a ciphertext.
		for _, f := range row.GetArgs() {
			if _, err := a.neutral(f, sc); err != nil {
				return plainValue, err
			}
		}
		return plainValue, nil
	}
	_, err := a.neutral(nt.GetArg(), sc)
	return plainValue, err
}

// neutral evaluates an operand of IS [NOT] NULL: a ciphertext is fine, and
// a parameter there is neither plain nor encrypted (NULL stays NULL).
func (a *analyzer) neutral(n *pg_query.Node, sc *scope) (value, error) {
	return a.expr(n, sc)
}

func (a *analyzer) indirection(ind *pg_query.A_Indirection, sc *scope) (value, error) {
	if err := a.plain(ind.GetArg(), sc, "a subscript or field selection"); err != nil {
		return plainValue, err
	}
	for _, i := range ind.GetIndirection() {
		if idx := i.GetAIndices(); idx != nil {
			if err := a.plain(idx.GetLidx(), sc, "a subscript"); err != nil {
				return plainValue, err
			}
			if err := a.plain(idx.GetUidx(), sc, "a subscript"); err != nil {
				return plainValue, err
			}
		}
	}
	return plainValue, nil
}

func (a *analyzer) caseExpr(ce *pg_query.CaseExpr, sc *scope) (value, error) {
	if err := a.plain(ce.GetArg(), sc, "CASE"); err != nil {
		return plainValue, err
	}
	for _, w := range ce.GetArgs() {
		cw := w.GetCaseWhen()
		if cw == nil {
			if err := a.plain(w, sc, "CASE"); err != nil {
				return plainValue, err
			}
			continue
		}
		// The condition is a predicate like WHERE; the result is a value.
		if err := a.plain(cw.GetExpr(), sc, "CASE WHEN"); err != nil {
			return plainValue, err
		}
		if err := a.plain(cw.GetResult(), sc, "CASE"); err != nil {
			return plainValue, err
		}
	}
	return plainValue, a.plain(ce.GetDefresult(), sc, "CASE")
}

// opName returns an operator's name, "" when it is schema-qualified to
// something other than pg_catalog (a user operator could do anything).
func opName(names []*pg_query.Node) string {
	switch len(names) {
	case 1:
		return names[0].GetString_().GetSval()
	case 2:
		if names[0].GetString_().GetSval() == "pg_catalog" {
			return names[1].GetString_().GetSval()
		}
	}
	return ""
}

func (a *analyzer) aExpr(n *pg_query.Node, e *pg_query.A_Expr, sc *scope) (value, error) {
	op := opName(e.GetName())
	switch e.GetKind() {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if e.GetLexpr() == nil {
			return a.prefixOp(n, e, op, sc)
		}
		switch op {
		case "=":
			return plainValue, a.comparison(e, cmpEqual, []*pg_query.Node{e.GetRexpr()}, sc)
		case "<>":
			return plainValue, a.comparison(e, cmpNotEqual, []*pg_query.Node{e.GetRexpr()}, sc)
		}
		if o, ok := inequalityOps[op]; ok && len(e.GetName()) == 1 {
			return plainValue, a.inequality(e, op, o, sc)
		}
		return plainValue, a.operands(e, sc, "operator "+displayOp(op))
	case pg_query.A_Expr_Kind_AEXPR_DISTINCT:
		return plainValue, a.comparison(e, cmpDistinct, []*pg_query.Node{e.GetRexpr()}, sc)
	case pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		return plainValue, a.comparison(e, cmpNotDistinct, []*pg_query.Node{e.GetRexpr()}, sc)
	case pg_query.A_Expr_Kind_AEXPR_IN:
		switch op {
		case "=":
			return plainValue, a.comparison(e, cmpEqual, e.GetRexpr().GetList().GetItems(), sc)
		case "<>":
			return plainValue, a.comparison(e, cmpNotEqual, e.GetRexpr().GetList().GetItems(), sc)
		}
		return plainValue, a.operands(e, sc, "IN")
	case pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
		return plainValue, a.anyArray(e, op, sc)
	case pg_query.A_Expr_Kind_AEXPR_LIKE:
		return plainValue, a.operands(e, sc, "LIKE")
	case pg_query.A_Expr_Kind_AEXPR_ILIKE:
		return plainValue, a.operands(e, sc, "ILIKE")
	case pg_query.A_Expr_Kind_AEXPR_SIMILAR:
		return plainValue, a.operands(e, sc, "SIMILAR TO")
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return plainValue, a.between(e, sc)
	case pg_query.A_Expr_Kind_AEXPR_NULLIF:
		return plainValue, a.operands(e, sc, "NULLIF")
	}
	return plainValue, a.operands(e, sc, "operator "+displayOp(op))
}

func displayOp(op string) string {
	if op == "" {
		return "(qualified)"
	}
	return op
}

// operands evaluates both sides where no ciphertext may appear.
func (a *analyzer) operands(e *pg_query.A_Expr, sc *scope, what string) error {
	if err := a.plain(e.GetLexpr(), sc, what); err != nil {
		return err
	}
	return a.plain(e.GetRexpr(), sc, what)
}

// prefixOp handles -x and +x: on a constant the result is still a
// constant (the parser folds most of these, not "- 5::int").
func (a *analyzer) prefixOp(n *pg_query.Node, e *pg_query.A_Expr, op string, sc *scope) (value, error) {
	v, err := a.expr(e.GetRexpr(), sc)
	if err != nil {
		return v, err
	}
	if v.kind == valEnc {
		return v, needsPlaintext("operator "+displayOp(op), v.rule)
	}
	if v.kind == valLit && (op == "-" || op == "+") {
		return value{kind: valLit, node: n}, nil
	}
	a.flowOut(v)
	return plainValue, nil
}

// anyArray handles x = ANY(ARRAY[…]) and x <> ALL(ARRAY[…]) like IN lists,
// and x = ANY(v) and x <> ALL(v) with an array parameter or constant v.
func (a *analyzer) anyArray(e *pg_query.A_Expr, op string, sc *scope) error {
	arr := e.GetRexpr().GetAArrayExpr()
	all := e.GetKind() == pg_query.A_Expr_Kind_AEXPR_OP_ALL
	kind := cmpEqual // = ANY
	switch {
	case op == "=" && all:
		kind = cmpEqualAll
	case op == "<>" && all:
		kind = cmpNotEqual
	case op == "<>":
		kind = cmpNotEqualAny
	}
	if arr == nil && (op == "=" || op == "<>") && (isParamExpr(e.GetRexpr()) || isArrayConst(e.GetRexpr())) {
		return a.arrayComparison(e, kind, sc)
	}
	if arr == nil || (op != "=" && op != "<>") {
		what := "ANY/ALL"
		l, err := a.expr(e.GetLexpr(), sc)
		if err != nil {
			return err
		}
		if l.kind == valEnc {
			if op == "=" || op == "<>" {
				return refuse(l.rule.Name(), "comparing encrypted column %s with an array value is not supported; use IN (…), an ARRAY[…] of constants or an array parameter", l.rule.Name())
			}
			return needsPlaintext(what, l.rule)
		}
		a.flowOut(l)
		return a.plain(e.GetRexpr(), sc, what)
	}
	return a.comparison(e, kind, arr.GetElements(), sc)
}

// isParamExpr reports whether n is a parameter, possibly cast.
func isParamExpr(n *pg_query.Node) bool {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	return n.GetParamRef() != nil
}

// compareNodes handles an equality-like comparison l op r, row-wise for
// (a, b) = (x, y).
func (a *analyzer) compareNodes(l, r *pg_query.Node, sc *scope) error {
	lr, rr := l.GetRowExpr(), r.GetRowExpr()
	if lr != nil && rr != nil && len(lr.GetArgs()) == len(rr.GetArgs()) {
		for i := range lr.GetArgs() {
			if err := a.compareNodes(lr.GetArgs()[i], rr.GetArgs()[i], sc); err != nil {
				return err
			}
		}
		return nil
	}
	lv, err := a.expr(l, sc)
	if err != nil {
		return err
	}
	rv, err := a.expr(r, sc)
	if err != nil {
		return err
	}
	return a.compareValues(lv, rv)
}

// compareValues applies the equality rules: a ciphertext may be compared
// only under a deterministic key, and only with a constant or parameter
// (encrypted by the proxy), NULL, or a ciphertext of the same key.
func (a *analyzer) compareValues(l, r value) error {
	if l.kind != valEnc && r.kind == valEnc {
		l, r = r, l
	}
	if l.kind != valEnc {
		a.flowOut(l)
		a.flowOut(r)
		return nil
	}
	if !l.rule.Deterministic() {
		return randomizedEquality(l.rule)
	}
	switch r.kind {
	case valEnc:
		if !l.rule.Interchangeable(r.rule) {
			return refuse(l.rule.Name(), "encrypted columns %s and %s use different keys: comparing them is not possible", l.rule.Name(), r.rule.Name())
		}
		a.comparedInDatabase(l.rule)
		a.comparedInDatabase(r.rule)
		return nil
	case valLit:
		return a.encryptLiteral(r, l.rule, false, true)
	case valParam:
		return a.encryptParam(r, l.rule, false, true)
	case valNull:
		return a.dropNullCast(r)
	}
	return refuse(l.rule.Name(), "comparing encrypted column %s with a plain or computed value needs its plaintext inside PostgreSQL", l.rule.Name())
}

func randomizedEquality(r *policy.ColumnRule) *Error {
	return refuse(r.Name(), "column %s is encrypted with a randomized key: equality comparison is not possible", r.Name())
}

// encryptLiteral records the edit that replaces a constant with its
// ciphertext under rule; compared marks one compared as that single
// ciphertext (see Literal.Compared).
func (a *analyzer) encryptLiteral(v value, rule *policy.ColumnRule, write, compared bool) error {
	lit, err := a.newLiteral(v.node, rule)
	if err != nil {
		return err
	}
	sp, err := a.valueSpan(v.node)
	if err != nil {
		return err
	}
	if !write {
		a.searched(rule)
	}
	lit.Write, lit.Compared = write, compared
	return a.addEdit(Edit{Start: sp.start, End: sp.end, Literal: lit})
}

// encryptParam records that $n carries a value of rule; a cast on it is
// removed, since the parameter becomes bytea.
func (a *analyzer) encryptParam(v value, rule *policy.ColumnRule, write, compared bool) error {
	if err := a.params.use(v.param, rule, write); err != nil {
		return err
	}
	if compared {
		a.params.rules[v.param-1].Compared = true
	}
	if !write {
		a.searched(rule)
	}
	if err := a.paramCasts(v.node, v.param, rule); err != nil {
		return err
	}
	if v.node.GetTypeCast() == nil {
		return nil
	}
	sp, err := a.valueSpan(v.node)
	if err != nil {
		return err
	}
	return a.addEdit(Edit{Start: sp.start, End: sp.end, Text: "$" + strconv.Itoa(int(v.param))})
}

// literalValue is the constant as PostgreSQL would read it.
func (a *analyzer) literalValue(n *pg_query.Node, rule *policy.ColumnRule) (string, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_AConst:
		return constText(x.AConst, rule)
	case *pg_query.Node_TypeCast:
		return a.literalValue(x.TypeCast.GetArg(), rule)
	case *pg_query.Node_AExpr:
		// A sign applies to a number or to a constant cast to a type, not
		// to an untyped string.
		inner := x.AExpr.GetRexpr()
		v, err := a.literalValue(inner, rule)
		if err != nil {
			return "", err
		}
		if _, err := strconv.ParseFloat(v, 64); err != nil || !isNumericText(v) || inner.GetAConst().GetSval() != nil {
			return "", refuse(rule.Name(), "a sign on a non-numeric constant cannot be used with encrypted column %s", rule.Name())
		}
		if opName(x.AExpr.GetName()) == "-" {
			return negate(v), nil
		}
		return v, nil
	}
	return "", refuse(rule.Name(), "unsupported constant for encrypted column %s", rule.Name())
}

func isNumericText(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == '.')
}

func negate(v string) string {
	if strings.HasPrefix(v, "-") {
		return v[1:]
	}
	return "-" + v
}

func constText(c *pg_query.A_Const, rule *policy.ColumnRule) (string, error) {
	switch v := c.GetVal().(type) {
	case *pg_query.A_Const_Ival:
		return strconv.Itoa(int(v.Ival.GetIval())), nil
	case *pg_query.A_Const_Fval:
		return v.Fval.GetFval(), nil
	case *pg_query.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.GetBoolval()), nil
	case *pg_query.A_Const_Sval:
		return v.Sval.GetSval(), nil
	}
	return "", refuse(rule.Name(), "bit-string constants cannot be used with encrypted column %s", rule.Name())
}

// castChain returns the casts written on a constant or parameter,
// innermost first. A cast to a type the proxy cannot convert to (an
// array, a domain, a type it has no conversion for) is refused.
func castChain(n *pg_query.Node, rule *policy.ColumnRule) ([]Cast, error) {
	var casts []Cast
	for tc := n.GetTypeCast(); tc != nil; tc = tc.GetArg().GetTypeCast() {
		c, ok := castTarget(tc.GetTypeName())
		if !ok {
			return nil, refuse(rule.Name(), "a cast to %s cannot be used with encrypted column %s", typeNameText(tc.GetTypeName()), rule.Name())
		}
		casts = append(casts, c)
	}
	slices.Reverse(casts)
	return casts, nil
}

// castTarget resolves a cast's type to a built-in type the proxy
// converts values to.
func castTarget(tn *pg_query.TypeName) (Cast, bool) {
	parts := typeNameParts(tn)
	if len(tn.GetArrayBounds()) > 0 || len(parts) == 0 || len(parts) > 2 || tn.GetSetof() || tn.GetPctType() {
		return Cast{}, false
	}
	if len(parts) == 2 && parts[0] != "pg_catalog" {
		return Cast{}, false
	}
	t, ok := castType(parts[len(parts)-1])
	if !ok {
		return Cast{}, false
	}
	c := Cast{OID: t.OID()}
	for _, m := range tn.GetTypmods() {
		ic := m.GetAConst().GetIval()
		if ic == nil {
			return Cast{}, false
		}
		c.Mods = append(c.Mods, ic.GetIval())
	}
	return c, true
}

// castType is the registered type a cast names, by the name PostgreSQL's
// parser leaves in a TypeName: the typname (integer and int arrive as
// pg_catalog.int4, char as pg_catalog.bpchar). A quoted name is taken as
// written, as PostgreSQL does: "integer" is no type, and "char" is
// PostgreSQL's one-byte type, not bpchar; neither is registered.
func castType(name string) (policy.PGType, bool) {
	return policy.LookupTypname(name)
}

// literalSource is what PostgreSQL takes a constant as: the type of the
// constant itself (after make_const's rules) and the casts on it.
func (a *analyzer) literalSource(n *pg_query.Node, rule *policy.ColumnRule) (ValueSource, error) {
	casts, err := castChain(n, rule)
	if err != nil {
		return ValueSource{}, err
	}
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	if e := n.GetAExpr(); e != nil {
		n = e.GetRexpr()
		for n.GetTypeCast() != nil {
			n = n.GetTypeCast().GetArg()
		}
	}
	src := ValueSource{OID: policy.PGUnknown.OID(), Casts: casts}
	switch v := n.GetAConst().GetVal().(type) {
	case *pg_query.A_Const_Ival:
		src.OID = policy.PGInt4.OID()
	case *pg_query.A_Const_Fval:
		src.OID = numberConstOID(v.Fval.GetFval())
	case *pg_query.A_Const_Boolval:
		src.OID = policy.PGBool.OID()
	}
	return src, nil
}

// numberConstOID is make_const's type for a number that is not a small
// integer: int4 or int8 if it is an integer that fits, numeric otherwise.
func numberConstOID(s string) uint32 {
	v, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		return policy.PGNumeric.OID()
	case v == int64(int32(v)):
		return policy.PGInt4.OID()
	}
	return policy.PGInt8.OID()
}

// newLiteral is the constant n bound for rule's column.
func (a *analyzer) newLiteral(n *pg_query.Node, rule *policy.ColumnRule) (*Literal, error) {
	val, err := a.literalValue(n, rule)
	if err != nil {
		return nil, err
	}
	src, err := a.literalSource(n, rule)
	if err != nil {
		return nil, err
	}
	return &Literal{Rule: rule, Value: val, Source: src}, nil
}

// paramCasts records the casts written on parameter $n. A parameter cast
// differently in two places is refused: its value would stand for two.
func (a *analyzer) paramCasts(n *pg_query.Node, param int32, rule *policy.ColumnRule) error {
	casts, err := castChain(n, rule)
	if err != nil {
		return err
	}
	pr := a.params.rules[param-1]
	if pr.castsSet && !slices.EqualFunc(pr.Casts, casts, Cast.equal) {
		return refuse(rule.Name(), "parameter $%d is cast differently where it is used with encrypted column %s", param, rule.Name())
	}
	pr.Casts, pr.castsSet = casts, true
	return nil
}

func (c Cast) equal(d Cast) bool { return c.OID == d.OID && slices.Equal(c.Mods, d.Mods) }

func typeNameParts(tn *pg_query.TypeName) []string {
	var out []string
	for _, n := range tn.GetNames() {
		out = append(out, n.GetString_().GetSval())
	}
	return out
}

func typeNameText(tn *pg_query.TypeName) string {
	parts := slices.Clone(typeNameParts(tn))
	for i, p := range parts {
		if typeKeywords[p] {
			// Only a quoted name arrives as a keyword ("char" is
			// PostgreSQL's one-byte type, char is bpchar): say so.
			parts[i] = `"` + p + `"`
		}
	}
	s := strings.Join(parts, ".")
	if len(tn.GetArrayBounds()) > 0 {
		s += "[]"
	}
	return s
}

// typeKeywords are the type names the parser turns into other names when
// unquoted (char into pg_catalog.bpchar, integer into pg_catalog.int4).
var typeKeywords = map[string]bool{
	"char": true, "character": true, "int": true, "integer": true, "smallint": true,
	"bigint": true, "real": true, "float": true, "double": true, "boolean": true, "decimal": true,
	"dec": true, "nchar": true, "national": true,
}

// valueSpan is the byte range of a constant or parameter expression,
// casts and signs included.
func (a *analyzer) valueSpan(n *pg_query.Node) (span, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_AConst:
		return a.constSpan(x.AConst.GetLocation())
	case *pg_query.Node_ParamRef:
		i, err := a.tokenAt(x.ParamRef.GetLocation())
		if err != nil {
			return span{}, err
		}
		if a.tok(i).Token != pg_query.Token_PARAM {
			return span{}, errLocate
		}
		return span{int(a.tok(i).Start), int(a.tok(i).End)}, nil
	case *pg_query.Node_TypeCast:
		inner, err := a.valueSpan(x.TypeCast.GetArg())
		if err != nil {
			return span{}, err
		}
		return a.castSpan(x.TypeCast, inner)
	case *pg_query.Node_AExpr:
		inner, err := a.valueSpan(x.AExpr.GetRexpr())
		if err != nil {
			return span{}, err
		}
		return a.signSpan(x.AExpr, inner)
	}
	return span{}, errLocate
}

// castSpan widens the span of a cast's argument to the whole cast, in any
// of its three spellings: x::type, CAST(x AS type), type 'string'.
func (a *analyzer) castSpan(tc *pg_query.TypeCast, inner span) (span, error) {
	tn := tc.GetTypeName()
	loc := int(tc.GetLocation())
	switch {
	case loc < 0:
		if tn.GetLocation() < 0 || int(tn.GetLocation()) >= inner.start || tc.GetArg().GetAConst() == nil {
			return span{}, errLocate
		}
		if parts := typeNameParts(tn); len(parts) > 0 && parts[len(parts)-1] == "interval" {
			// INTERVAL '1' DAY: the fields follow the string.
			return span{}, errLocate
		}
		return span{int(tn.GetLocation()), inner.end}, nil
	case loc > inner.start:
		i, err := a.tokenAt(int32(loc))
		if err != nil || a.tok(i).Token != pg_query.Token_TYPECAST {
			return span{}, errLocate
		}
		sp, err := a.wrapParens(inner, loc)
		if err != nil {
			return span{}, err
		}
		end, err := a.typeNameEnd(tn.GetLocation())
		if err != nil {
			return span{}, err
		}
		return span{sp.start, end}, nil
	default:
		i, err := a.tokenAt(int32(loc))
		if err != nil || a.tok(i).Token != pg_query.Token_CAST || a.tok(i+1).Token != pg_query.Token_ASCII_40 {
			return span{}, errLocate
		}
		j, err := a.skipBalanced(i + 1)
		if err != nil {
			return span{}, err
		}
		return span{loc, int(a.tok(j - 1).End)}, nil
	}
}

// signSpan widens a constant's span to a prefix sign written before it,
// with any parentheses in between.
func (a *analyzer) signSpan(e *pg_query.A_Expr, inner span) (span, error) {
	i, err := a.tokenAt(e.GetLocation())
	if err != nil {
		return span{}, err
	}
	if t := a.tok(i).Token; t != pg_query.Token_ASCII_45 && t != pg_query.Token_ASCII_43 {
		return span{}, errLocate
	}
	open := 0
	for j := i + 1; j < len(a.toks) && int(a.toks[j].Start) < inner.start; j++ {
		if a.toks[j].Token != pg_query.Token_ASCII_40 {
			return span{}, errLocate
		}
		open++
	}
	end := inner.end
	next := a.tokenFrom(inner.end)
	for ; open > 0; open-- {
		if a.tok(next).Token != pg_query.Token_ASCII_41 {
			return span{}, errLocate
		}
		end = int(a.tok(next).End)
		next++
	}
	return span{int(e.GetLocation()), end}, nil
}
