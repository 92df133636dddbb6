package keymap

import "strconv"

// Output of dates and timestamps as PostgreSQL 15's EncodeDateOnly and
// EncodeDateTime write them under the session's DateStyle.

var (
	monthAbbrevs = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	dayAbbrevs   = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
)

const maxTZLen = 10 // MAXTZLEN: how much of a zone abbreviation is printed

// dateStyle is the session's DateStyle (the zero TextContext is ISO, MDY).
func (tc *TextContext) dateStyle() (DateOutput, DateOrder) {
	if tc == nil {
		return DateOutputISO, DateOrderMDY
	}
	return tc.DateOutput, tc.DateOrder
}

// appendZeroPad is pg_ultostr_zeropad: v with at least width digits.
func appendZeroPad(dst []byte, v, width int) []byte {
	// Formatted on the stack: strconv.Itoa allocates from 100 on (a
	// year), once per date or timestamp a row prints.
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// eraYear is the year as printed: 1 BC for astronomical year 0.
func eraYear(year int) int {
	if year > 0 {
		return year
	}
	return -(year - 1)
}

// appendDayMonth writes day and month in DateStyle order with sep between.
func appendDayMonth(dst []byte, tm *pgTm, order DateOrder, sep byte) []byte {
	if order == DateOrderDMY {
		dst = appendZeroPad(dst, tm.mday, 2)
		return appendZeroPad(append(dst, sep), tm.mon, 2)
	}
	dst = appendZeroPad(dst, tm.mon, 2)
	return appendZeroPad(append(dst, sep), tm.mday, 2)
}

// appendDateOnly is EncodeDateOnly.
func appendDateOnly(dst []byte, tm *pgTm, tc *TextContext) []byte {
	style, order := tc.dateStyle()
	switch style {
	case DateOutputISO:
		dst = appendZeroPad(dst, eraYear(tm.year), 4)
		dst = appendZeroPad(append(dst, '-'), tm.mon, 2)
		dst = appendZeroPad(append(dst, '-'), tm.mday, 2)
	case DateOutputSQL:
		dst = appendDayMonth(dst, tm, order, '/')
		dst = appendZeroPad(append(dst, '/'), eraYear(tm.year), 4)
	case DateOutputGerman:
		dst = appendZeroPad(dst, tm.mday, 2)
		dst = appendZeroPad(append(dst, '.'), tm.mon, 2)
		dst = appendZeroPad(append(dst, '.'), eraYear(tm.year), 4)
	default: // Postgres
		dst = appendDayMonth(dst, tm, order, '-')
		dst = appendZeroPad(append(dst, '-'), eraYear(tm.year), 4)
	}
	if tm.year <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst
}

// zoneOut is the zone a timestamptz is printed in: its offset (seconds
// WEST, PostgreSQL's sign) and abbreviation.
type zoneOut struct {
	tz     int
	abbrev string
}

// appendDateTime is EncodeDateTime; zone is nil for a timestamp.
func appendDateTime(dst []byte, tm *pgTm, fsec int, zone *zoneOut, tc *TextContext) []byte {
	style, order := tc.dateStyle()
	clock := func(dst []byte) []byte {
		dst = appendZeroPad(dst, tm.hour, 2)
		dst = appendZeroPad(append(dst, ':'), tm.min, 2)
		return appendSeconds(append(dst, ':'), tm.sec, fsec)
	}
	switch style {
	case DateOutputISO:
		dst = appendZeroPad(dst, eraYear(tm.year), 4)
		dst = appendZeroPad(append(dst, '-'), tm.mon, 2)
		dst = appendZeroPad(append(dst, '-'), tm.mday, 2)
		dst = clock(append(dst, ' '))
		if zone != nil {
			dst = appendTimezone(dst, zone.tz)
		}
	case DateOutputSQL, DateOutputGerman:
		if style == DateOutputSQL {
			dst = appendDayMonth(dst, tm, order, '/')
			dst = append(dst, '/')
		} else {
			dst = appendZeroPad(dst, tm.mday, 2)
			dst = appendZeroPad(append(dst, '.'), tm.mon, 2)
			dst = append(dst, '.')
		}
		dst = appendZeroPad(dst, eraYear(tm.year), 4)
		dst = clock(append(dst, ' '))
		dst = appendZoneName(dst, zone, false)
	default: // Postgres
		dst = append(dst, dayAbbrevs[j2day(date2j(tm.year, tm.mon, tm.mday))]...)
		dst = append(dst, ' ')
		if order == DateOrderDMY {
			dst = appendZeroPad(dst, tm.mday, 2)
			dst = append(append(dst, ' '), monthAbbrevs[tm.mon-1]...)
		} else {
			dst = append(dst, monthAbbrevs[tm.mon-1]...)
			dst = appendZeroPad(append(dst, ' '), tm.mday, 2)
		}
		dst = clock(append(dst, ' '))
		dst = appendZeroPad(append(dst, ' '), eraYear(tm.year), 4)
		dst = appendZoneName(dst, zone, true)
	}
	if tm.year <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst
}

// appendZoneName writes " ABBR", or the numeric offset when there is no
// abbreviation (preceded by a space in the Postgres style).
func appendZoneName(dst []byte, zone *zoneOut, space bool) []byte {
	switch {
	case zone == nil:
		return dst
	case zone.abbrev != "":
		name := zone.abbrev
		if len(name) > maxTZLen {
			name = name[:maxTZLen]
		}
		return append(append(dst, ' '), name...)
	case space:
		dst = append(dst, ' ')
	}
	return appendTimezone(dst, zone.tz)
}

// appendSeconds is AppendSeconds for timestamps: two digits, then up to
// six fraction digits without trailing zeros.
func appendSeconds(dst []byte, sec, fsec int) []byte {
	dst = appendZeroPad(dst, sec, 2)
	if fsec == 0 {
		return dst
	}
	var frac [6]byte
	n := len(frac)
	v := fsec
	for i := len(frac) - 1; i >= 0; i-- {
		frac[i] = byte('0' + v%10)
		v /= 10
	}
	for n > 0 && frac[n-1] == '0' {
		n--
	}
	return append(append(dst, '.'), frac[:n]...)
}

// appendTimezone is EncodeTimezone: +hh, +hh:mm or +hh:mm:ss.
func appendTimezone(dst []byte, tz int) []byte {
	sign := byte('+')
	if tz > 0 {
		sign = '-'
	}
	sec := tz
	if sec < 0 {
		sec = -sec
	}
	hour, min, s := sec/3600, sec/60%60, sec%60
	dst = appendZeroPad(append(dst, sign), hour, 2)
	if s != 0 {
		dst = appendZeroPad(append(dst, ':'), min, 2)
		return appendZeroPad(append(dst, ':'), s, 2)
	}
	if min != 0 {
		dst = appendZeroPad(append(dst, ':'), min, 2)
	}
	return dst
}
