package keymap

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file ports PostgreSQL 15's datetime input (utils/adt/datetime.c):
// ParseDateTime splits the literal into fields, DecodeDateTime gives them
// meaning. Names in comments are the C functions each part follows; the
// quirks are PostgreSQL's and kept on purpose, since the proxy must read a
// literal exactly as the server would have.

// dtFieldType is a field class of ParseDateTime (DTK_NUMBER, …).
type dtFieldType uint8

const (
	fieldNumber  dtFieldType = iota // digits, maybe one '.'
	fieldString                     // letters
	fieldDate                       // digits with delimiters, or a zone name
	fieldTime                       // digits with ':'
	fieldTZ                         // sign and digits
	fieldSpecial                    // sign and letters
)

type dtField struct {
	text string // letters folded to lower case
	typ  dtFieldType
}

const (
	maxDateFields = 25  // MAXDATEFIELDS
	maxDateLen    = 128 // MAXDATELEN
	// The work buffers of date_in and of timestamp_in/timestamptz_in:
	// a literal whose fields need more is invalid.
	dateWorkBuf      = maxDateLen + 1
	timestampWorkBuf = maxDateLen + maxDateFields
)

// C-locale character classes, as ParseDateTime uses them.
func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }
func isPunct(c byte) bool { return c > ' ' && c < 0x7f && !isAlnum(c) }
func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// splitter is ParseDateTime's state: the input and how much of the work
// buffer the fields have used.
type splitter struct {
	s      []byte
	i      int
	used   int
	bufLen int
	cur    []byte
}

func (p *splitter) more() bool                { return p.i < len(p.s) }
func (p *splitter) peek() byte                { return p.s[p.i] }
func (p *splitter) at(f func(byte) bool) bool { return p.more() && f(p.s[p.i]) }
func (p *splitter) is(c byte) bool            { return p.more() && p.s[p.i] == c }

// take appends the current byte to the field (APPEND_CHAR), lower-cased
// if asked; false when the work buffer is full.
func (p *splitter) take(lower bool) bool {
	if p.used+1 >= p.bufLen {
		return false
	}
	c := p.s[p.i]
	if lower {
		c = toLower(c)
	}
	p.cur = append(p.cur, c)
	p.used++
	p.i++
	return true
}

// takeWhile appends bytes while f holds.
func (p *splitter) takeWhile(f func(byte) bool, lower bool) bool {
	for p.at(f) {
		if !p.take(lower) {
			return false
		}
	}
	return true
}

// splitDateTime is ParseDateTime.
func splitDateTime(src []byte, bufLen int) ([]dtField, error) {
	p := &splitter{s: src, bufLen: bufLen}
	var fields []dtField
	for p.more() {
		c := p.peek()
		if isSpace(c) {
			p.i++
			continue
		}
		if len(fields) >= maxDateFields {
			return nil, errSyntax
		}
		p.cur = p.cur[:0]
		var typ dtFieldType
		var ok bool
		switch {
		case isDigit(c):
			typ, ok = p.digitField()
		case c == '.':
			typ, ok = fieldNumber, p.take(false) && p.takeWhile(isDigit, false)
		case isAlpha(c):
			typ, ok = p.wordField()
		case c == '+' || c == '-':
			typ, ok = p.signField()
		case isPunct(c):
			p.i++
			continue
		default:
			return nil, errSyntax
		}
		if !ok {
			return nil, errSyntax
		}
		fields = append(fields, dtField{text: string(p.cur), typ: typ})
		p.used++ // the field's terminating NUL
	}
	return fields, nil
}

// digitField reads a field that starts with a digit: a number, a time, or
// a date with '-', '/' or '.' delimiters (maybe with a month name).
func (p *splitter) digitField() (dtFieldType, bool) {
	if !p.takeWhile(isDigit, false) {
		return 0, false
	}
	switch {
	case p.is(':'):
		ok := p.takeWhile(func(c byte) bool { return isDigit(c) || c == ':' || c == '.' }, false)
		return fieldTime, ok
	case p.is('-') || p.is('/') || p.is('.'):
		delim := p.peek()
		if !p.take(false) {
			return 0, false
		}
		if !p.at(isDigit) {
			ok := p.takeWhile(func(c byte) bool { return isAlnum(c) || c == delim }, true)
			return fieldDate, ok
		}
		typ := fieldDate
		if delim == '.' {
			typ = fieldNumber
		}
		if !p.takeWhile(isDigit, false) {
			return 0, false
		}
		if p.is(delim) {
			typ = fieldDate
			ok := p.takeWhile(func(c byte) bool { return isDigit(c) || c == delim }, false)
			return typ, ok
		}
		return typ, true
	}
	return fieldNumber, true
}

// wordField reads a field that starts with a letter: a word, or a date or
// zone name with embedded punctuation (Jan-01, America/New_York, UTC+3).
func (p *splitter) wordField() (dtFieldType, bool) {
	if !p.takeWhile(isAlpha, true) {
		return 0, false
	}
	isDate := false
	switch {
	case p.is('-') || p.is('/') || p.is('.'):
		isDate = true
	case p.is('+') || p.at(isDigit):
		// A keyword followed by digits (j2451545, t0405) is not a zone.
		isDate = !isDateKeyword(string(p.cur))
	}
	if !isDate {
		return fieldString, true
	}
	for {
		if !p.take(true) {
			return 0, false
		}
		if !p.at(func(c byte) bool {
			return c == '+' || c == '-' || c == '/' || c == '_' || c == '.' || c == ':' || isAlnum(c)
		}) {
			return fieldDate, true
		}
	}
}

// signField reads a numeric zone offset (+05:30) or a signed word.
func (p *splitter) signField() (dtFieldType, bool) {
	if !p.take(false) {
		return 0, false
	}
	for p.at(isSpace) {
		p.i++
	}
	switch {
	case p.at(isDigit):
		ok := p.take(false) && p.takeWhile(func(c byte) bool {
			return isDigit(c) || c == ':' || c == '.' || c == '-'
		}, false)
		return fieldTZ, ok
	case p.at(isAlpha):
		return fieldSpecial, p.takeWhile(isAlpha, true)
	}
	return 0, false
}

// pgTm is the struct pg_tm fields DecodeDateTime fills (astronomical year).
type pgTm struct {
	year, mon, mday int
	hour, min, sec  int
	yday, wday      int
}

// dtParsed is DecodeDateTime's result.
type dtParsed struct {
	dtype int // dtkDate, dtkEpoch, dtkLate or dtkEarly
	tm    pgTm
	fsec  int // microseconds
	tz    int // UTC offset in seconds WEST, PostgreSQL's sign
}

// dtDecoder is DecodeDateTime's state.
type dtDecoder struct {
	tc     *TextContext
	fields []dtField
	r      dtParsed

	fmask         int
	ptype         int // a unit word ("j", "t", "y", …) waiting for its number
	mer           int
	haveTextMonth bool
	isJulian      bool
	is2digits     bool
	bc            bool
	namedTz       *time.Location
	abbrevTz      *time.Location
	abbrev        string
}

// parseDateTimeText reads a date/time literal as date_in (bufLen
// dateWorkBuf) or timestamp_in/timestamptz_in (timestampWorkBuf) do before
// they convert the fields.
func parseDateTimeText(src []byte, bufLen int, tc *TextContext) (dtParsed, error) {
	if bytes.IndexByte(src, 0) >= 0 {
		return dtParsed{}, errNUL
	}
	if !utf8.Valid(src) {
		return dtParsed{}, errEncoding
	}
	fields, err := splitDateTime(src, bufLen)
	if err != nil {
		return dtParsed{}, err
	}
	d := &dtDecoder{tc: tc, fields: fields, mer: valHR24}
	d.r.dtype = dtkDate
	if err := d.decode(); err != nil {
		return dtParsed{}, err
	}
	return d.r, nil
}

// decode is DecodeDateTime.
func (d *dtDecoder) decode() error {
	for i, f := range d.fields {
		var tmask int
		var err error
		switch f.typ {
		case fieldDate:
			tmask, err = d.dateField(f.text)
		case fieldTime:
			tmask, err = d.timeField(f.text)
		case fieldTZ:
			tmask = maskTZ
			d.r.tz, err = decodeTimezone(f.text)
		case fieldNumber:
			tmask, err = d.numberField(f.text)
		default:
			var skip bool
			tmask, skip, err = d.wordField(i, f.text)
			if skip {
				continue
			}
		}
		if err != nil {
			return err
		}
		if tmask&d.fmask != 0 {
			return errSyntax
		}
		d.fmask |= tmask
	}
	return d.finish()
}

// dateField handles DTK_DATE: a Julian day with a zone, a run-together time
// with a zone (hhmmss-zz), a zone name, or a date.
func (d *dtDecoder) dateField(s string) (int, error) {
	if d.ptype == dtkJulian {
		jday, n, rangeErr := strtoint(s)
		if rangeErr || jday < 0 {
			return 0, errDateField
		}
		d.r.tm.year, d.r.tm.mon, d.r.tm.mday = j2date(jday)
		d.isJulian = true
		tz, err := decodeTimezone(s[n:])
		if err != nil {
			return 0, err
		}
		d.r.tz = tz
		d.ptype = 0
		return maskDateTimeZ, nil
	}
	if d.ptype == 0 && d.fmask&(dtkMask(tokMonth)|dtkMask(tokDay)) != dtkMask(tokMonth)|dtkMask(tokDay) {
		return d.decodeDate(s, d.fmask)
	}
	if !isDigit(s[0]) && d.ptype == 0 {
		loc := lookupZoneName(s)
		if loc == nil {
			return 0, errBadZone
		}
		d.namedTz = loc
		return maskTZ, nil
	}
	if d.ptype != 0 {
		if d.ptype != dtkTime {
			return 0, errSyntax
		}
		d.ptype = 0
	}
	if d.fmask&maskTime == maskTime {
		return 0, errSyntax
	}
	cp := strings.IndexByte(s, '-')
	if cp < 0 {
		return 0, errSyntax
	}
	tz, err := decodeTimezone(s[cp:])
	if err != nil {
		return 0, err
	}
	d.r.tz = tz
	tmask, err := d.decodeNumberField(s[:cp], d.fmask)
	if err != nil {
		return 0, err
	}
	return tmask | maskTZ, nil
}

// timeField handles DTK_TIME.
func (d *dtDecoder) timeField(s string) (int, error) {
	if d.ptype != 0 {
		if d.ptype != dtkTime {
			return 0, errSyntax
		}
		d.ptype = 0
	}
	tm := &d.r.tm
	if err := decodeTime(s, tm, &d.r.fsec); err != nil {
		return 0, err
	}
	if timeOverflows(tm.hour, tm.min, tm.sec, d.r.fsec) {
		return 0, errDateField
	}
	return maskTime, nil
}

// numberField handles DTK_NUMBER: the value of a unit word (y2001, j2451545,
// t040506), or a plain or concatenated number.
func (d *dtDecoder) numberField(s string) (int, error) {
	if d.ptype != 0 {
		return d.unitValue(s)
	}
	cp := strings.IndexByte(s, '.')
	switch {
	case cp >= 0 && d.fmask&maskDate == 0:
		return d.decodeDate(s, d.fmask)
	case cp > 2:
		return d.decodeNumberField(s, d.fmask)
	case len(s) >= 6 && (d.fmask&maskDate == 0 || d.fmask&maskTime == 0):
		return d.decodeNumberField(s, d.fmask)
	}
	return d.decodeNumber(s, d.haveTextMonth, d.fmask, &d.r.fsec)
}

// unitValue reads the number after a unit word ("ISO date with embedded
// field labels": y2001m02d04, h04mm05s06, j2451545, t040506).
func (d *dtDecoder) unitValue(s string) (int, error) {
	val, n, rangeErr := strtoint(s)
	if rangeErr {
		return 0, errDateField
	}
	frac := s[n:]
	if strings.HasPrefix(frac, ".") {
		switch d.ptype {
		case dtkJulian, dtkTime, dtkSecond:
		default:
			return 0, errSyntax
		}
	} else if frac != "" {
		return 0, errSyntax
	}
	tm := &d.r.tm
	var tmask int
	switch d.ptype {
	case dtkYear:
		tm.year, tmask = val, dtkMask(tokYear)
	case dtkMonth:
		// A month after a month and an hour is a minute.
		if d.fmask&dtkMask(tokMonth) != 0 && d.fmask&dtkMask(tokHour) != 0 {
			tm.min, tmask = val, dtkMask(tokMinute)
		} else {
			tm.mon, tmask = val, dtkMask(tokMonth)
		}
	case dtkDay:
		tm.mday, tmask = val, dtkMask(tokDay)
	case dtkHour:
		tm.hour, tmask = val, dtkMask(tokHour)
	case dtkMinute:
		tm.min, tmask = val, dtkMask(tokMinute)
	case dtkSecond:
		tm.sec, tmask = val, dtkMask(tokSecond)
		if frac != "" {
			fsec, err := parseFractionalSecond(frac)
			if err != nil {
				return 0, err
			}
			d.r.fsec, tmask = fsec, maskAllSecs
		}
	case dtkJulian:
		if val < 0 {
			return 0, errDateField
		}
		tmask = maskDate
		tm.year, tm.mon, tm.mday = j2date(val)
		d.isJulian = true
		if frac != "" {
			f, err := parseFraction(frac)
			if err != nil {
				return 0, err
			}
			tm.hour, tm.min, tm.sec, d.r.fsec = dt2time(int64(f * usecPerDay))
			tmask |= maskTime
		}
	case dtkTime:
		var err error
		tmask, err = d.decodeNumberField(s, d.fmask|maskDate)
		if err != nil {
			return 0, err
		}
		if tmask != maskTime {
			return 0, errSyntax
		}
	default:
		return 0, errSyntax
	}
	d.ptype = 0
	d.r.dtype = dtkDate
	return tmask, nil
}

// wordField handles DTK_STRING and DTK_SPECIAL: a zone abbreviation (these
// take precedence), a keyword, or a zone name. skip reports a word that
// is ignored ("at", "on").
func (d *dtDecoder) wordField(i int, s string) (tmask int, skip bool, err error) {
	typ, val := tokUnknown, 0
	var valtz *time.Location
	if a, ok := lookupZoneAbbrev(s); ok {
		typ, val = a.typ(), a.offset
		if typ == tokDynTZ {
			if valtz = lookupZoneName(strings.ToLower(a.zone)); valtz == nil {
				return 0, false, errBadZone
			}
		}
	}
	if typ == tokUnknown {
		typ, val = lookupDateToken(s)
	}
	if typ == tokIgnore {
		return 0, true, nil
	}
	tmask = dtkMask(typ)
	tm := &d.r.tm
	switch typ {
	case tokReserved:
		tmask = d.reserved(val)
	case tokMonth:
		// A numeric "month" before a month name was the day.
		if d.fmask&dtkMask(tokMonth) != 0 && !d.haveTextMonth && d.fmask&dtkMask(tokDay) == 0 &&
			tm.mon >= 1 && tm.mon <= 31 {
			tm.mday = tm.mon
			tmask = dtkMask(tokDay)
		}
		d.haveTextMonth = true
		tm.mon = val
	case tokDTZMod:
		tmask |= dtkMask(tokDTZ)
		d.r.tz -= val
	case tokDTZ:
		tmask |= maskTZ
		d.r.tz = -val
	case tokTZ:
		d.r.tz = -val
	case tokDynTZ:
		tmask |= maskTZ
		d.abbrevTz, d.abbrev = valtz, s
	case tokAMPM:
		d.mer = val
	case tokADBC:
		d.bc = val == valBC
	case tokDOW:
		tm.wday = val
	case tokUnits:
		tmask = 0
		d.ptype = val
	case tokISOTime:
		tmask = 0
		if d.fmask&maskDate != maskDate {
			return 0, false, errSyntax
		}
		// "t" must be followed by hhmmss, hh:mm:ss or hhmmss-zz.
		if i >= len(d.fields)-1 {
			return 0, false, errSyntax
		}
		switch d.fields[i+1].typ {
		case fieldNumber, fieldTime, fieldDate:
		default:
			return 0, false, errSyntax
		}
		d.ptype = val
	case tokUnknown:
		// Maybe an all-letters zone name (Japan, Zulu).
		loc := lookupZoneName(s)
		if loc == nil {
			return 0, false, errSyntax
		}
		d.namedTz = loc
		tmask = maskTZ
	default:
		return 0, false, errSyntax
	}
	return tmask, false, nil
}

// reserved handles the RESERV words and returns their mask.
func (d *dtDecoder) reserved(val int) int {
	tm := &d.r.tm
	switch val {
	case dtkNow:
		d.r.dtype = dtkDate
		var t time.Time
		t, d.r.tz = d.now()
		tm.year, tm.mon, tm.mday = t.Year(), int(t.Month()), t.Day()
		tm.hour, tm.min, tm.sec = t.Hour(), t.Minute(), t.Second()
		d.r.fsec = t.Nanosecond() / 1000
		return maskDateTimeZ
	case dtkYesterday, dtkToday, dtkTomorrow:
		d.r.dtype = dtkDate
		t, _ := d.now()
		j := date2j(t.Year(), int(t.Month()), t.Day()) + val - dtkToday
		tm.year, tm.mon, tm.mday = j2date(j)
		return maskDate
	case dtkZulu:
		d.r.dtype = dtkDate
		tm.hour, tm.min, tm.sec = 0, 0, 0
		d.r.tz = 0
		return maskTime | maskTZ
	}
	d.r.dtype = val // epoch, infinity, -infinity
	return dtkMask(tokReserved)
}

// now is GetCurrentTimeUsec: the clock's reading (whole microseconds) in
// the session's time zone, with that zone's offset in PostgreSQL's sign.
func (d *dtDecoder) now() (time.Time, int) {
	usec := d.tc.now().UnixMicro() - unixToPGEpochSeconds*usecPerSec
	t := pgEpochTime(usec).In(d.tc.location())
	_, off := t.Zone()
	return t, -off
}

// finish is the end of DecodeDateTime: ValidateDate, AM/PM, and the zone
// offset of a named zone, a dynamic abbreviation or the session's zone.
func (d *dtDecoder) finish() error {
	tm := &d.r.tm
	if err := validateDate(d.fmask, d.isJulian, d.is2digits, d.bc, tm); err != nil {
		return err
	}
	if d.mer != valHR24 && tm.hour > 12 {
		return errDateField
	}
	if d.mer == valAM && tm.hour == 12 {
		tm.hour = 0
	} else if d.mer == valPM && tm.hour != 12 {
		tm.hour += 12
	}
	if d.r.dtype != dtkDate {
		return nil
	}
	if d.fmask&maskDate != maskDate {
		// A time without a date ("return 1") is refused by the callers too.
		return errSyntax
	}
	dtzmod := d.fmask&dtkMask(tokDTZMod) != 0
	if d.namedTz != nil {
		if dtzmod {
			return errSyntax
		}
		d.r.tz = determineTimeZoneOffset(tm, d.namedTz)
	}
	if d.abbrevTz != nil {
		if dtzmod {
			return errSyntax
		}
		d.r.tz = determineTimeZoneAbbrevOffset(tm, d.abbrev, d.abbrevTz)
	}
	if d.fmask&maskTZ == 0 {
		if dtzmod {
			return errSyntax
		}
		d.r.tz = determineTimeZoneOffset(tm, d.tc.location())
	}
	return nil
}

// decodeDate is DecodeDate: a field with delimiters (2024-01-31,
// 31/jan/2024, 2024.031).
func (d *dtDecoder) decodeDate(str string, fmask int) (int, error) {
	var fields []string
	for i := 0; i < len(str) && len(fields) < maxDateFields; {
		for i < len(str) && !isAlnum(str[i]) {
			i++
		}
		if i == len(str) {
			return 0, errSyntax // separator at the end
		}
		start := i
		class := isDigit
		if !isDigit(str[i]) {
			class = isAlpha
		}
		for i < len(str) && class(str[i]) {
			i++
		}
		fields = append(fields, str[start:i])
		i++ // DecodeDate overwrites the byte after a field with NUL
	}
	tmask := 0
	haveTextMonth := false
	// Text fields first: they are unambiguous months.
	done := make([]bool, len(fields))
	for i, f := range fields {
		if !isAlpha(f[0]) {
			continue
		}
		typ, val := lookupDateToken(f)
		if typ == tokIgnore {
			continue
		}
		if typ != tokMonth {
			return 0, errSyntax
		}
		d.r.tm.mon = val
		haveTextMonth = true
		dmask := dtkMask(tokMonth)
		if fmask&dmask != 0 {
			return 0, errSyntax
		}
		fmask |= dmask
		tmask |= dmask
		done[i] = true
	}
	for i, f := range fields {
		if done[i] {
			continue // ignored words ("at") fail here, as in PostgreSQL
		}
		var fsec int
		dmask, err := d.decodeNumber(f, haveTextMonth, fmask, &fsec)
		if err != nil {
			return 0, err
		}
		if fmask&dmask != 0 {
			return 0, errSyntax
		}
		fmask |= dmask
		tmask |= dmask
	}
	if fmask&^(dtkMask(tokDOY)|maskTZ) != maskDate {
		return 0, errSyntax
	}
	return tmask, nil
}

// decodeNumber is DecodeNumber: a plain number placed by what the literal
// has so far and by DateStyle's field order.
func (d *dtDecoder) decodeNumber(str string, haveTextMonth bool, fmask int, fsec *int) (int, error) {
	flen := len(str)
	val, n, rangeErr := strtoint(str)
	if rangeErr {
		return 0, errDateField
	}
	if n == 0 {
		return 0, errSyntax
	}
	if n < len(str) {
		if str[n] != '.' {
			return 0, errSyntax
		}
		// More than two digits before the point: 2001.360, 20011225.5.
		if n > 2 {
			return d.decodeNumberField(str, fmask|maskDate)
		}
		f, err := parseFractionalSecond(str[n:])
		if err != nil {
			return 0, err
		}
		*fsec = f
	}
	tm := &d.r.tm
	const (
		y  = 1 << tokYear
		m  = 1 << tokMonth
		dd = 1 << tokDay
	)
	if flen == 3 && fmask&maskDate == y && val >= 1 && val <= 366 {
		tm.yday = val // day of year: month and day come from it later
		return dtkMask(tokDOY) | m | dd, nil
	}
	order := DateOrderMDY
	if d.tc != nil {
		order = d.tc.DateOrder
	}
	var tmask int
	switch fmask & maskDate {
	case 0:
		switch {
		case flen >= 3 || order == DateOrderYMD:
			tmask, tm.year = y, val
		case order == DateOrderDMY:
			tmask, tm.mday = dd, val
		default:
			tmask, tm.mon = m, val
		}
	case y:
		tmask, tm.mon = m, val
	case m:
		if haveTextMonth && (flen >= 3 || order == DateOrderYMD) {
			tmask, tm.year = y, val
		} else {
			tmask, tm.mday = dd, val
		}
	case y | m:
		if haveTextMonth && flen >= 3 && d.is2digits {
			// The first number was the day, not a two-digit year.
			tmask = dd
			tm.mday, tm.year = tm.year, val
			d.is2digits = false
		} else {
			tmask, tm.mday = dd, val
		}
	case dd:
		tmask, tm.mon = m, val
	case m | dd:
		tmask, tm.year = y, val
	case y | m | dd:
		return d.decodeNumberField(str, fmask)
	default:
		return 0, errSyntax
	}
	if tmask == y {
		d.is2digits = flen <= 2
	}
	return tmask, nil
}

// decodeNumberField is DecodeNumberField: run-together digits, yyyymmdd,
// yymmdd, hhmmss or hhmm, maybe with a fraction.
func (d *dtDecoder) decodeNumberField(str string, fmask int) (int, error) {
	tm := &d.r.tm
	if cp := strings.IndexByte(str, '.'); cp >= 0 {
		if cp+1 == len(str) {
			d.r.fsec = 0
		} else {
			f, _ := strtod(str[cp:])
			d.r.fsec = int(math.RoundToEven(f * usecPerSec))
		}
		str = str[:cp]
	} else if fmask&maskDate != maskDate && len(str) >= 6 {
		n := len(str)
		tm.mday = cAtoi(str[n-2:])
		tm.mon = cAtoi(str[n-4 : n-2])
		tm.year = cAtoi(str[:n-4])
		if n-4 == 2 {
			d.is2digits = true
		}
		return maskDate, nil
	}
	if fmask&maskTime != maskTime {
		switch len(str) {
		case 6:
			tm.hour, tm.min, tm.sec = cAtoi(str[:2]), cAtoi(str[2:4]), cAtoi(str[4:])
			return maskTime, nil
		case 4:
			tm.hour, tm.min, tm.sec = cAtoi(str[:2]), cAtoi(str[2:]), 0
			return maskTime, nil
		}
	}
	return 0, errSyntax
}

// decodeTime is DecodeTime: hh:mm[:ss[.frac]], or mm:ss.frac.
func decodeTime(str string, tm *pgTm, fsec *int) error {
	hour, n, rangeErr := strtol(str)
	if rangeErr {
		return errDateField
	}
	rest := str[n:]
	if !strings.HasPrefix(rest, ":") {
		return errSyntax
	}
	min, n, rangeErr := strtoint(rest[1:])
	if rangeErr {
		return errDateField
	}
	rest = rest[1+n:]
	sec, frac := 0, 0
	switch {
	case rest == "":
	case rest[0] == '.':
		// mm:ss.frac is minutes and seconds.
		f, err := parseFractionalSecond(rest)
		if err != nil {
			return err
		}
		if hour > math.MaxInt32 || hour < math.MinInt32 {
			return errDateField
		}
		hour, min, sec, frac = 0, int(hour), min, f
	case rest[0] == ':':
		sec, n, rangeErr = strtoint(rest[1:])
		if rangeErr {
			return errDateField
		}
		rest = rest[1+n:]
		if rest != "" {
			if rest[0] != '.' {
				return errSyntax
			}
			f, err := parseFractionalSecond(rest)
			if err != nil {
				return err
			}
			frac = f
		}
	default:
		return errSyntax
	}
	if hour < 0 || min < 0 || min > 59 || sec < 0 || sec > 60 || frac < 0 || frac > usecPerSec {
		return errDateField
	}
	if hour > math.MaxInt32 {
		return errDateField
	}
	tm.hour, tm.min, tm.sec, *fsec = int(hour), min, sec, frac
	return nil
}

// timeOverflows is time_overflows: 24:00:00 and second 60 are allowed, a
// time past 24:00:00 is not.
func timeOverflows(hour, min, sec, fsec int) bool {
	if hour < 0 || hour > 24 || min < 0 || min >= 60 || sec < 0 || sec > 60 || fsec < 0 || fsec > usecPerSec {
		return true
	}
	return ((int64(hour)*60+int64(min))*60+int64(sec))*usecPerSec+int64(fsec) > usecPerDay
}

// decodeTimezone is DecodeTimezone: ±hh, ±hhmm, ±hh:mm, ±hh:mm:ss, as
// seconds west of UTC.
func decodeTimezone(str string) (int, error) {
	if str == "" || (str[0] != '+' && str[0] != '-') {
		return 0, errSyntax
	}
	hr, n, rangeErr := strtoint(str[1:])
	if rangeErr {
		return 0, errTZDisplacement
	}
	rest := str[1+n:]
	min, sec := 0, 0
	switch {
	case strings.HasPrefix(rest, ":"):
		if min, n, rangeErr = strtoint(rest[1:]); rangeErr {
			return 0, errTZDisplacement
		}
		rest = rest[1+n:]
		if strings.HasPrefix(rest, ":") {
			if sec, n, rangeErr = strtoint(rest[1:]); rangeErr {
				return 0, errTZDisplacement
			}
			rest = rest[1+n:]
		}
	case rest == "" && len(str) > 3:
		hr, min = hr/100, hr%100
	}
	if hr < 0 || hr > 15 || min < 0 || min >= 60 || sec < 0 || sec >= 60 {
		return 0, errTZDisplacement
	}
	tz := (hr*60+min)*60 + sec
	if str[0] == '-' {
		tz = -tz
	}
	if rest != "" {
		return 0, errSyntax
	}
	return -tz, nil
}

// validateDate is ValidateDate: BC and two-digit years, day of year, and
// the ranges of month and day.
func validateDate(fmask int, isJulian, is2digits, bc bool, tm *pgTm) error {
	if fmask&dtkMask(tokYear) != 0 {
		switch {
		case isJulian:
		case bc:
			// There is no year 0: 1 BC is year 0, 2 BC is -1.
			if tm.year <= 0 {
				return errDateField
			}
			tm.year = -(tm.year - 1)
		case is2digits:
			// One or two digits: 1970-2069.
			if tm.year < 0 {
				return errDateField
			}
			if tm.year < 70 {
				tm.year += 2000
			} else if tm.year < 100 {
				tm.year += 1900
			}
		default:
			if tm.year <= 0 {
				return errDateField
			}
		}
	}
	if fmask&dtkMask(tokDOY) != 0 {
		tm.year, tm.mon, tm.mday = j2date(date2j(tm.year, 1, 1) + tm.yday - 1)
	}
	if fmask&dtkMask(tokMonth) != 0 && (tm.mon < 1 || tm.mon > 12) {
		return errDateField
	}
	if fmask&dtkMask(tokDay) != 0 && (tm.mday < 1 || tm.mday > 31) {
		return errDateField
	}
	if fmask&maskDate == maskDate && tm.mday > daysIn(tm.year, tm.mon) {
		return errDateField
	}
	return nil
}

// parseFraction is ParseFraction: ".digits" (or a lone ".") as a float.
func parseFraction(s string) (float64, error) {
	if s == "." {
		return 0, nil
	}
	f, n := strtod(s)
	if n != len(s) {
		return 0, errSyntax
	}
	return f, nil
}

// parseFractionalSecond is ParseFractionalSecond: the fraction rounded to
// microseconds as rint() does (half to even); 1000000 is possible.
func parseFractionalSecond(s string) (int, error) {
	f, err := parseFraction(s)
	if err != nil {
		return 0, err
	}
	return int(math.RoundToEven(f * usecPerSec)), nil
}

// strtol is C's strtol in base 10 on an ASCII field: an optional sign and
// digits. n is how many bytes it read (0 when there are no digits);
// rangeErr reports a value past int64.
func strtol(s string) (val int64, n int, rangeErr bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var u uint64
	for ; i < len(s) && isDigit(s[i]); i++ {
		if u > (math.MaxUint64-9)/10 {
			rangeErr = true
			continue
		}
		u = u*10 + uint64(s[i]-'0')
	}
	if i == start {
		return 0, 0, false
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	if rangeErr || u > limit {
		return 0, i, true
	}
	if neg {
		return -int64(u), i, false
	}
	return int64(u), i, false
}

// strtoint is PostgreSQL's strtoint: strtol limited to int32.
func strtoint(s string) (int, int, bool) {
	v, n, rangeErr := strtol(s)
	if rangeErr || v != int64(int32(v)) {
		return 0, n, true
	}
	return int(v), n, false
}

// cAtoi is C's atoi on digits: strtol saturating, truncated to int.
func cAtoi(s string) int {
	v, _, rangeErr := strtol(s)
	if rangeErr {
		v = math.MaxInt64
	}
	return int(int32(v))
}

// strtod reads the longest prefix of s of the form ".digits" or
// "digits[.digits]" as a float64 (C's strtod on the fields ParseDateTime
// makes, which hold no exponents). n is 0 when nothing was read.
func strtod(s string) (float64, int) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intDigits := i
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j > i+1 || intDigits > 0 {
			i = j
		}
	}
	if i == 0 || (intDigits == 0 && i == 1) {
		return 0, 0
	}
	f, err := strconv.ParseFloat("0"+s[:i], 64)
	if err != nil {
		return 0, 0
	}
	return f, i
}

// errTZDisplacement is a numeric zone offset past ±15:59:59, which
// PostgreSQL reports as SQLSTATE 22009.
const errTZDisplacement reason = "time zone displacement out of range"

// SQLStateTZDisplacement is PostgreSQL's invalid_time_zone_displacement_value.
const SQLStateTZDisplacement = "22009"
