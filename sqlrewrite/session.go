package sqlrewrite

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

func (a *analyzer) transaction(ts *pg_query.TransactionStmt, st *Statement) {
	st.Kind = KindTransaction
	switch ts.GetKind() {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		st.Tx = TxBegin
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		st.Tx = TxCommit
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.Tx = TxRollback
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.Tx, st.Savepoint = TxSavepoint, ts.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.Tx, st.Savepoint = TxRelease, ts.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.Tx, st.Savepoint = TxRollbackTo, ts.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		st.Tx = TxPrepare
	default:
		// COMMIT PREPARED / ROLLBACK PREPARED act on another, already
		// detached transaction: nothing changes for this session.
		st.Kind = KindOther
	}
}

// variableSet handles SET, SET LOCAL, RESET and RESET ALL.
func (a *analyzer) variableSet(vs *pg_query.VariableSetStmt, st *Statement) error {
	st.Kind = KindSet
	switch vs.GetKind() {
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		// Role and session authorization are not reset by RESET ALL
		// (GUC_NO_RESET_ALL); the proxy applies SettingAll accordingly.
		st.Effects = append(st.Effects, Effect{Setting: SettingAll})
		return nil
	case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
		if s, ok := trackedSetting(vs.GetName()); ok {
			st.Effects = append(st.Effects, Effect{Setting: s, Reset: true, Local: vs.GetIsLocal()})
		}
		return nil
	case pg_query.VariableSetKind_VAR_SET_VALUE:
		s, ok := trackedSetting(vs.GetName())
		if !ok {
			return nil
		}
		e, err := setArgsEffect(s, vs.GetArgs())
		if err != nil {
			return err
		}
		e.Local = vs.GetIsLocal()
		st.Effects = append(st.Effects, e)
	}
	// SET … FROM CURRENT keeps the value; SET TRANSACTION and SET SESSION
	// CHARACTERISTICS touch nothing tracked.
	return nil
}

// setArgsEffect computes the effect of SET name TO args, with the value
// PostgreSQL stores (flatten_set_variable_args).
func setArgsEffect(s Setting, args []*pg_query.Node) (Effect, error) {
	if s == SettingSearchPath {
		// Every element is one schema name: a string 'a, b' is the single
		// schema "a, b", exactly as PostgreSQL quotes it.
		vals := []string{}
		for _, n := range args {
			v, ok := settingText(n)
			if !ok {
				return Effect{}, refuse("", "unsupported value for search_path")
			}
			if len(v) > maxIdentLen {
				v = truncateIdent(v)
			}
			vals = append(vals, v)
		}
		return Effect{Setting: s, Values: vals}, nil
	}
	if len(args) != 1 {
		return Effect{}, refuse("", "unsupported value for %s", s)
	}
	if s == SettingTimeZone {
		if tc := args[0].GetTypeCast(); tc != nil {
			v, err := intervalZone(tc)
			return Effect{Setting: s, Values: []string{v}}, err
		}
	}
	v, ok := settingText(args[0])
	if !ok {
		return Effect{}, refuse("", "unsupported value for %s", s)
	}
	return stringEffect(s, v)
}

// settingText is the text of a numeric or string constant argument of SET.
func settingText(n *pg_query.Node) (string, bool) {
	c := n.GetAConst()
	if c == nil || c.GetIsnull() {
		return "", false
	}
	switch v := c.GetVal().(type) {
	case *pg_query.A_Const_Sval:
		return v.Sval.GetSval(), true
	case *pg_query.A_Const_Ival:
		return strconv.Itoa(int(v.Ival.GetIval())), true
	case *pg_query.A_Const_Fval:
		return v.Fval.GetFval(), true
	}
	return "", false
}

// stringEffect is the effect of setting s to the string v.
func stringEffect(s Setting, v string) (Effect, error) {
	e := Effect{Setting: s}
	switch s {
	case SettingRole:
		// "none" is no role (the session user), which is not the same
		// as RESET: that restores the role's default, as ALTER ROLE …
		// SET role may give one.
		if v == "none" {
			v = ""
		}
		e.Values = []string{v}
	case SettingSearchPath:
		e.Values = ParseSearchPath(v)
	case SettingTimeZone:
		z, err := timeZoneValue(v)
		if err != nil {
			return e, err
		}
		e.Values = []string{z}
	default:
		e.Values = []string{v}
	}
	return e, nil
}

var (
	hoursRe      = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	oddNumberRe  = regexp.MustCompile(`(?i)^[+-]?(0x|inf|nan)`)
	hourMinuteRe = regexp.MustCompile(`^\s*([+-]?)([0-9]{1,2}):([0-9]{2})\s*$`)
)

// timeZoneValue is what PostgreSQL's check_timezone makes of a string: a
// number is an hour offset in the SQL sign convention, stored as a POSIX
// zone like <-07>+07; anything else is a zone name, kept as written
// (PostgreSQL shows the tz database's spelling of a name's case).
func timeZoneValue(v string) (string, error) {
	t := strings.TrimLeft(v, " \t\n\r\f\v")
	if oddNumberRe.MatchString(t) {
		return "", refuse("", "unsupported time zone value")
	}
	if !hoursRe.MatchString(t) {
		return v, nil
	}
	hours, err := strconv.ParseFloat(t, 64)
	if err != nil || math.Abs(hours) > 24*7 {
		return "", refuse("", "unsupported time zone value")
	}
	return offsetZone(int64(-hours * 3600)), nil
}

// intervalZone handles SET TIME ZONE INTERVAL '±HH:MM' [HOUR TO MINUTE].
func intervalZone(tc *pg_query.TypeCast) (string, error) {
	parts := typeNameParts(tc.GetTypeName())
	s, ok := constString(tc.GetArg())
	m := hourMinuteRe.FindStringSubmatch(s)
	if !ok || len(parts) == 0 || parts[len(parts)-1] != "interval" || m == nil {
		return "", refuse("", "unsupported time zone interval")
	}
	h, _ := strconv.Atoi(m[2])
	mi, _ := strconv.Atoi(m[3])
	if mi >= 60 {
		return "", refuse("", "unsupported time zone interval")
	}
	secs := int64(h*3600 + mi*60)
	if m[1] == "-" {
		secs = -secs
	}
	return offsetZone(-secs), nil
}

// offsetZone is pg_tzset_offset's name for a zone gmtoffset seconds east
// of Greenwich in POSIX convention (west positive).
func offsetZone(gmtoffset int64) string {
	abs := gmtoffset
	if abs < 0 {
		abs = -abs
	}
	off := fmt.Sprintf("%02d", abs/3600)
	if rem := abs % 3600; rem != 0 {
		off += fmt.Sprintf(":%02d", rem/60)
		if rem%60 != 0 {
			off += fmt.Sprintf(":%02d", rem%60)
		}
	}
	if gmtoffset > 0 {
		return "<-" + off + ">+" + off
	}
	return "<+" + off + ">-" + off
}

func (a *analyzer) discard(ds *pg_query.DiscardStmt, st *Statement) {
	st.Kind = KindOther
	switch ds.GetTarget() {
	case pg_query.DiscardMode_DISCARD_ALL:
		st.Kind = KindSet
		st.Effects = append(st.Effects, Effect{Setting: SettingDiscardAll})
	}
}

// markSetConfig marks the set_config calls of a top-level SELECT whose
// effect is certain: direct targets of a SELECT with nothing but a target
// list, which runs each exactly once.
func (a *analyzer) markSetConfig(s *pg_query.SelectStmt) {
	if s.GetOp() != pg_query.SetOperation_SETOP_NONE || !onlyTargets(s) {
		return
	}
	for _, t := range s.GetTargetList() {
		if fc := t.GetResTarget().GetVal().GetFuncCall(); fc != nil {
			a.setConfigOK[fc] = true
		}
	}
}

// onlyTargets reports whether s has no clause besides its target list.
func onlyTargets(s *pg_query.SelectStmt) bool {
	return len(s.GetDistinctClause()) == 0 && s.GetIntoClause() == nil &&
		len(s.GetFromClause()) == 0 && s.GetWhereClause() == nil &&
		len(s.GetGroupClause()) == 0 && s.GetHavingClause() == nil &&
		len(s.GetWindowClause()) == 0 && len(s.GetValuesLists()) == 0 &&
		len(s.GetSortClause()) == 0 && s.GetLimitOffset() == nil &&
		s.GetLimitCount() == nil && len(s.GetLockingClause()) == 0 &&
		s.GetWithClause() == nil
}

// ParseSearchPath splits a search_path string as PostgreSQL's
// SplitIdentifierString does: comma-separated, whitespace trimmed, quoted
// identifiers keep their case (with "" for a quote), unquoted ones are
// folded to lower case; names are truncated to 63 bytes. It is best
// effort on malformed input, which PostgreSQL itself rejects.
func ParseSearchPath(s string) []string {
	out := []string{}
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out
		}
		var name string
		if s[i] == '"' {
			end := quotedEnd(s, i)
			name = unquoteIdent(s[i:end])
			i = end
		} else {
			j := i
			for j < len(s) && s[j] != ',' && !isSpace(s[j]) {
				j++
			}
			name = lowerASCII(s[i:j])
			i = j
		}
		if len(name) > maxIdentLen {
			name = truncateIdent(name)
		}
		if name != "" {
			out = append(out, name)
		}
		skip()
		if i >= len(s) {
			return out
		}
		if s[i] != ',' {
			// Malformed: skip to the next separator.
			for i < len(s) && s[i] != ',' {
				i++
			}
		}
		i++
	}
}
