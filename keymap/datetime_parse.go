package keymap

import (
	"math"
	"strconv"
	"time"
)

// parseDateTime reads the date/time literals clients send: ISO 8601 dates
// with an optional time after a space or T, fractional seconds, a zone
// (Z, ±HH[[:]MM[[:]SS]], UTC/GMT or an IANA name) and a BC/AD suffix, plus
// the special values infinity, -infinity and epoch, in any case. It is a
// subset of PostgreSQL's datetime input: the ISO forms, not DateStyle-
// dependent ones like 01/02/2024, nor the clock-dependent now/today.
func parseDateTime(src []byte) (dateTime, error) {
	s := trimSpace(src)
	switch {
	case equalFold(s, "infinity"), equalFold(s, "+infinity"):
		return dateTime{infinity: 1}, nil
	case equalFold(s, "-infinity"):
		return dateTime{infinity: -1}, nil
	case equalFold(s, "epoch"):
		return dateTime{year: 1970, month: 1, day: 1, hasOffset: true}, nil
	}
	s, bc := cutEra(s)
	p := dtParser{s: s}
	dt, err := p.parse()
	if err != nil {
		return dateTime{}, err
	}
	if dt.year == 0 {
		return dateTime{}, errDateField
	}
	if bc {
		dt.year = 1 - dt.year
	}
	return dt, dt.validate()
}

// cutEra removes a trailing " BC" or " AD".
func cutEra(s []byte) ([]byte, bool) {
	n := len(s)
	if n < 3 || !isSpace(s[n-3]) {
		return s, false
	}
	era := s[n-2:]
	if !equalFold(era, "bc") && !equalFold(era, "ad") {
		return s, false
	}
	return trimSpace(s[:n-2]), equalFold(era, "bc")
}

type dtParser struct {
	s []byte
	i int
}

func (p *dtParser) parse() (dateTime, error) {
	var dt dateTime
	var ok bool
	if dt.year, ok = p.number(4, 7); !ok || !p.skip('-') {
		return dt, errSyntax
	}
	if dt.month, ok = p.number(1, 2); !ok || !p.skip('-') {
		return dt, errSyntax
	}
	if dt.day, ok = p.number(1, 2); !ok {
		return dt, errSyntax
	}
	if p.done() {
		return dt, nil
	}
	if !p.separator() {
		return dt, errSyntax
	}
	if err := p.clock(&dt); err != nil {
		return dt, err
	}
	p.spaces()
	if p.done() {
		return dt, nil
	}
	if err := p.zone(&dt); err != nil {
		return dt, err
	}
	if !p.done() {
		return dt, errSyntax
	}
	return dt, nil
}

// clock reads HH:MM[:SS[.fraction]].
func (p *dtParser) clock(dt *dateTime) error {
	var ok bool
	if dt.hour, ok = p.number(1, 2); !ok || !p.skip(':') {
		return errSyntax
	}
	if dt.min, ok = p.number(2, 2); !ok {
		return errSyntax
	}
	if !p.skip(':') {
		return nil
	}
	if dt.sec, ok = p.number(2, 2); !ok {
		return errSyntax
	}
	if !p.skip('.') {
		return nil
	}
	start := p.i
	for !p.done() && isDigit(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return errSyntax
	}
	dt.usec = fractionToMicros(p.s[start:p.i])
	return nil
}

// fractionToMicros rounds fractional-second digits to microseconds the way
// PostgreSQL does (rint of a double: half to even). The result may be a full
// second, which validate carries.
func fractionToMicros(digits []byte) int {
	if len(digits) <= 6 {
		usec := 0
		for i := range 6 {
			usec *= 10
			if i < len(digits) {
				usec += int(digits[i] - '0')
			}
		}
		return usec
	}
	f, err := strconv.ParseFloat("0."+string(digits), 64)
	if err != nil {
		return 0
	}
	return int(math.RoundToEven(f * 1e6))
}

// zone reads Z, a numeric offset, or a zone name.
func (p *dtParser) zone(dt *dateTime) error {
	switch c := p.s[p.i]; {
	case c == 'Z' || c == 'z':
		p.i++
		dt.hasOffset = true
		return nil
	case c == '+' || c == '-':
		p.i++
		off, ok := p.offset()
		if !ok {
			return errSyntax
		}
		if c == '-' {
			off = -off
		}
		dt.hasOffset, dt.offset = true, off
		return nil
	}
	return p.zoneName(dt)
}

// offset reads HH, HHMM, HHMMSS or HH:MM[:SS] (hours may be one digit).
// PostgreSQL limits a numeric offset to 15:59:59.
func (p *dtParser) offset() (int, bool) {
	start := p.i
	for !p.done() && isDigit(p.s[p.i]) {
		p.i++
	}
	digits := p.s[start:p.i]
	var h, m, s int
	switch len(digits) {
	case 1, 2:
		h = atoi(digits)
		if p.skip(':') {
			var ok bool
			if m, ok = p.number(2, 2); !ok {
				return 0, false
			}
			if p.skip(':') {
				if s, ok = p.number(2, 2); !ok {
					return 0, false
				}
			}
		}
	case 4:
		h, m = atoi(digits[:2]), atoi(digits[2:])
	case 6:
		h, m, s = atoi(digits[:2]), atoi(digits[2:4]), atoi(digits[4:])
	default:
		return 0, false
	}
	if h > 15 || m > 59 || s > 59 {
		return 0, false
	}
	return h*3600 + m*60 + s, true
}

// zoneName accepts UTC/GMT and IANA zone names (as the session's TimeZone
// would be spelled).
func (p *dtParser) zoneName(dt *dateTime) error {
	name := string(p.s[p.i:])
	p.i = len(p.s)
	if equalFold([]byte(name), "utc") || equalFold([]byte(name), "gmt") {
		dt.hasOffset = true
		return nil
	}
	if name == "" || name == "Local" {
		return errBadZone
	}
	// PostgreSQL reads a zone in a literal as an abbreviation first: CET
	// there is always +01, while the zone file CET observes summer time.
	for _, a := range fixedAbbrevs {
		if equalFold([]byte(name), a.name) {
			dt.hasOffset, dt.offset = true, a.offset
			return nil
		}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return errBadZone
	}
	dt.loc = loc
	return nil
}

// fixedAbbrevs are abbreviations of PostgreSQL's Default
// timezone_abbreviations that are also names of zone files with daylight
// saving rules; as abbreviations they have one fixed offset.
var fixedAbbrevs = [...]struct {
	name   string // lower case
	offset int
}{{"cet", 3600}, {"eet", 7200}, {"met", 3600}, {"wet", 0}}

// separator accepts T or spaces between date and time.
func (p *dtParser) separator() bool {
	if p.s[p.i] == 'T' || p.s[p.i] == 't' {
		p.i++
		return !p.done()
	}
	start := p.i
	p.spaces()
	return p.i > start && !p.done()
}

func (p *dtParser) spaces() {
	for !p.done() && isSpace(p.s[p.i]) {
		p.i++
	}
}

func (p *dtParser) done() bool { return p.i >= len(p.s) }

func (p *dtParser) skip(c byte) bool {
	if p.done() || p.s[p.i] != c {
		return false
	}
	p.i++
	return true
}

// number reads between min and max decimal digits.
func (p *dtParser) number(min, max int) (int, bool) {
	start := p.i
	for !p.done() && isDigit(p.s[p.i]) && p.i-start < max {
		p.i++
	}
	if p.i-start < min || (!p.done() && isDigit(p.s[p.i])) {
		return 0, false
	}
	return atoi(p.s[start:p.i]), true
}

func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

// validate checks the calendar and clock and normalises the carries
// PostgreSQL allows: 24:00:00 is the next midnight, second 60 the next
// minute, and fractions that round up to a whole second.
func (dt *dateTime) validate() error {
	if dt.month < 1 || dt.month > 12 || dt.day < 1 || dt.day > daysIn(dt.year, dt.month) {
		return errDateField
	}
	if dt.min > 59 || dt.sec > 60 || dt.hour > 24 ||
		(dt.hour == 24 && (dt.min > 0 || dt.sec > 0 || dt.usec > 0)) ||
		(dt.sec == 60 && dt.usec > 0) {
		return errTimeField
	}
	if dt.usec == usecPerSec {
		dt.usec = 0
		dt.sec++
	}
	if dt.hour == 24 || dt.sec == 60 {
		t := time.Date(dt.year, time.Month(dt.month), dt.day, dt.hour, dt.min, dt.sec, 0, time.UTC)
		dt.year, dt.day, dt.hour, dt.min, dt.sec = t.Year(), t.Day(), t.Hour(), t.Minute(), t.Second()
		dt.month = int(t.Month())
	}
	return nil
}
