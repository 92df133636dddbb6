package proxy

import (
	"slices"
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

// checkZoneOrder refuses a query string in which the session's TimeZone
// changes (SET TIME ZONE, set_config, RESET ALL, DISCARD ALL) before a
// statement whose timestamptz values of an encrypted column the proxy
// converts: it encrypts all of a string's literals, and sets up its COPY,
// in the zone in force when the string arrives, while PostgreSQL would
// read them in the new one; and it learns the new zone (ParameterStatus)
// only at the string's end, too late to format results in it. Sent
// separately, the statement is planned once the new zone is known.
func checkZoneOrder(plan *sqlrewrite.Plan) error {
	changed := false
	for _, st := range plan.Statements {
		if st == nil {
			continue
		}
		changed = changed || changesZone(st)
		if changed && usesTimestamptz(plan, st) {
			return newSQLError("0A000", "a timestamptz value of an encrypted column follows a change of TimeZone in the same query string; send it separately")
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

// usesTimestamptz reports a timestamptz literal the proxy encrypts in st,
// a timestamptz column st may return, or one it COPYs.
func usesTimestamptz(plan *sqlrewrite.Plan, st *sqlrewrite.Statement) bool {
	for _, e := range plan.Edits {
		if e.Literal != nil && e.Start >= st.Start && e.End <= st.End && isTimestamptz(e.Literal.Rule) {
			return true
		}
	}
	rules := st.Outputs
	if st.Copy != nil {
		rules = append(slices.Clip(rules), st.Copy.Rules...)
	}
	return slices.ContainsFunc(rules, isTimestamptz)
}

func isTimestamptz(r *policy.ColumnRule) bool { return r != nil && r.Type == policy.TypeTimestamptz }
