package sqlrewrite

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// A column under an ordered key stores ciphertexts whose bytea order is the
// plaintexts' order within one key version (keymap's ordered layout: the
// version's id, then an order-preserving term, then an AES-SIV tail).
// PostgreSQL can therefore sort them, group them and compare two of them
// as they are, and a comparison with a constant or parameter c becomes a
// test that the stored value lies in the range of ciphertexts x with
// x op c, one range per enabled key version:
//
//	born < $1                  (born OPERATOR(pg_catalog.>=) $2 AND born OPERATOR(pg_catalog.<) $3)
//	born BETWEEN 'a' AND 'b'   ((… >= a …) AND (… <= b …))
//	born = $1, IN, <>, NOT IN  the equality range of each operand, OR-ed (NOT for <> / NOT IN)
//	born IS NOT DISTINCT FROM $1  coalesce(range, born IS NULL AND $2 IS NULL)
//
// With two enabled versions each range is an OR of two, so a rotation
// leaves old rows searchable until reencrypt has moved them and keys
// retire has disabled the old version. The bounds are hidden parameters
// the proxy computes from the client's $n at Bind (ParamRule.Bound; $n
// itself then goes to PostgreSQL as NULL unless used otherwise,
// ParamRule.BoundsOnly), or constants it renders (Literal.Bound); NULL
// bounds for NULL keep PostgreSQL's NULL semantics. The plan records how many
// versions it was shaped for (Plan.OrderVersions), and the proxy refuses
// to run it once that changed.
//
// ORDER BY, comparisons of two ordered columns and MIN/MAX use the order
// across all rows, which holds only while the key has one enabled version:
// they are refused while it has more. MIN and MAX, which PostgreSQL lacks
// for bytea, become pg_catalog.decode(pg_catalog.min(pg_catalog.encode(col,
// 'hex') COLLATE "C"), 'hex'): hex digits sort as the bytes do.
//
// Every use of the order needs the key's read grant (Statement.Searches),
// also where PostgreSQL may sort ciphertexts without being asked to
// (GROUP BY, DISTINCT, set operations, joins: comparedInDatabase).

// OrderOp is the comparison of a stored value x with a constant c whose
// range of ciphertexts the proxy computes (keymap.OrderOp means the same).
type OrderOp uint8

const (
	OrderLess OrderOp = iota
	OrderLessEqual
	OrderGreater
	OrderGreaterEqual
	OrderEqual
)

// OrderBound asks for one end of the range of stored values x with
// x Op c under the key version Version (0 the primary, in keymap's
// order): its inclusive lower end, or with Upper its exclusive upper end.
// Both are NULL when c is NULL.
type OrderBound struct {
	Op      OrderOp
	Upper   bool
	Version int
}

// CodeNotInPrerequisiteState refuses what the key's state does not allow
// yet (an ordered key with several enabled versions cannot be sorted by).
const CodeNotInPrerequisiteState = "55000"

// inequalityOps maps <, <=, >, >= to their OrderOp.
var inequalityOps = map[string]OrderOp{"<": OrderLess, "<=": OrderLessEqual, ">": OrderGreater, ">=": OrderGreaterEqual}

// flipped is op with its operands swapped: c < x is x > c.
func (op OrderOp) flipped() OrderOp {
	switch op {
	case OrderLess:
		return OrderGreater
	case OrderLessEqual:
		return OrderGreaterEqual
	case OrderGreater:
		return OrderLess
	case OrderGreaterEqual:
		return OrderLessEqual
	}
	return op
}

// orderVersions returns how many enabled versions rule's ordered key has,
// as the session sees it now, and records it in the plan.
func (a *analyzer) orderVersions(rule *policy.ColumnRule) int {
	n := 1
	if a.env.OrderVersions != nil {
		n = max(1, a.env.OrderVersions(rule))
	}
	if a.orderVer == nil {
		a.orderVer = map[string]int{}
	}
	a.orderVer[rule.KeyName] = n
	return n
}

// usesOrder records that the statement relies on the byte order of rule's
// ciphertexts (a range comparison): the read grant, and the key's versions
// staying as planned.
func (a *analyzer) usesOrder(rule *policy.ColumnRule) int {
	a.searched(rule)
	a.stmt.Orders = addRule(a.stmt.Orders, rule)
	return a.orderVersions(rule)
}

// sortsBy records that the statement compares rule's ciphertexts across
// all rows (ORDER BY, MIN/MAX, two ordered columns), which only one key
// version allows.
func (a *analyzer) sortsBy(rule *policy.ColumnRule, what string) error {
	if v := a.usesOrder(rule); v > 1 {
		return &Error{Code: CodeNotInPrerequisiteState, Column: rule.Name(), Message: fmt.Sprintf(
			"%s on column %s: its key %q has %d enabled versions after a rotation, whose ciphertexts do not sort together; finish `pgcloak reencrypt` on the key's columns and disable the old version",
			what, rule.Name(), rule.KeyName, v)}
	}
	return nil
}

// comparedInDatabase records that PostgreSQL compares rule's ciphertexts
// with each other (a join, GROUP BY, DISTINCT, UNION, PARTITION BY): it
// may sort them to do so, and the rows then come back in the plaintexts'
// order when rule is ordered, so that needs the read grant too. (For a
// deterministic key the ciphertexts' order says nothing.)
func (a *analyzer) comparedInDatabase(rule *policy.ColumnRule) {
	if rule.Ordered() {
		a.searched(rule)
	}
}

// MaxBoundBytes bounds the range ends one statement (or one Bind) makes
// the proxy compute and send for ordered columns. An end is about 32 bytes
// per byte of the value (CLWW's 4-byte block per bit), so a long IN list
// of long texts would otherwise cost the shared process gigabytes.
const MaxBoundBytes = 16 << 20

// chargeBounds counts the range ends of a constant of n bytes compared
// with rule's ordered column (up to four: BETWEEN SYMMETRIC), refusing the
// statement before anything is computed once they pass MaxBoundBytes.
func (a *analyzer) chargeBounds(rule *policy.ColumnRule, n int) error {
	a.boundBytes += 4 * a.orderVersions(rule) * 32 * (n + 1)
	if a.boundBytes > MaxBoundBytes {
		return &Error{Code: CodeProgramLimitExceeded, Column: rule.Name(), Message: fmt.Sprintf(
			"the comparisons with ordered columns in this statement would need more than %d MB of range bounds; compare with fewer or shorter values", MaxBoundBytes>>20)}
	}
	return nil
}

// orderOperand is a constant, parameter or NULL compared with an ordered
// column.
type orderOperand struct {
	lit   *Literal // a constant: the template of its bounds
	param int32    // a parameter $n
	null  bool
}

// orderOperand prepares v (written at n) to be compared with rule's
// ordered column.
func (a *analyzer) orderOperand(v value, n *pg_query.Node, rule *policy.ColumnRule) (orderOperand, error) {
	switch v.kind {
	case valNull:
		return orderOperand{null: true}, a.dropNullCast(v)
	case valLit:
		lit, err := a.newLiteral(n, rule)
		if err != nil {
			return orderOperand{}, err
		}
		return orderOperand{lit: lit}, a.chargeBounds(rule, len(lit.Value))

	case valParam:
		if a.params.base != nil {
			return orderOperand{}, refuse(rule.Name(), "a parameter of SQL PREPARE compared with ordered column %s is not supported; use a protocol-level prepared statement or a constant", rule.Name())
		}
		if err := a.params.useBounds(v.param, rule); err != nil {
			return orderOperand{}, err
		}
		if err := a.paramCasts(n, v.param, rule); err != nil {
			return orderOperand{}, err
		}
		return orderOperand{param: v.param}, nil
	}
	return orderOperand{}, refuse(rule.Name(), "comparing ordered column %s with a plain or computed value needs its plaintext inside PostgreSQL; compare it with a constant or a parameter", rule.Name())
}

// bound is the part standing for one end of o's range.
func (a *analyzer) bound(o orderOperand, rule *policy.ColumnRule, b OrderBound) Part {
	if o.lit != nil {
		l := *o.lit
		l.Bound = &b
		return Part{Literal: &l}
	}
	return Part{Hidden: a.params.hiddenBound(o.param, rule, b)}
}

// orderRange writes the test that col (the column's text) lies in the
// range of x op o, under each of versions key versions, in parentheses.
func (a *analyzer) orderRange(b *partsBuilder, col string, rule *policy.ColumnRule, op OrderOp, o orderOperand, versions int) {
	if o.null {
		b.text("(NULL::boolean)")
		return
	}
	if versions > 1 {
		b.text("(")
	}
	for v := range versions {
		if v > 0 {
			b.text(" OR ")
		}
		b.text("(" + col + " OPERATOR(pg_catalog.>=) ")
		b.parts(a.bound(o, rule, OrderBound{Op: op, Version: v}))
		b.text(" AND " + col + " OPERATOR(pg_catalog.<) ")
		b.parts(a.bound(o, rule, OrderBound{Op: op, Upper: true, Version: v}))
		b.text(")")
	}
	if versions > 1 {
		b.text(")")
	}
}

// orderedColumn returns the column reference an ordered comparison is
// written on, refusing an expression (its text would be repeated).
func (a *analyzer) orderedColumn(col value, colNode *pg_query.Node) (string, span, error) {
	cr := colNode.GetColumnRef()
	if cr == nil {
		return "", span{}, refuse(col.rule.Name(), "comparing an expression of ordered column %s with a value is not supported; compare the column itself", col.rule.Name())
	}
	sp, err := a.columnRefSpan(cr)
	if err != nil {
		return "", span{}, err
	}
	return a.sql[sp.start:sp.end], sp, nil
}

// inequality handles l < r, l <= r, l > r and l >= r.
func (a *analyzer) inequality(e *pg_query.A_Expr, opText string, op OrderOp, sc *scope) error {
	l, r := e.GetLexpr(), e.GetRexpr()
	lv, err := a.expr(l, sc)
	if err != nil {
		return err
	}
	rv, err := a.expr(r, sc)
	if err != nil {
		return err
	}
	if lv.kind != valEnc && rv.kind != valEnc {
		a.flowOut(lv)
		a.flowOut(rv)
		return nil
	}
	col, colNode, other, otherNode := lv, l, rv, r
	if lv.kind != valEnc {
		col, colNode, other, otherNode, op = rv, r, lv, l, op.flipped()
	}
	what := "operator " + opText
	if !col.rule.Ordered() {
		return needsPlaintext(what, col.rule)
	}
	if other.kind == valEnc {
		if !other.rule.Ordered() {
			return needsPlaintext(what, other.rule)
		}
		if !col.rule.Interchangeable(other.rule) {
			return refuse(col.rule.Name(), "ordered columns %s and %s use different keys: comparing them is not possible", col.rule.Name(), other.rule.Name())
		}
		if err := a.sortsBy(col.rule, "comparing"); err != nil {
			return err
		}
		return a.sortsBy(other.rule, "comparing")
	}
	text, colSpan, err := a.orderedColumn(col, colNode)
	if err != nil {
		return err
	}
	o, err := a.orderOperand(other, otherNode, col.rule)
	if err != nil {
		return err
	}
	whole, err := a.comparisonSpan(e, true, colNode, colSpan, l, []*pg_query.Node{r})
	if err != nil {
		return err
	}
	versions := a.usesOrder(col.rule)
	var b partsBuilder
	a.orderRange(&b, text, col.rule, op, o, versions)
	return a.addEdit(Edit{Start: whole.start, End: whole.end, Parts: b.done()})
}

// between handles x [NOT] BETWEEN [SYMMETRIC] lo AND hi.
func (a *analyzer) between(e *pg_query.A_Expr, sc *scope) error {
	l := e.GetLexpr()
	bounds := e.GetRexpr().GetList().GetItems()
	lv, err := a.expr(l, sc)
	if err != nil {
		return err
	}
	if lv.kind != valEnc {
		a.flowOut(lv)
		return a.plain(e.GetRexpr(), sc, "BETWEEN")
	}
	if !lv.rule.Ordered() || len(bounds) != 2 {
		return needsPlaintext("BETWEEN", lv.rule)
	}
	text, colSpan, err := a.orderedColumn(lv, l)
	if err != nil {
		return err
	}
	var ops [2]orderOperand
	for i, n := range bounds {
		v, err := a.expr(n, sc)
		if err != nil {
			return err
		}
		if ops[i], err = a.orderOperand(v, n, lv.rule); err != nil {
			return err
		}
	}
	start, err := a.outerParens(colSpan)
	if err != nil {
		return err
	}
	last, err := a.valueSpan(bounds[1])
	if err != nil {
		return err
	}
	if last, err = a.outerParens(last); err != nil {
		return err
	}
	whole := span{start.start, last.end}
	if whole.start >= whole.end || !a.balanced(whole) {
		return errLocate
	}
	versions := a.usesOrder(lv.rule)
	var b partsBuilder
	closed := func(lo, hi orderOperand) {
		b.text("(")
		a.orderRange(&b, text, lv.rule, OrderGreaterEqual, lo, versions)
		b.text(" AND ")
		a.orderRange(&b, text, lv.rule, OrderLessEqual, hi, versions)
		b.text(")")
	}
	kind := e.GetKind()
	not := kind == pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN || kind == pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM
	symmetric := kind == pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM || kind == pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM
	if not {
		b.text("(NOT ")
	}
	if symmetric {
		// PostgreSQL's own reading of SYMMETRIC.
		b.text("(")
		closed(ops[0], ops[1])
		b.text(" OR ")
		closed(ops[1], ops[0])
		b.text(")")
	} else {
		closed(ops[0], ops[1])
	}
	if not {
		b.text(")")
	}
	return a.addEdit(Edit{Start: whole.start, End: whole.end, Parts: b.done()})
}

// orderedEquality rewrites an equality-like comparison of an ordered
// column with constants, parameters and NULL (see comparison) into tests
// of its equality ranges.
func (a *analyzer) orderedEquality(e *pg_query.A_Expr, kind cmpKind, binary bool, col value, colNode, l *pg_query.Node,
	items []*pg_query.Node, ops []value, opNodes []*pg_query.Node) error {
	text, colSpan, err := a.orderedColumn(col, colNode)
	if err != nil {
		return err
	}
	var operands []orderOperand
	null := false
	for i, v := range ops {
		o, err := a.orderOperand(v, opNodes[i], col.rule)
		if err != nil {
			return err
		}
		if o.null {
			null = true
			continue
		}
		operands = append(operands, o)
	}
	whole, err := a.comparisonSpan(e, binary, colNode, colSpan, l, items)
	if err != nil {
		return err
	}
	versions := a.usesOrder(col.rule)
	var b partsBuilder
	eq := func(o orderOperand) { a.orderRange(&b, text, col.rule, OrderEqual, o, versions) }
	// joined writes each operand's test (negated with not) joined by
	// conj, and a NULL operand as NULL: PostgreSQL's IN, NOT IN, = ALL
	// and <> ANY.
	joined := func(not bool, conj string) {
		wrap := len(operands) > 1 || null || not
		if wrap {
			b.text("(")
		}
		for i, o := range operands {
			if i > 0 {
				b.text(conj)
			}
			if not {
				b.text("NOT ")
			}
			eq(o)
		}
		if null {
			b.text(conj + "NULL")
		}
		if wrap {
			b.text(")")
		}
	}
	switch kind {
	case cmpEqual:
		joined(false, " OR ")
	case cmpNotEqual:
		b.text("(NOT ")
		joined(false, " OR ")
		b.text(")")
	case cmpEqualAll:
		joined(false, " AND ")
	case cmpNotEqualAny:
		joined(true, " OR ")
	case cmpNotDistinct, cmpDistinct:
		// One operand, not NULL: NULL is NOT DISTINCT FROM only NULL.
		o := operands[0]
		b.text("(")
		if kind == cmpDistinct {
			b.text("NOT ")
		}
		b.text("coalesce(")
		eq(o)
		if o.lit != nil {
			b.text(", false))")
			break
		}
		// A NULL parameter has NULL bounds.
		b.text(", " + text + " IS NULL AND ")
		b.parts(a.bound(o, col.rule, OrderBound{Op: OrderEqual}))
		b.text(" IS NULL))")
	}
	return a.addEdit(Edit{Start: whole.start, End: whole.end, Parts: b.done()})
}

// orderedForm reports whether a comparison of col with ops is rewritten
// into ranges: col is under an ordered key and ops are constants,
// parameters and NULL, not all NULL.
func orderedForm(col value, ops []value) bool {
	return col.kind == valEnc && col.rule.Ordered() && constantOperands(ops)
}

// minMax rewrites min(col) and max(col) of an ordered column, which
// PostgreSQL has no bytea aggregate for, into the same aggregate over the
// ciphertexts' hex text in byte order.
func (a *analyzer) minMax(fc *pg_query.FuncCall, name string, v value) (value, error) {
	rule := v.rule
	if fc.GetOver() != nil {
		return plainValue, refuse(rule.Name(), "%s() OVER (…) on ordered column %s is not supported", name, rule.Name())
	}
	arg := fc.GetArgs()[0]
	cr := arg.GetColumnRef()
	if cr == nil {
		return plainValue, refuse(rule.Name(), "%s() of an expression of ordered column %s is not supported; aggregate the column itself", name, rule.Name())
	}
	if err := a.sortsBy(rule, name+"()"); err != nil {
		return plainValue, err
	}
	argSpan, err := a.columnRefSpan(cr)
	if err != nil {
		return plainValue, err
	}
	first, err := a.tokenAt(fc.GetLocation())
	if err != nil {
		return plainValue, err
	}
	open := first
	for open < len(a.toks) && a.tok(open).Token != pg_query.Token_ASCII_40 {
		open++
	}
	end, ok := a.closingParen(open)
	if !ok {
		return plainValue, errLocate
	}
	if a.tok(end+1).Token == pg_query.Token_FILTER {
		if end, ok = a.closingParen(end + 2); !ok {
			return plainValue, errLocate
		}
	}
	start := int(a.tok(first).Start)
	closing := ", 'hex')"
	if fc == a.unnamed {
		// PostgreSQL would name the column decode.
		closing += ` AS "` + name + `"`
	}
	edits := []Edit{
		{Start: start, End: int(a.tok(open).Start), Text: "pg_catalog.decode(pg_catalog." + strings.ToLower(name)},
		{Start: argSpan.start, End: argSpan.end, Text: "pg_catalog.encode(" + a.sql[argSpan.start:argSpan.end] + `, 'hex') COLLATE pg_catalog."C"`},
		{Start: int(a.tok(end).End), End: int(a.tok(end).End), Text: closing},
	}
	for _, e := range edits {
		if err := a.addEdit(e); err != nil {
			return plainValue, err
		}
	}
	return value{kind: valEnc, rule: rule}, nil
}

// closingParen returns the index of the token closing the parenthesis
// opened at token open.
func (a *analyzer) closingParen(open int) (int, bool) {
	if a.tok(open).Token != pg_query.Token_ASCII_40 {
		return 0, false
	}
	depth := 0
	for i := open; i < len(a.toks); i++ {
		switch a.toks[i].Token {
		case pg_query.Token_ASCII_40:
			depth++
		case pg_query.Token_ASCII_41:
			depth--
			if depth == 0 {
				return i, true
			}
		}
	}
	return 0, false
}

// hiddenBound returns the number (from 1) of the hidden parameter that
// carries bound b of $n's range in rule's column, adding it on first use.
func (p *paramSet) hiddenBound(n int32, rule *policy.ColumnRule, b OrderBound) int {
	for i, h := range p.hidden {
		if h.Source == int(n) && h.Bound != nil && *h.Bound == b && (h.Rule == rule || *h.Rule == *rule) {
			return i + 1
		}
	}
	p.hidden = append(p.hidden, &ParamRule{Rule: rule, Source: int(n), Bound: &b})
	return len(p.hidden)
}

var orderOpNames = [...]string{OrderLess: "<", OrderLessEqual: "<=", OrderGreater: ">", OrderGreaterEqual: ">=", OrderEqual: "="}

func (op OrderOp) String() string {
	if int(op) < len(orderOpNames) {
		return orderOpNames[op]
	}
	return fmt.Sprintf("OrderOp(%d)", op)
}

// String names the bound for plans in tests and logs: "<lo0", ">=hi1".
func (b *OrderBound) String() string {
	end := "lo"
	if b.Upper {
		end = "hi"
	}
	return fmt.Sprintf("%s%s%d", b.Op, end, b.Version)
}
