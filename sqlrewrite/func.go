package sqlrewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// funcName returns a function's name and whether it is the built-in one
// (unqualified or pg_catalog-qualified).
func funcName(fc *pg_query.FuncCall) (string, bool) {
	names := fc.GetFuncname()
	switch len(names) {
	case 1:
		return names[0].GetString_().GetSval(), true
	case 2:
		return names[1].GetString_().GetSval(), names[0].GetString_().GetSval() == "pg_catalog"
	}
	if len(names) == 0 {
		return "", false
	}
	return names[len(names)-1].GetString_().GetSval(), false
}

// funcCall refuses any function of a ciphertext except count, which only
// tests it for NULL (and, with DISTINCT, for equality).
func (a *analyzer) funcCall(fc *pg_query.FuncCall, sc *scope) (value, error) {
	name, builtin := funcName(fc)
	if builtin && name == "set_config" {
		if err := a.setConfig(fc); err != nil {
			return plainValue, err
		}
	}
	if err := a.plain(fc.GetAggFilter(), sc, "FILTER"); err != nil {
		return plainValue, err
	}
	if err := a.windowDef(fc.GetOver(), sc); err != nil {
		return plainValue, err
	}
	if fc.GetAggWithinGroup() {
		// An ordered-set aggregate (percentile_disc, mode) returns one of
		// the values it sorts: a ciphertext PostgreSQL reports no column
		// for.
		if err := a.plainSortKeys(fc.GetAggOrder(), sc, "WITHIN GROUP"); err != nil {
			return plainValue, err
		}
	} else if err := a.sortClause(fc.GetAggOrder(), sc, &shape{}); err != nil {
		return plainValue, err
	}
	args := fc.GetArgs()
	if builtin && name == "count" && len(args) == 1 && !fc.GetAggWithinGroup() {
		v, err := a.expr(args[0], sc)
		if err != nil {
			return plainValue, err
		}
		if v.kind == valEnc && fc.GetAggDistinct() && !v.rule.Deterministic() {
			return plainValue, refuse(v.rule.Name(), "count(DISTINCT …) on column %s, encrypted with a randomized key, is not possible", v.rule.Name())
		}
		if v.kind != valEnc {
			a.flowOut(v)
		}
		return plainValue, nil
	}
	if builtin && (name == "min" || name == "max") && len(args) == 1 && !fc.GetAggWithinGroup() {
		v, err := a.expr(args[0], sc)
		if err != nil {
			return plainValue, err
		}
		if v.kind == valEnc && v.rule.Ordered() {
			return a.minMax(fc, name, v)
		}
		return plainValue, a.requirePlain(v, "function "+name+"()")
	}
	return plainValue, a.plainList(args, sc, "function "+name+"()")
}

// subLink analyzes a subquery used as an expression.
func (a *analyzer) subLink(sl *pg_query.SubLink, sc *scope) (value, error) {
	t := sl.GetSubLinkType()
	if t == pg_query.SubLinkType_MULTIEXPR_SUBLINK || t == pg_query.SubLinkType_CTE_SUBLINK {
		return plainValue, refuse("", "unsupported subquery")
	}
	sh, err := a.subquery(sl.GetSubselect(), sc)
	if err != nil {
		return plainValue, err
	}
	switch t {
	case pg_query.SubLinkType_EXISTS_SUBLINK:
		return plainValue, a.discardShape(sh)
	case pg_query.SubLinkType_EXPR_SUBLINK:
		if len(sh.cols) == 0 {
			return plainValue, nil
		}
		for _, c := range sh.cols[1:] {
			a.flowOut(c.v)
		}
		v := a.flowOut(sh.cols[0].v)
		if v.kind == valEnc {
			v.scalar = true
		}
		return v, nil
	case pg_query.SubLinkType_ANY_SUBLINK, pg_query.SubLinkType_ALL_SUBLINK, pg_query.SubLinkType_ROWCOMPARE_SUBLINK:
		return plainValue, a.compareSub(sl, sh, sc)
	}
	for _, c := range sh.cols {
		if c.v.kind == valEnc {
			return plainValue, needsPlaintext("ARRAY(subquery)", c.v.rule)
		}
		a.flowOut(c.v)
	}
	return plainValue, nil
}

// compareSub handles x IN (SELECT …), x = ANY (SELECT …), x <> ALL (…) and
// (a, b) = (SELECT …): every value the subquery can produce meets the
// tested expression.
func (a *analyzer) compareSub(sl *pg_query.SubLink, sh *shape, sc *scope) error {
	op := opName(sl.GetOperName())
	if len(sl.GetOperName()) == 0 {
		op = "="
	}
	tests := []*pg_query.Node{sl.GetTestexpr()}
	if row := sl.GetTestexpr().GetRowExpr(); row != nil {
		tests = row.GetArgs()
	}
	if !sh.complete && sh.hasEncrypted() {
		return refuse("", "a subquery over * of a relation with unknown columns cannot be compared")
	}
	for i, t := range tests {
		tv, err := a.expr(t, sc)
		if err != nil {
			return err
		}
		if i >= len(sh.cols) {
			a.flowOut(tv)
			continue
		}
		for _, leaf := range sh.cols[i].leaves {
			if op != "=" && op != "<>" {
				if err := a.requirePlain(tv, "operator "+displayOp(op)); err != nil {
					return err
				}
				if err := a.requirePlain(leaf, "operator "+displayOp(op)); err != nil {
					return err
				}
				continue
			}
			if err := a.compareValues(tv, leaf); err != nil {
				return err
			}
		}
	}
	for _, c := range sh.cols[min(len(tests), len(sh.cols)):] {
		a.flowOut(c.v)
	}
	return nil
}

// trackedSetting maps a configuration parameter name to a tracked setting.
func trackedSetting(name string) (Setting, bool) {
	switch strings.ToLower(name) {
	case "role":
		return SettingRole, true
	case "session_authorization":
		return SettingSessionAuthorization, true
	case "search_path":
		return SettingSearchPath, true
	case "timezone":
		return SettingTimeZone, true
	case "extra_float_digits":
		return SettingExtraFloatDigits, true
	case "bytea_output":
		return SettingByteaOutput, true
	}
	return "", false
}

// setConfig turns set_config('name', 'value', is_local) into an Effect. It
// is accepted for a tracked setting only with constant arguments and only
// where it certainly runs exactly once (a direct target of a plain
// SELECT): a role the proxy believes in but PostgreSQL never switched to
// would grant the wrong keys.
func (a *analyzer) setConfig(fc *pg_query.FuncCall) error {
	args := fc.GetArgs()
	if len(args) != 3 {
		return nil
	}
	name, ok := constString(args[0])
	if !ok {
		return refuse("", "set_config with a setting name that is not a constant is not supported")
	}
	setting, tracked := trackedSetting(name)
	if !tracked {
		return nil
	}
	if !a.setConfigOK[fc] {
		return refuse("", "set_config of %s is only supported as a direct target of a SELECT without FROM or other clauses", setting)
	}
	local, ok := constBool(args[2])
	if !ok {
		return refuse("", "set_config of %s with an is_local flag that is not a constant is not supported", setting)
	}
	if c := args[1].GetAConst(); c != nil && c.GetIsnull() {
		a.stmt.Effects = append(a.stmt.Effects, Effect{Setting: setting, Reset: true, Local: local, Claimed: true})
		return nil
	}
	val, ok := constString(args[1])
	if !ok {
		switch setting {
		case SettingTimeZone, SettingRole, SettingSessionAuthorization:
			// The value (a parameter, say) is not needed: the proxy
			// reads TimeZone from PostgreSQL's reports, and a role
			// claimed by set_config gets no grants until PostgreSQL
			// confirms it.
			a.stmt.Effects = append(a.stmt.Effects, Effect{Setting: setting, Local: local, Claimed: true, Unknown: true})
			return nil
		}
		return refuse("", "set_config of %s with a value that is not a constant is not supported", setting)
	}
	e, err := stringEffect(setting, val)
	if err != nil {
		return err
	}
	e.Local, e.Claimed = local, true
	a.stmt.Effects = append(a.stmt.Effects, e)
	return nil
}

// constString reads a string constant, looking through casts.
func constString(n *pg_query.Node) (string, bool) {
	for tc := n.GetTypeCast(); tc != nil; tc = n.GetTypeCast() {
		n = tc.GetArg()
	}
	c := n.GetAConst()
	if c == nil || c.GetIsnull() {
		return "", false
	}
	if s := c.GetSval(); s != nil {
		return s.GetSval(), true
	}
	return "", false
}

// constBool reads a boolean constant as PostgreSQL's boolin would.
func constBool(n *pg_query.Node) (bool, bool) {
	for tc := n.GetTypeCast(); tc != nil; tc = n.GetTypeCast() {
		n = tc.GetArg()
	}
	c := n.GetAConst()
	if c == nil {
		return false, false
	}
	if b := c.GetBoolval(); b != nil {
		return b.GetBoolval(), true
	}
	if s := c.GetSval(); s != nil {
		return parseBool(s.GetSval())
	}
	return false, false
}

func parseBool(s string) (bool, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "":
		return false, false
	case strings.HasPrefix("true", s), strings.HasPrefix("yes", s), s == "on", s == "1":
		return true, true
	case strings.HasPrefix("false", s), strings.HasPrefix("no", s), s == "of", s == "off", s == "0":
		return false, true
	}
	return false, false
}
