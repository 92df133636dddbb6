package sqlrewrite

import (
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// After a key rotation a deterministic column holds ciphertexts under
// several key versions (and, in the middle of a migration, text forms of
// plaintext) until reencrypt finishes, so one ciphertext of a constant
// finds only some of the rows holding its value. A search comparison of
// such a column with constants, parameters and NULL is therefore
// rewritten, as one edit over the whole comparison, into a comparison
// with every form the value may be stored as (its candidates):
//
//	ssn = 'x'                   (ssn = ANY(ARRAY['\x…'::bytea, '\x…'::bytea]))
//	ssn <> $1                   (ssn <> ALL(ARRAY[$2, …, $9]::bytea[]))
//	ssn IN ('x', $1, NULL)      (ssn = ANY(ARRAY[…] || (ARRAY[$2, …, $9]::bytea[] || ARRAY[NULL::bytea])))
//	ssn NOT IN (…)              (ssn <> ALL(…))
//	ssn = ALL(ARRAY['x', 'y'])  (ssn = ANY(ARRAY[…]) AND ssn = ANY(ARRAY[…]))
//	ssn <> ANY(ARRAY['x', 'y']) (ssn <> ALL(ARRAY[…]) OR ssn <> ALL(ARRAY[…]))
//	ssn IS NOT DISTINCT FROM $1 (coalesce(ssn = ANY(ARRAY[$2, …]::bytea[]), ssn IS NULL AND (ARRAY[$2, …]::bytea[])[1] IS NULL))
//	ssn IS DISTINCT FROM 'x'    (NOT coalesce(ssn = ANY(ARRAY[…]), false))
//	ssn = ANY($1::text[])       (ssn = ANY($2::bytea[]))
//	ssn <> ALL($1)              (ssn <> ALL($2::bytea[]))
//	ssn = ANY('{x,y}')          (ssn = ANY(ARRAY[…]))
//	ssn = ANY(NULL::text[])     (ssn = ANY(NULL::bytea[]))
//
// A constant becomes an ARRAY the proxy renders (Literal.Candidates); a
// parameter $n becomes CandidateSlots (8) hidden parameters of type bytea,
// written ARRAY[$a, …, $a+7]::bytea[], which the proxy fills from the
// client's $n at Bind: the candidates in order, padded with copies of the
// first (a copy changes neither = ANY nor <> ALL), every slot NULL for
// NULL, so NULL semantics stay PostgreSQL's. The fixed arity lets
// PostgreSQL keep a generic plan for a prepared statement; with one
// bytea[] parameter, whose length it cannot know, it re-planned at every
// execution. A value with more candidates than slots (more enabled key
// versions, until reencrypt finishes) is refused at Bind. $n itself stays
// a parameter of the client's, encrypted as usual, so it may be used
// elsewhere in the statement.
//
// An array parameter compared with = ANY or <> ALL (the drivers' "one of
// these": pgx, node-postgres, pq.Array, JDBC setArray) becomes a hidden
// parameter holding the candidates of all its elements in one bytea[]
// (ParamRule.Array): PostgreSQL flattens a multi-dimensional array for
// ANY/ALL too, and a NULL element stays a NULL element. The client's $n
// then appears nowhere and goes to PostgreSQL as NULL.
//
// Other comparisons keep the one ciphertext of the key's primary version
// (row comparisons, constants in a subquery's output, a ciphertext that is
// not a column reference), as do comparisons of two encrypted columns,
// which match only ciphertexts of the same version until reencrypt.

// cmpKind is the meaning of an equality-like comparison of one value with
// a list of operands.
type cmpKind uint8

const (
	cmpEqual       cmpKind = iota // =, IN, = ANY: equal to some operand
	cmpNotEqual                   // <>, NOT IN, <> ALL: equal to none
	cmpEqualAll                   // = ALL: equal to every operand
	cmpNotEqualAny                // <> ANY: not equal to some operand
	cmpNotDistinct                // IS NOT DISTINCT FROM
	cmpDistinct                   // IS DISTINCT FROM
)

// comparison analyses l op items (one item for a binary comparison, the
// list of IN or of ARRAY[…] otherwise).
func (a *analyzer) comparison(e *pg_query.A_Expr, kind cmpKind, items []*pg_query.Node, sc *scope) error {
	l := e.GetLexpr()
	binary := e.GetKind() == pg_query.A_Expr_Kind_AEXPR_OP || e.GetKind() == pg_query.A_Expr_Kind_AEXPR_DISTINCT ||
		e.GetKind() == pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT
	if l.GetRowExpr() != nil || binary && items[0].GetRowExpr() != nil {
		// Row-wise: each pair on its own.
		for _, it := range items {
			if err := a.compareNodes(l, it, sc); err != nil {
				return err
			}
		}
		return nil
	}
	lv, err := a.expr(l, sc)
	if err != nil {
		return err
	}
	rvs := make([]value, len(items))
	for i, it := range items {
		if rvs[i], err = a.expr(it, sc); err != nil {
			return err
		}
	}
	col, colNode, ops, opNodes := lv, l, rvs, items
	if binary && lv.kind != valEnc {
		col, colNode, ops, opNodes = rvs[0], items[0], []value{lv}, []*pg_query.Node{l}
	}
	if orderedForm(col, ops) {
		return a.orderedEquality(e, kind, binary, col, colNode, l, items, ops, opNodes)
	}
	if a.candidateForm(col, colNode, ops) {
		return a.rewriteComparison(e, kind, binary, col.rule, colNode, l, items, ops, opNodes)
	}
	for i := range items {
		if err := a.compareValues(lv, rvs[i]); err != nil {
			return err
		}
	}
	return nil
}

// candidateForm reports whether a comparison of col with ops is rewritten
// into a comparison with candidates: col is a reference to a column under
// a deterministic key, and ops are constants, parameters and NULL, not
// all NULL.
func (a *analyzer) candidateForm(col value, colNode *pg_query.Node, ops []value) bool {
	return col.kind == valEnc && col.rule.Kind == policy.Deterministic && colNode.GetColumnRef() != nil && constantOperands(ops)
}

// constantOperands reports whether ops are constants, parameters and
// NULL, not all NULL: values the proxy can encrypt.
func constantOperands(ops []value) bool {
	some := false
	for _, v := range ops {
		switch v.kind {
		case valLit, valParam:
			some = true
		case valNull:
		default:
			return false
		}
	}
	return some
}

// rewriteComparison records the edit that replaces the whole comparison.
func (a *analyzer) rewriteComparison(e *pg_query.A_Expr, kind cmpKind, binary bool, rule *policy.ColumnRule,
	colNode, l *pg_query.Node, items []*pg_query.Node, ops []value, opNodes []*pg_query.Node) error {
	colSpan, err := a.columnRefSpan(colNode.GetColumnRef())
	if err != nil {
		return err
	}
	// The candidates of each operand; NULLs make one NULL element.
	var operands [][]Part
	param, null := false, false
	for i, v := range ops {
		switch v.kind {
		case valLit:
			lit, err := a.newLiteral(opNodes[i], rule)
			if err != nil {
				return err
			}
			lit.Candidates = true
			operands = append(operands, []Part{{Literal: lit}})
		case valParam:
			if err := a.params.use(v.param, rule, false); err != nil {
				return err
			}
			if err := a.paramCasts(opNodes[i], v.param, rule); err != nil {
				return err
			}
			parts, err := a.hiddenParam(v.param, rule, false)
			if err != nil {
				return err
			}
			operands = append(operands, parts)
			param = true
		case valNull:
			if !null {
				operands = append(operands, []Part{{Text: "ARRAY[NULL::bytea]"}})
				null = true
			}
		}
	}
	a.searched(rule)

	whole, err := a.comparisonSpan(e, binary, colNode, colSpan, l, items)
	if err != nil {
		return err
	}
	col := a.sql[colSpan.start:colSpan.end]
	var b partsBuilder
	b.text("(")
	switch kind {
	case cmpEqual, cmpNotEqual:
		op := " = ANY("
		if kind == cmpNotEqual {
			op = " <> ALL("
		}
		b.text(col + op)
		b.concat(operands)
		b.text(")")
	case cmpEqualAll, cmpNotEqualAny:
		op, conj := " = ANY(", " AND "
		if kind == cmpNotEqualAny {
			op, conj = " <> ALL(", " OR "
		}
		for i, o := range operands {
			if i > 0 {
				b.text(conj)
			}
			b.text(col + op)
			b.parts(o...)
			b.text(")")
		}
	case cmpNotDistinct, cmpDistinct:
		// One operand, not NULL: NULL is NOT DISTINCT FROM only NULL.
		if kind == cmpDistinct {
			b.text("NOT ")
		}
		b.text("coalesce(" + col + " = ANY(")
		b.parts(operands[0]...)
		b.text("), ")
		if param {
			// A NULL parameter arrives as {NULL}.
			b.text(col + " IS NULL AND (")
			b.parts(operands[0]...)
			b.text(")[1] IS NULL")
		} else {
			b.text("false")
		}
		b.text(")")
	}
	b.text(")")
	return a.addEdit(Edit{Start: whole.start, End: whole.end, Parts: b.done()})
}

// hiddenParam returns the parts that stand for the candidates of $n (of
// each of its elements, for an array): $h::bytea[] for an array, and for
// a single value ARRAY[$h, $h+1, …]::bytea[] over its CandidateSlots
// hidden parameters.
func (a *analyzer) hiddenParam(n int32, rule *policy.ColumnRule, array bool) ([]Part, error) {
	h := a.params.hiddenFor(n, rule, array)
	// ref is the hidden parameter h+k: numbered when the plan is
	// finished, or in a PREPARE body after EXECUTE's arguments.
	ref := func(k int) (Part, error) {
		if a.params.base == nil {
			return Part{Hidden: h + k}, nil
		}
		base, err := a.params.firstHidden()
		return Part{Text: "$" + strconv.Itoa(base+h+k)}, err
	}
	var b partsBuilder
	if array {
		p, err := ref(0)
		if err != nil {
			return nil, err
		}
		b.parts(p)
		b.text("::bytea[]")
		return b.done(), nil
	}
	b.text("ARRAY[")
	for k := range CandidateSlots {
		if k > 0 {
			b.text(", ")
		}
		p, err := ref(k)
		if err != nil {
			return nil, err
		}
		b.parts(p)
	}
	b.text("]::bytea[]")
	return b.done(), nil
}

// arrayComparison handles col = ANY(v) and col <> ALL(v) (SOME for ANY,
// array casts on v allowed), where v is an array parameter $n or an
// array constant '{…}' (how pgx's simple protocol sends an array
// argument): the comparison is replaced by one with the candidates of
// every element. A column that is not encrypted leaves v as it is.
func (a *analyzer) arrayComparison(e *pg_query.A_Expr, kind cmpKind, sc *scope) error {
	l, r := e.GetLexpr(), e.GetRexpr()
	lv, err := a.expr(l, sc)
	if err != nil {
		return err
	}
	rv, err := a.expr(r, sc)
	if err != nil {
		return err
	}
	if lv.kind != valEnc {
		a.flowOut(lv)
		a.flowOut(rv)
		return nil
	}
	rule := lv.rule
	switch {
	case !rule.Deterministic():
		return randomizedEquality(rule)
	case rule.Ordered():
		return refuse(rule.Name(), "comparing ordered column %s with an array value is not supported; use IN (…) with constants or separate parameters", rule.Name())
	case rv.kind != valParam && (rv.kind != valLit && rv.kind != valNull || !isArrayConst(r)) || l.GetColumnRef() == nil:
		return refuse(rule.Name(), "comparing encrypted column %s with an array value is not supported; use IN (…), an ARRAY[…] of constants or an array parameter", rule.Name())
	case kind != cmpEqual && kind != cmpNotEqual:
		// Every element (= ALL) or some element (<> ANY) would have to
		// be matched by one of its own candidates, which one flat array
		// of candidates cannot say.
		return refuse(rule.Name(), "= ALL and <> ANY with an array on encrypted column %s are not supported; use = ANY or <> ALL", rule.Name())
	}
	casts, err := arrayCastChain(r, rule)
	if err != nil {
		return err
	}
	var candidates []Part
	switch rv.kind {
	case valParam:
		candidates, err = a.arrayParamCandidates(rv.param, casts, rule)
	case valLit:
		candidates, err = a.arrayConstCandidates(r, casts, rule)
	default: // NULL
		candidates = []Part{{Text: "NULL::bytea[]"}}
	}
	if err != nil {
		return err
	}
	a.searched(rule)
	colSpan, err := a.columnRefSpan(l.GetColumnRef())
	if err != nil {
		return err
	}
	whole, err := a.comparisonSpan(e, false, l, colSpan, l, nil)
	if err != nil {
		return err
	}
	op := " = ANY("
	if kind == cmpNotEqual {
		op = " <> ALL("
	}
	var b partsBuilder
	b.text("(" + a.sql[colSpan.start:colSpan.end] + op)
	b.parts(candidates...)
	b.text("))")
	return a.addEdit(Edit{Start: whole.start, End: whole.end, Parts: b.done()})
}

// arrayParamCandidates makes array parameter $n, cast by casts, the source
// of a hidden parameter holding its elements' candidates.
func (a *analyzer) arrayParamCandidates(n int32, casts []Cast, rule *policy.ColumnRule) ([]Part, error) {
	if err := a.params.useArray(n, rule); err != nil {
		return nil, err
	}
	pr := a.params.rules[n-1]
	if pr.castsSet && !slices.EqualFunc(pr.Casts, casts, Cast.equal) {
		return nil, refuse(rule.Name(), "parameter $%d is cast differently where it is used with encrypted column %s", n, rule.Name())
	}
	pr.Casts, pr.castsSet = casts, true
	return a.hiddenParam(n, rule, true)
}

// arrayConstCandidates makes the array constant n (a string, cast by
// casts) a Literal whose elements' candidates the proxy renders. The
// string is read as an array of the first cast's element type, or of the
// column's type when uncast, as PostgreSQL resolves an unknown constant
// against the column.
func (a *analyzer) arrayConstCandidates(n *pg_query.Node, casts []Cast, rule *policy.ColumnRule) ([]Part, error) {
	val, err := a.literalValue(n, rule)
	if err != nil {
		return nil, err
	}
	lit := &Literal{Rule: rule, Value: val, Source: ValueSource{OID: policy.PGUnknown.OID(), Casts: casts}, Candidates: true, Array: true}
	return []Part{{Literal: lit}}, nil
}

// isArrayConst reports whether n is a string constant or NULL, possibly
// cast: in col = ANY(n), an array constant.
func isArrayConst(n *pg_query.Node) bool {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	c := n.GetAConst()
	return c.GetSval() != nil || c.GetIsnull()
}

// arrayCastChain returns the element types of the array casts written on
// a parameter, innermost first. A cast to anything but an array of a type
// the proxy converts values to is refused.
func arrayCastChain(n *pg_query.Node, rule *policy.ColumnRule) ([]Cast, error) {
	var casts []Cast
	for tc := n.GetTypeCast(); tc != nil; tc = tc.GetArg().GetTypeCast() {
		tn := tc.GetTypeName()
		if len(tn.GetArrayBounds()) == 0 {
			return nil, refuse(rule.Name(), "a cast to %s on an array compared with encrypted column %s is not supported", typeNameText(tn), rule.Name())
		}
		elem := &pg_query.TypeName{Names: tn.GetNames(), Typmods: tn.GetTypmods(), Setof: tn.GetSetof(), PctType: tn.GetPctType()}
		c, ok := castTarget(elem)
		if !ok || c.OID == policy.PGUnknown.OID() {
			return nil, refuse(rule.Name(), "a cast to %s cannot be used with encrypted column %s", typeNameText(tn), rule.Name())
		}
		casts = append(casts, c)
	}
	slices.Reverse(casts)
	return casts, nil
}

// comparisonSpan is the byte range of the whole comparison: from its left
// operand to its right operand, or to the parenthesis closing IN (…) or
// ANY/ALL (…), with parentheses around either operand.
func (a *analyzer) comparisonSpan(e *pg_query.A_Expr, binary bool, colNode *pg_query.Node, colSpan span,
	l *pg_query.Node, items []*pg_query.Node) (span, error) {
	operandSpan := func(n *pg_query.Node) (span, error) {
		if n == colNode {
			return a.outerParens(colSpan)
		}
		sp, err := a.valueSpan(n)
		if err != nil {
			return span{}, err
		}
		return a.outerParens(sp)
	}
	left, err := operandSpan(l)
	if err != nil {
		return span{}, err
	}
	var end int
	if binary {
		right, err := operandSpan(items[0])
		if err != nil {
			return span{}, err
		}
		end = right.end
	} else {
		i, err := a.tokenAt(e.GetLocation())
		if err != nil {
			return span{}, err
		}
		if a.tok(i).Token == pg_query.Token_OPERATOR {
			// OPERATOR(pg_catalog.=) ANY (…)
			if i, err = a.skipBalanced(i + 1); err != nil {
				return span{}, err
			}
		} else {
			i++
		}
		for isListKeyword(a.tok(i).Token) {
			i++
		}
		if a.tok(i).Token != pg_query.Token_ASCII_40 {
			return span{}, errLocate
		}
		j, err := a.skipBalanced(i)
		if err != nil {
			return span{}, err
		}
		end = int(a.tok(j - 1).End)
	}
	whole := span{left.start, end}
	if whole.start >= whole.end || !a.balanced(whole) {
		return span{}, errLocate
	}
	return whole, nil
}

func isListKeyword(t pg_query.Token) bool {
	switch t {
	case pg_query.Token_NOT, pg_query.Token_NOT_LA, pg_query.Token_IN_P,
		pg_query.Token_ANY, pg_query.Token_SOME, pg_query.Token_ALL:
		return true
	}
	return false
}

// outerParens widens sp over parentheses written around it: "((ssn))".
func (a *analyzer) outerParens(sp span) (span, error) {
	if _, err := a.tokens(); err != nil {
		return span{}, err
	}
	for {
		before, after := a.tokenFrom(sp.start)-1, a.tokenFrom(sp.end)
		if before < 0 || a.tok(before).Token != pg_query.Token_ASCII_40 || a.tok(after).Token != pg_query.Token_ASCII_41 {
			return sp, nil
		}
		sp = span{int(a.tok(before).Start), int(a.tok(after).End)}
	}
}

// balanced reports whether the parentheses and brackets of sp's tokens
// pair up within it.
func (a *analyzer) balanced(sp span) bool {
	depth := 0
	for i := a.tokenFrom(sp.start); i < len(a.toks) && int(a.toks[i].Start) < sp.end; i++ {
		switch a.toks[i].Token {
		case pg_query.Token_ASCII_40, pg_query.Token_ASCII_91:
			depth++
		case pg_query.Token_ASCII_41, pg_query.Token_ASCII_93:
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

// columnRefSpan is the byte range of a column reference: name, or
// qualified names joined by dots.
func (a *analyzer) columnRefSpan(cr *pg_query.ColumnRef) (span, error) {
	i, err := a.tokenAt(cr.GetLocation())
	if err != nil {
		return span{}, err
	}
	if !isWordToken(a.tok(i)) {
		return span{}, errLocate
	}
	start := int(a.tok(i).Start)
	for parts := 1; parts < len(cr.GetFields()); parts++ {
		if a.tok(i+1).Token != pg_query.Token_ASCII_46 || !isWordToken(a.tok(i+2)) {
			return span{}, errLocate
		}
		i += 2
	}
	return span{start, int(a.tok(i).End)}, nil
}

// partsBuilder assembles an edit's parts, merging adjacent text.
type partsBuilder struct {
	out []Part
	sb  strings.Builder
}

func (b *partsBuilder) text(s string) { b.sb.WriteString(s) }

func (b *partsBuilder) parts(ps ...Part) {
	for _, p := range ps {
		if p.Literal == nil && p.Hidden == 0 {
			b.text(p.Text)
			continue
		}
		b.flush()
		b.out = append(b.out, p)
	}
}

// concat writes the arrays operands concatenated with ||, nested as a
// balanced tree: a chain of thousands (a long IN list) would exhaust
// PostgreSQL's stack when it parses the expression.
func (b *partsBuilder) concat(operands [][]Part) {
	switch len(operands) {
	case 0:
	case 1:
		b.parts(operands[0]...)
	default:
		mid := len(operands) / 2
		b.nested(operands[:mid])
		b.text(" || ")
		b.nested(operands[mid:])
	}
}

func (b *partsBuilder) nested(operands [][]Part) {
	if len(operands) == 1 {
		b.parts(operands[0]...)
		return
	}
	b.text("(")
	b.concat(operands)
	b.text(")")
}

func (b *partsBuilder) flush() {
	if b.sb.Len() > 0 {
		b.out = append(b.out, Part{Text: b.sb.String()})
		b.sb.Reset()
	}
}

func (b *partsBuilder) done() []Part {
	b.flush()
	return b.out
}

// sameParts reports whether two edits' parts ask for the same text.
func sameParts(x, y []Part) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		p, q := x[i], y[i]
		if p.Text != q.Text || p.Hidden != q.Hidden || (p.Literal == nil) != (q.Literal == nil) {
			return false
		}
		if p.Literal != nil && (p.Literal.Value != q.Literal.Value || p.Literal.Candidates != q.Literal.Candidates ||
			p.Literal.Write != q.Literal.Write || *p.Literal.Rule != *q.Literal.Rule) {
			return false
		}
	}
	return true
}
