package keymap

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Time zones named in literals, resolved as PostgreSQL's pg_tzset does,
// and the UTC offset PostgreSQL's DetermineTimeZoneOffset and
// DetermineTimeZoneAbbrevOffset give a wall-clock reading in a zone.

const tzStrLenMax = 255 // TZ_STRLEN_MAX

// lookupZoneName is pg_tzset for a zone name from a literal (ParseDateTime
// has folded it to lower case): a zone file of the tz database matched
// case-insensitively, GMT, or a POSIX zone spec such as UTC+3 (POSIX
// signs: hours WEST of UTC) or EST5EDT. nil if PostgreSQL would not
// recognise it.
func lookupZoneName(name string) *time.Location {
	if len(name) > tzStrLenMax {
		return nil
	}
	upper := strings.ToUpper(name)
	if upper == "GMT" {
		return time.FixedZone("GMT", 0)
	}
	if loc := loadZoneFile(name); loc != nil {
		return loc
	}
	if strings.HasPrefix(upper, ":") {
		return nil
	}
	return posixZone(upper)
}

var (
	// zoneFiles caches the names that match a path of the tz database:
	// its *time.Location, or nil for a path that is not a zone file (a
	// directory, zone.tab). Names that match no path are not cached, so
	// the cache stays as small as the database.
	zoneFiles   sync.Map // lower-case name → *time.Location
	zoneDirList sync.Map // directory → map[lower-case entry]entry
)

// zoneInfoDir is where the tz database is, searched as Go's time package
// does; "" if this machine has none (Go's embedded copy may still be
// there, see loadZoneFile).
var zoneInfoDir = sync.OnceValue(func() string {
	dirs := []string{"/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ", "/etc/zoneinfo"}
	if z := os.Getenv("ZONEINFO"); z != "" {
		dirs = append([]string{z}, dirs...)
	}
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return ""
})

// loadZoneFile finds a zone file whose path matches name case-insensitively,
// component by component, skipping hidden entries, as pg_open_tzfile does.
func loadZoneFile(name string) *time.Location {
	name = strings.ToLower(name)
	if v, ok := zoneFiles.Load(name); ok {
		return v.(*time.Location)
	}
	dir := zoneInfoDir()
	if dir == "" {
		loc := loadZoneByGuess(name)
		if loc != nil {
			zoneFiles.Store(name, loc)
		}
		return loc
	}
	loc, matched := loadZoneFromDir(dir, name)
	if matched {
		zoneFiles.Store(name, loc)
	}
	return loc
}

// loadZoneFromDir loads the zone file name matches; matched reports that
// it matches a path at all.
func loadZoneFromDir(dir, name string) (loc *time.Location, matched bool) {
	path, canon := dir, ""
	for _, part := range strings.Split(name, "/") {
		entry, ok := dirEntries(path)[part]
		if !ok {
			return nil, false
		}
		path = filepath.Join(path, entry)
		canon = strings.TrimPrefix(canon+"/"+entry, "/")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, true
	}
	loc, err = time.LoadLocationFromTZData(canon, data)
	if err != nil {
		return nil, true
	}
	return loc, true
}

// dirEntries lists a directory of the tz database by lower-case name.
func dirEntries(dir string) map[string]string {
	if v, ok := zoneDirList.Load(dir); ok {
		return v.(map[string]string)
	}
	m := map[string]string{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if n := e.Name(); !strings.HasPrefix(n, ".") {
				if _, dup := m[strings.ToLower(n)]; !dup {
					m[strings.ToLower(n)] = n
				}
			}
		}
	}
	zoneDirList.Store(dir, m)
	return m
}

// loadZoneByGuess serves machines without a tz database directory (Go's
// embedded copy is looked up case-sensitively): it tries the usual
// capitalisations of the name.
func loadZoneByGuess(name string) *time.Location {
	for _, guess := range []string{titleZone(name), strings.ToUpper(name), name} {
		if loc, err := time.LoadLocation(guess); err == nil && guess != "" && guess != "Local" {
			return loc
		}
	}
	return nil
}

func titleZone(name string) string {
	b := []byte(name)
	up := true
	for i, c := range b {
		if up {
			b[i] = toUpper(c)
		}
		up = c == '/' || c == '_' || c == '-'
	}
	return string(b)
}

func toUpper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// posixZone is tzparse for the POSIX zone specs a literal can hold
// (ParseDateTime keeps no ',' or '<' in a field, so no rules or quoted
// names): STD offset [DST [offset]], with the USA's rules when there is
// a DST part, as PostgreSQL (which no longer reads posixrules) does.
func posixZone(s string) *time.Location {
	std, rest := posixName(s)
	if rest == "" {
		return nil
	}
	stdOff, rest, ok := posixOffset(rest)
	if !ok {
		return nil
	}
	if rest == "" {
		return time.FixedZone(std, -stdOff)
	}
	dst, rest := posixName(rest)
	if dst == "" {
		return nil
	}
	dstOff := stdOff - secsPerHour
	if rest != "" {
		if dstOff, rest, ok = posixOffset(rest); !ok || rest != "" {
			return nil
		}
	}
	spec := fmt.Sprintf("<%s>%s<%s>%s,M3.2.0,M11.1.0", std, posixOffsetText(stdOff), dst, posixOffsetText(dstOff))
	loc, err := time.LoadLocationFromTZData(s, tzifWithFooter(std, -stdOff, spec))
	if err != nil {
		return nil
	}
	return loc
}

// posixName is getzname: everything up to a digit, ',', '-' or '+'.
func posixName(s string) (name, rest string) {
	i := strings.IndexAny(s, "0123456789,-+")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// posixOffset is getoffset: [+-]hh[:mm[:ss]] with hh up to 167 and ss up to
// 60, in seconds (POSIX sign: west positive).
func posixOffset(s string) (int, string, bool) {
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	secs := 0
	for i, limit := range [...]int{167, 59, 60} {
		if i > 0 {
			if !strings.HasPrefix(s, ":") {
				break
			}
			s = s[1:]
		}
		n, rest, ok := posixNum(s, limit)
		if !ok {
			return 0, "", false
		}
		secs += n * [...]int{3600, 60, 1}[i]
		s = rest
	}
	if neg {
		secs = -secs
	}
	return secs, s, true
}

// posixNum is getnum: digits whose value never exceeds limit.
func posixNum(s string, limit int) (int, string, bool) {
	if s == "" || !isDigit(s[0]) {
		return 0, "", false
	}
	n, i := 0, 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		n = n*10 + int(s[i]-'0')
		if n > limit {
			return 0, "", false
		}
	}
	return n, s[i:], true
}

func posixOffsetText(secs int) string {
	sign := "+"
	if secs < 0 {
		sign, secs = "-", -secs
	}
	return fmt.Sprintf("%s%d:%02d:%02d", sign, secs/3600, secs/60%60, secs%60)
}

// tzifWithFooter builds a TZif v2 file without transitions whose footer
// TZ string gives the rules, which is how Go's time package can be given
// a POSIX zone.
func tzifWithFooter(name string, offset int, footer string) []byte {
	header := func(b []byte, typecnt, charcnt uint32) []byte {
		b = append(b, "TZif2"...)
		b = append(b, make([]byte, 15)...)
		for _, n := range [6]uint32{0, 0, 0, 0, typecnt, charcnt} {
			b = binary.BigEndian.AppendUint32(b, n)
		}
		return b
	}
	b := header(nil, 0, 0)
	b = header(b, 1, uint32(len(name)+1))
	b = binary.BigEndian.AppendUint32(b, uint32(int32(offset)))
	b = append(b, 0, 0)
	b = append(b, name...)
	b = append(b, 0, '\n')
	b = append(b, footer...)
	return append(b, '\n')
}

// determineTimeZoneOffset is DetermineTimeZoneOffset: the offset (seconds
// WEST of UTC, PostgreSQL's sign) of a wall-clock reading in loc. In a
// spring-forward gap the offset from before the change applies, in a
// fall-back overlap the one from after it.
func determineTimeZoneOffset(tm *pgTm, loc *time.Location) int {
	tz, _ := determineTimeZoneOffsetInternal(tm, loc)
	return tz
}

// determineTimeZoneOffsetInternal also returns the Unix time the reading
// stands for (0 when out of range, where UTC is assumed).
func determineTimeZoneOffsetInternal(tm *pgTm, loc *time.Location) (int, int64) {
	if !validJulian(tm.year, tm.mon) {
		return 0, 0
	}
	day := int64(int32(date2j(tm.year, tm.mon, tm.mday)-unixEpochJDate)) * secsPerDay
	sec := int32(tm.sec) + (int32(tm.min)+int32(tm.hour)*60)*60
	mytime := day + int64(sec)
	if mytime < 0 && day > 0 {
		return 0, 0
	}
	before, after, boundary, hasBoundary := nextZoneBoundary(mytime-secsPerDay, loc)
	beforeTime := mytime - int64(before)
	if !hasBoundary {
		return -before, beforeTime
	}
	afterTime := mytime - int64(after)
	switch {
	case beforeTime < boundary && afterTime < boundary:
		return -before, beforeTime
	case beforeTime > boundary && afterTime >= boundary:
		return -after, afterTime
	case beforeTime > afterTime:
		return -before, beforeTime
	}
	return -after, afterTime
}

// nextZoneBoundary is pg_next_dst_boundary: the offsets (seconds east)
// before and after the first zone change after t, and its time.
func nextZoneBoundary(t int64, loc *time.Location) (before, after int, boundary int64, ok bool) {
	at := time.Unix(t, 0).In(loc)
	_, before = at.Zone()
	_, end := at.ZoneBounds()
	if end.IsZero() {
		return before, 0, 0, false
	}
	_, after = end.Zone()
	return before, after, end.Unix(), true
}

// determineTimeZoneAbbrevOffset is DetermineTimeZoneAbbrevOffset for a
// dynamic abbreviation (MSK → Europe/Moscow): the offset the abbreviation
// had in the zone's history nearest to the reading, or else the zone's
// offset at the reading.
func determineTimeZoneAbbrevOffset(tm *pgTm, abbrev string, loc *time.Location) int {
	tz, t := determineTimeZoneOffsetInternal(tm, loc)
	if off, ok := interpretZoneAbbrev(strings.ToUpper(abbrev), t, loc); ok {
		return -off
	}
	return tz
}

// zonePeriod is one transition of a zone: from at on, name and offset
// (seconds east) apply.
type zonePeriod struct {
	at     int64
	name   string
	offset int
}

var zoneHistories sync.Map // *time.Location → []zonePeriod

// zoneHistoryEnd bounds the transitions listed for zones whose rules go on
// forever; PostgreSQL's own list stops some 400 years out too.
var zoneHistoryEnd = time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// zoneHistory lists loc's transitions in order.
func zoneHistory(loc *time.Location) []zonePeriod {
	if v, ok := zoneHistories.Load(loc); ok {
		return v.([]zonePeriod)
	}
	var out []zonePeriod
	_, end := time.Unix(-1<<62, 0).In(loc).ZoneBounds()
	for !end.IsZero() && end.Unix() < zoneHistoryEnd && len(out) < 10000 {
		name, off := end.Zone()
		out = append(out, zonePeriod{at: end.Unix(), name: name, offset: off})
		_, end = end.ZoneBounds()
	}
	zoneHistories.Store(loc, out)
	return out
}

// interpretZoneAbbrev is pg_interpret_timezone_abbrev: the offset of the
// last period before t that used the abbreviation, or else of the first
// one after t.
func interpretZoneAbbrev(abbrev string, t int64, loc *time.Location) (int, bool) {
	h := zoneHistory(loc)
	cutoff := sort.Search(len(h), func(i int) bool { return t < h[i].at })
	for i := cutoff - 1; i >= 0; i-- {
		if h[i].name == abbrev {
			return h[i].offset, true
		}
	}
	for i := cutoff; i < len(h); i++ {
		if h[i].name == abbrev {
			return h[i].offset, true
		}
	}
	return 0, false
}
