package proxy

import (
	"strings"
	"time"
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
