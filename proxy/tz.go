package proxy

import (
	"strings"
	"time"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// posixFixedZone reads a POSIX TZ string without daylight-saving rules: the
// form PostgreSQL reports after SET TIME ZONE 2 or an interval (<+02>-02,
// <-03:30>+03:30) and accepts as a TimeZone (UTC+3, XYZ-3:30). POSIX
// offsets count hours west of UTC. time.LoadLocation knows none of these.
func posixFixedZone(s string) (*time.Location, bool) {
	var name string
	if strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return nil, false
		}
		name, s = s[1:end], s[end+1:]
	} else {
		i := 0
		for i < len(s) && s[i]|0x20 >= 'a' && s[i]|0x20 <= 'z' {
			i++
		}
		if i < 3 {
			return nil, false
		}
		name, s = s[:i], s[i:]
	}
	sign := -1
	if s != "" && (s[0] == '+' || s[0] == '-') {
		if s[0] == '-' {
			sign = 1
		}
		s = s[1:]
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return nil, false
	}
	secs := 0
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i > 0 && len(p) != 2) {
			return nil, false
		}
		n := 0
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		if (i == 0 && n > 167) || (i > 0 && n > 59) {
			return nil, false
		}
		secs += n * [...]int{3600, 60, 1}[i]
	}
	return time.FixedZone(name, sign*secs), true
}

// checkZoneOrder refuses a query string in which a setting that decides
// how date/time values read or print changes before a statement whose
// values of an encrypted column of those types the proxy converts: it
// encrypts all of a string's literals, and sets up its COPY, under the
// settings in force when the string arrives, while PostgreSQL would read
// them under the new ones; and it learns the new settings
// (ParameterStatus) only at the string's end, too late to format results
// under them. Sent separately, the statement is planned once the new
// settings are known. The settings:
//
//   - TimeZone (SET TIME ZONE, set_config, RESET ALL, DISCARD ALL), for
//     timestamptz values, and for date and timestamp literals and COPY
//     data that may read the clock ('today', 'now'), which PostgreSQL
//     reads in the session's zone;
//   - DateStyle (SET DateStyle, RESET, set_config, RESET ALL, DISCARD
//     ALL), for date, timestamp and timestamptz values: it orders the
//     fields of 01/02/2024 and is the format of the text results.
func checkZoneOrder(plan *sqlrewrite.Plan) error {
	zone, style := false, false
	for _, st := range plan.Statements {
		if st == nil {
			continue
		}
		zone = zone || changesZone(st)
		style = style || changesDateStyle(plan, st)
		if zone && usesDateTime(plan, st, readsZone) {
			return newSQLError("0A000", "a timestamptz value of an encrypted column follows a change of TimeZone in the same query string; send it separately")
		}
		if style && usesDateTime(plan, st, readsDateStyle) {
			return newSQLError("0A000", "a date or time value of an encrypted column follows a change of DateStyle in the same query string; send it separately")
		}
	}
	return nil
}

func changesZone(st *sqlrewrite.Statement) bool {
	for _, e := range st.Effects {
		switch e.Setting {
		case sqlrewrite.SettingTimeZone, sqlrewrite.SettingAll, sqlrewrite.SettingDiscardAll:
			return true
		}
	}
	return false
}

// changesDateStyle reports a statement that may change DateStyle. The
// analysis does not track DateStyle, so a SET or RESET that names it, or
// any statement that names it and calls set_config (in any case, even in a
// comment or a string: the check errs on the side of refusing), counts,
// as do RESET ALL and DISCARD ALL.
func changesDateStyle(plan *sqlrewrite.Plan, st *sqlrewrite.Statement) bool {
	for _, e := range st.Effects {
		if e.Setting == sqlrewrite.SettingAll || e.Setting == sqlrewrite.SettingDiscardAll {
			return true
		}
	}
	if st.Start < 0 || st.End > len(plan.SQL) || st.Start > st.End {
		return true
	}
	text := strings.ToLower(plan.SQL[st.Start:st.End])
	return strings.Contains(text, "datestyle") && (st.Kind == sqlrewrite.KindSet || strings.Contains(text, "set_config"))
}

// dateTimeUse is how a statement uses an encrypted date/time column: a
// literal it encrypts (with its value), a column it returns, or a COPY.
type dateTimeUse struct {
	rule    *policy.ColumnRule
	literal *sqlrewrite.Literal // nil unless a literal
	copyIn  bool                // COPY … FROM STDIN
}

// readsZone: what the session's TimeZone changes.
func readsZone(u dateTimeUse) bool {
	switch {
	case u.rule.Type == policy.TypeTimestamptz:
		return true
	case u.literal != nil:
		return mayReadClock(u.literal.Value)
	}
	return u.copyIn
}

// readsDateStyle: what DateStyle changes.
func readsDateStyle(dateTimeUse) bool { return true }

// mayReadClock reports a literal that may hold one of the words PostgreSQL
// reads the clock for (now, today, tomorrow, yesterday).
func mayReadClock(v string) bool {
	v = strings.ToLower(v)
	for _, w := range []string{"now", "today", "tomorrow", "yesterday"} {
		if strings.Contains(v, w) {
			return true
		}
	}
	return false
}

// usesDateTime reports a use in st of an encrypted date, timestamp or
// timestamptz column for which affected holds: a literal the proxy
// encrypts, a column st may return, or one it COPYs.
func usesDateTime(plan *sqlrewrite.Plan, st *sqlrewrite.Statement, affected func(dateTimeUse) bool) bool {
	for _, e := range plan.Edits {
		if e.Start < st.Start || e.End > st.End {
			continue
		}
		lits := []*sqlrewrite.Literal{e.Literal}
		for _, p := range e.Parts {
			lits = append(lits, p.Literal)
		}
		for _, l := range lits {
			if l != nil && isDateTime(l.Rule) && affected(dateTimeUse{rule: l.Rule, literal: l}) {
				return true
			}
		}
	}
	for _, r := range st.Outputs {
		if isDateTime(r) && affected(dateTimeUse{rule: r}) {
			return true
		}
	}
	if st.Copy != nil {
		for _, r := range st.Copy.Rules {
			if isDateTime(r) && affected(dateTimeUse{rule: r, copyIn: st.Copy.From}) {
				return true
			}
		}
	}
	return false
}

func isDateTime(r *policy.ColumnRule) bool { return r != nil && r.Type.IsDateTime() }
