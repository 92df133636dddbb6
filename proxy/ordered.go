package proxy

import (
	"fmt"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// Comparisons with ordered columns reach PostgreSQL as ranges of stored
// values (sqlrewrite's ordered.go); the proxy computes their ends from the
// client's constants and parameters with keymap.ColumnCipher.OrderRanges.

// orderVersions is sqlrewrite.Env.OrderVersions: how many enabled versions
// rule's key has now. A key that cannot be loaded counts as one; using it
// fails later, with the key store's error.
func (ss *session) orderVersions(rule *policy.ColumnRule) int {
	c, err := ss.cipher(rule)
	if err != nil {
		return 1
	}
	return c.Versions()
}

// keymapOrderOp is keymap's name for op.
func keymapOrderOp(op sqlrewrite.OrderOp) keymap.OrderOp {
	switch op {
	case sqlrewrite.OrderLess:
		return keymap.OrderLess
	case sqlrewrite.OrderLessEqual:
		return keymap.OrderLessEqual
	case sqlrewrite.OrderGreater:
		return keymap.OrderGreater
	case sqlrewrite.OrderGreaterEqual:
		return keymap.OrderGreaterEqual
	}
	return keymap.OrderEqual
}

// noRange is an empty range: a value compared for equality that no value
// of the column's type equals (an int4 column and 1.5) matches nothing.
var noRange = keymap.ByteRange{Lo: matchesNothing, Hi: matchesNothing}

// orderRanges returns, per enabled key version, the range of rule's stored
// values x with x op v; nil for NULL.
func (cs *ciphers) orderRanges(rule *policy.ColumnRule, v clientValue, op sqlrewrite.OrderOp, tc *keymap.TextContext) ([]keymap.ByteRange, error) {
	if v.raw == nil {
		return nil, nil
	}
	c, err := cs.get(rule)
	if err != nil {
		return nil, err
	}
	if err := cs.checkOrdered(rule); err != nil {
		return nil, err
	}
	pt, matches, err := canonical(rule, v, keymap.UseCompare, tc)
	if err != nil {
		return nil, err
	}
	if !matches {
		if op != sqlrewrite.OrderEqual {
			return nil, newSQLError("0A000", "column %s: the value compared with this ordered column is not exactly a value of type %s; convert it to %s first", rule.Name(), rule.Type, rule.Type)
		}
		out := make([]keymap.ByteRange, c.Versions())
		for i := range out {
			out[i] = noRange
		}
		return out, nil
	}
	ranges, err := c.OrderRanges(pt, keymapOrderOp(op))
	if err != nil {
		return nil, columnValueError(rule, err)
	}
	for _, r := range ranges {
		cs.boundBytes += len(r.Lo) + len(r.Hi)
	}
	if cs.boundBytes > sqlrewrite.MaxBoundBytes {
		return nil, newSQLError("54000", "the comparisons with ordered columns in this statement need more than %d MB of range bounds; compare with fewer or shorter values", sqlrewrite.MaxBoundBytes>>20)
	}
	return ranges, nil
}

// checkOrdered refuses to use the order of rule's column while a
// migration holds plaintext text forms in it, which do not sort with the
// ciphertexts.
func (cs *ciphers) checkOrdered(rule *policy.ColumnRule) error {
	if cs.cat != nil && cs.cat.state(rule).mixed() {
		return newSQLError("55000", "column %s is being migrated: its rows do not sort together until the migration finishes; comparisons and ORDER BY on it are refused until then", rule.Name())
	}
	return nil
}

// boundValue picks the end of the ranges that b asks for; nil (NULL) for
// a NULL value. A version the key no longer has repeats the primary's
// range (an OR of the same range changes nothing); one more than the
// ranges means the key gained a version since the plan was made.
func boundValue(rule *policy.ColumnRule, ranges []keymap.ByteRange, b *sqlrewrite.OrderBound, null bool) ([]byte, error) {
	if null {
		return nil, nil
	}
	if len(ranges) == 0 {
		return nil, newSQLError("58000", "column %s: its key has no enabled version", rule.Name())
	}
	r := ranges[0]
	if b.Version < len(ranges) {
		r = ranges[b.Version]
	}
	if b.Upper {
		return r.Hi, nil
	}
	return r.Lo, nil
}

// boundParams computes the hidden parameters carrying range ends
// (sqlrewrite.ParamRule.Bound), each source value's ranges once.
type boundParams struct {
	cs     *ciphers
	tc     *keymap.TextContext
	ranges map[boundKey][]keymap.ByteRange
}

type boundKey struct {
	source int
	rule   *policy.ColumnRule
	op     sqlrewrite.OrderOp
}

func (bp *boundParams) value(h *sqlrewrite.ParamRule, v clientValue) ([]byte, error) {
	k := boundKey{h.Source, h.Rule, h.Bound.Op}
	ranges, ok := bp.ranges[k]
	if !ok {
		var err error
		if ranges, err = bp.cs.orderRanges(h.Rule, v, h.Bound.Op, bp.tc); err != nil {
			return nil, err
		}
		if bp.ranges == nil {
			bp.ranges = map[boundKey][]keymap.ByteRange{}
		}
		bp.ranges[k] = ranges
	}
	return boundValue(h.Rule, ranges, h.Bound, v.raw == nil)
}

// literalRange identifies a constant's ranges within one statement: its
// lower and upper ends are two Literals of the same value, computed once.
type literalRange struct {
	rule  *policy.ColumnRule
	value string
	op    sqlrewrite.OrderOp
	oid   uint32
	casts string
}

// literalBound renders a constant's range end (sqlrewrite.Literal.Bound).
func (cs *ciphers) literalBound(lit *sqlrewrite.Literal, tc *keymap.TextContext) (string, error) {
	k := literalRange{rule: lit.Rule, value: lit.Value, op: lit.Bound.Op, oid: lit.Source.OID}
	if len(lit.Source.Casts) > 0 {
		k.casts = fmt.Sprint(lit.Source.Casts)
	}
	ranges, ok := cs.litRanges[k]
	if !ok {
		var err error
		if ranges, err = cs.orderRanges(lit.Rule, literalValue(lit), lit.Bound.Op, tc); err != nil {
			return "", err
		}
		if cs.litRanges == nil {
			cs.litRanges = map[literalRange][]keymap.ByteRange{}
		}
		cs.litRanges[k] = ranges
	}
	cs.recordLiteral(lit.Rule)
	if lit.Bound.Version >= len(ranges) {
		return "", newSQLError("0A000", "column %s: its key's versions changed while the statement was planned; run it again", lit.Rule.Name())
	}
	b, err := boundValue(lit.Rule, ranges, lit.Bound, false)
	if err != nil {
		return "", err
	}
	return string(appendByteaLiteral(make([]byte, 0, 2*len(b)+16), b)), nil
}

// checkOrderVersions refuses to run a plan shaped for another number of
// its ordered keys' versions than they have now (a rotation or a disabled
// version since it was prepared), or that relies on the order of a column
// being migrated.
func (ss *session) checkOrderVersions(name string, plan *sqlrewrite.Plan) error {
	if len(plan.OrderVersions) == 0 {
		return nil
	}
	cs := ss.newCiphers()
	for _, st := range plan.Statements {
		for _, rule := range orderRules(st) {
			c, err := cs.get(rule)
			if err != nil {
				return err
			}
			if err := cs.checkOrdered(rule); err != nil {
				return err
			}
			if want := plan.OrderVersions[rule.KeyName]; c.Versions() != want {
				what := "the statement"
				if name != "" {
					what = fmt.Sprintf("prepared statement %q", name)
				}
				return newSQLError("0A000", "%s compares or sorts ordered column %s as its key had %d enabled versions, and it now has %d; prepare it again", what, rule.Name(), want, c.Versions())
			}
		}
	}
	return nil
}

// orderRules are the ordered columns whose order st relies on, with those
// of the statement inside PREPARE.
func orderRules(st *sqlrewrite.Statement) []*policy.ColumnRule {
	if st.Prepare != nil && st.Prepare.Statement != nil {
		return append(append([]*policy.ColumnRule(nil), st.Orders...), st.Prepare.Statement.Orders...)
	}
	return st.Orders
}
