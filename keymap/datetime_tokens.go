package keymap

import "sort"

// Token types of PostgreSQL's datetime.h. A field's kind is also its bit in
// the masks DecodeDateTime keeps (dtkMask).
const (
	tokReserved   = 0  // RESERV
	tokMonth      = 1  // MONTH
	tokYear       = 2  // YEAR
	tokDay        = 3  // DAY
	tokTZ         = 5  // TZ: fixed-offset zone abbreviation
	tokDTZ        = 6  // DTZ: fixed-offset daylight-time abbreviation
	tokDynTZ      = 7  // DYNTZ: abbreviation whose offset depends on a zone
	tokIgnore     = 8  // IGNORE_DTF
	tokAMPM       = 9  // AMPM
	tokHour       = 10 // HOUR
	tokMinute     = 11 // MINUTE
	tokSecond     = 12 // SECOND
	tokMillisec   = 13 // MILLISECOND
	tokMicrosec   = 14 // MICROSECOND
	tokDOY        = 15 // DOY
	tokDOW        = 16 // DOW
	tokUnits      = 17 // UNITS
	tokADBC       = 18 // ADBC
	tokISOTime    = 23 // ISOTIME
	tokDTZMod     = 28 // DTZMOD: "DST" after a zone abbreviation
	tokUnknown    = 31 // UNKNOWN_FIELD
	maskDate      = 1<<tokYear | 1<<tokMonth | 1<<tokDay
	maskAllSecs   = 1<<tokSecond | 1<<tokMillisec | 1<<tokMicrosec
	maskTime      = 1<<tokHour | 1<<tokMinute | maskAllSecs
	maskTZ        = 1 << tokTZ
	maskDateTimeZ = maskDate | maskTime | maskTZ
)

func dtkMask(tok int) int { return 1 << tok }

// Token values (DTK_* of datetime.h) used by reserved words and units.
const (
	dtkDate      = 2 // a date, the normal result
	dtkTime      = 3 // ISOTIME's value: the next field is a time
	dtkEarly     = 9
	dtkLate      = 10
	dtkEpoch     = 11
	dtkNow       = 12
	dtkYesterday = 13
	dtkToday     = 14
	dtkTomorrow  = 15
	dtkZulu      = 16
	dtkSecond    = 18
	dtkMinute    = 19
	dtkHour      = 20
	dtkDay       = 21
	dtkMonth     = 23
	dtkYear      = 25
	dtkJulian    = 31
	dtkDOW       = 32
	dtkDOY       = 33
	dtkISOYear   = 36
	dtkISODOW    = 37

	valAM   = 0
	valPM   = 1
	valHR24 = 2
	valAD   = 0
	valBC   = 1
)

// tokMaxLen is TOKMAXLEN: tokens compare on their first ten bytes.
const tokMaxLen = 10

type dateToken struct {
	text string // lower case
	typ  int
	val  int
}

// dateTokens is PostgreSQL 15's datetktbl, sorted by text.
var dateTokens = []dateToken{
	{"-infinity", tokReserved, dtkEarly},
	{"ad", tokADBC, valAD},
	{"allballs", tokReserved, dtkZulu},
	{"am", tokAMPM, valAM},
	{"apr", tokMonth, 4},
	{"april", tokMonth, 4},
	{"at", tokIgnore, 0},
	{"aug", tokMonth, 8},
	{"august", tokMonth, 8},
	{"bc", tokADBC, valBC},
	{"d", tokUnits, dtkDay},
	{"dec", tokMonth, 12},
	{"december", tokMonth, 12},
	{"dow", tokUnits, dtkDOW},
	{"doy", tokUnits, dtkDOY},
	{"dst", tokDTZMod, secsPerHour},
	{"epoch", tokReserved, dtkEpoch},
	{"feb", tokMonth, 2},
	{"february", tokMonth, 2},
	{"fri", tokDOW, 5},
	{"friday", tokDOW, 5},
	{"h", tokUnits, dtkHour},
	{"infinity", tokReserved, dtkLate},
	{"isodow", tokUnits, dtkISODOW},
	{"isoyear", tokUnits, dtkISOYear},
	{"j", tokUnits, dtkJulian},
	{"jan", tokMonth, 1},
	{"january", tokMonth, 1},
	{"jd", tokUnits, dtkJulian},
	{"jul", tokMonth, 7},
	{"julian", tokUnits, dtkJulian},
	{"july", tokMonth, 7},
	{"jun", tokMonth, 6},
	{"june", tokMonth, 6},
	{"m", tokUnits, dtkMonth},
	{"mar", tokMonth, 3},
	{"march", tokMonth, 3},
	{"may", tokMonth, 5},
	{"mm", tokUnits, dtkMinute},
	{"mon", tokDOW, 1},
	{"monday", tokDOW, 1},
	{"nov", tokMonth, 11},
	{"november", tokMonth, 11},
	{"now", tokReserved, dtkNow},
	{"oct", tokMonth, 10},
	{"october", tokMonth, 10},
	{"on", tokIgnore, 0},
	{"pm", tokAMPM, valPM},
	{"s", tokUnits, dtkSecond},
	{"sat", tokDOW, 6},
	{"saturday", tokDOW, 6},
	{"sep", tokMonth, 9},
	{"sept", tokMonth, 9},
	{"september", tokMonth, 9},
	{"sun", tokDOW, 0},
	{"sunday", tokDOW, 0},
	{"t", tokISOTime, dtkTime},
	{"thu", tokDOW, 4},
	{"thur", tokDOW, 4},
	{"thurs", tokDOW, 4},
	{"thursday", tokDOW, 4},
	{"today", tokReserved, dtkToday},
	{"tomorrow", tokReserved, dtkTomorrow},
	{"tue", tokDOW, 2},
	{"tues", tokDOW, 2},
	{"tuesday", tokDOW, 2},
	{"wed", tokDOW, 3},
	{"wednesday", tokDOW, 3},
	{"weds", tokDOW, 3},
	{"y", tokUnits, dtkYear},
	{"yesterday", tokReserved, dtkYesterday},
}

const secsPerHour = 3600

// tokenKey is how datebsearch compares: strncmp over TOKMAXLEN bytes, so
// a key is its first ten bytes, and a shorter key ends at its end.
func tokenKey(s string) string {
	if len(s) > tokMaxLen {
		return s[:tokMaxLen]
	}
	return s
}

// searchTokens finds a lower-case word in a sorted token table.
func searchTokens[T any](table []T, text func(T) string, word string) (T, bool) {
	key := tokenKey(word)
	i := sort.Search(len(table), func(i int) bool { return tokenKey(text(table[i])) >= key })
	if i < len(table) && tokenKey(text(table[i])) == key {
		return table[i], true
	}
	var zero T
	return zero, false
}

// lookupDateToken is DecodeSpecial: a keyword's type and value, or
// tokUnknown.
func lookupDateToken(word string) (typ, val int) {
	t, ok := searchTokens(dateTokens, func(t dateToken) string { return t.text }, word)
	if !ok {
		return tokUnknown, 0
	}
	return t.typ, t.val
}

// zoneAbbrev is one abbreviation of the timezone_abbreviations set: a fixed
// offset (seconds east of UTC; dst marks daylight time) or, when zone is
// set, an abbreviation whose meaning the named zone's history decides.
type zoneAbbrev struct {
	abbrev string // lower case
	offset int
	dst    bool
	zone   string
}

// lookupZoneAbbrev is DecodeTimezoneAbbrev over PostgreSQL's Default
// abbreviation set (defaultZoneAbbrevs, generated from timezonesets/Default).
func lookupZoneAbbrev(word string) (zoneAbbrev, bool) {
	return searchTokens(defaultZoneAbbrevs, func(a zoneAbbrev) string { return a.abbrev }, word)
}

// abbrevType is the token type of an abbreviation.
func (a zoneAbbrev) typ() int {
	switch {
	case a.zone != "":
		return tokDynTZ
	case a.dst:
		return tokDTZ
	}
	return tokTZ
}

// isDateKeyword reports whether word is in datetktbl (ParseDateTime only
// searches that table, not the zone abbreviations).
func isDateKeyword(word string) bool {
	typ, _ := lookupDateToken(word)
	return typ != tokUnknown
}
