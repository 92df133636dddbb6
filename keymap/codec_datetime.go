package keymap

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// PostgreSQL's date/time binary forms count from 2000-01-01 and reserve the
// extreme integers for ±infinity. Ranges are from datatype/timestamp.h.
const (
	unixToPGEpochSeconds = 946684800 // 2000-01-01 in Unix seconds
	unixToPGEpochDays    = 10957
	usecPerSec           = 1_000_000
	usecPerDay           = 86_400 * usecPerSec

	dateMin = -2451545             // 4714-11-24 BC, Julian day 0
	dateEnd = 2147483494 - 2451545 // DATE_END_JULIAN, exclusive
	tsMin   = -211813488000000000  // MIN_TIMESTAMP
	tsEnd   = 9223371331200000000  // END_TIMESTAMP (294277-01-01), exclusive
	tsMaxY  = 294277               // no valid timestamp has a later year
	dateInf = math.MaxInt32        // DATEVAL_NOEND
	tsInf   = math.MaxInt64        // DT_NOEND
)

// dateTime is a parsed date/time literal: a wall clock reading (astronomical
// year, so 1 BC is 0) plus what the literal said about its zone.
type dateTime struct {
	infinity             int // +1, -1, or 0 for a finite value
	year, month, day     int
	hour, min, sec, usec int
	hasOffset            bool
	offset               int            // seconds east of UTC, when hasOffset
	loc                  *time.Location // a named zone, when given
}

// dateCodec: canonical is int32 days since 2000-01-01.
type dateCodec struct{}

func (dateCodec) fromText(src []byte, _ *TextContext) ([]byte, error) {
	dt, err := parseDateTime(src)
	if err != nil {
		return nil, err
	}
	var days int64
	switch dt.infinity {
	case 1:
		days = dateInf
	case -1:
		days = math.MinInt32
	default:
		days = daysSincePGEpoch(dt.year, dt.month, dt.day)
		if days < dateMin || days >= dateEnd {
			return nil, errDateRange
		}
	}
	return binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(int32(days))), nil
}

func (dateCodec) fromBinary(src []byte) ([]byte, error) {
	if _, err := decodeDate(src); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, 4), src...), nil
}

func (dateCodec) appendText(dst, canonical []byte, _ *TextContext) ([]byte, error) {
	days, err := decodeDate(canonical)
	if err != nil {
		return nil, err
	}
	switch days {
	case dateInf:
		return append(dst, "infinity"...), nil
	case math.MinInt32:
		return append(dst, "-infinity"...), nil
	}
	d := pgtype.Date{Time: time.Date(2000, 1, 1+int(days), 0, 0, 0, 0, time.UTC), Valid: true}
	return pgtype.DateCodec{}.PlanEncode(nil, pgtype.DateOID, pgtype.TextFormatCode, d).Encode(d, dst)
}

func (dateCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	if _, err := decodeDate(canonical); err != nil {
		return nil, err
	}
	return append(dst, canonical...), nil
}

func decodeDate(b []byte) (int32, error) {
	if len(b) != 4 {
		return 0, errLength
	}
	days := int32(binary.BigEndian.Uint32(b))
	if days != dateInf && days != math.MinInt32 && (days < dateMin || int64(days) >= dateEnd) {
		return 0, errDateRange
	}
	return days, nil
}

// timestampCodec serves timestamp and timestamptz: canonical is int64
// microseconds since 2000-01-01 00:00 (UTC for timestamptz).
type timestampCodec struct{ tz bool }

func (c timestampCodec) fromText(src []byte, tc *TextContext) ([]byte, error) {
	dt, err := parseDateTime(src)
	if err != nil {
		return nil, err
	}
	usec, err := c.micros(dt, tc)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(usec)), nil
}

// micros resolves a literal to the stored instant. timestamp ignores any zone
// in the literal, as PostgreSQL does; timestamptz reads a literal without one
// in the session's time zone.
func (c timestampCodec) micros(dt dateTime, tc *TextContext) (int64, error) {
	switch dt.infinity {
	case 1:
		return tsInf, nil
	case -1:
		return math.MinInt64, nil
	}
	if dt.year > tsMaxY {
		return 0, errDateRange
	}
	var usec int64
	switch {
	case !c.tz:
		usec = wallMicros(dt)
	case dt.hasOffset:
		usec = wallMicros(dt) - int64(dt.offset)*usecPerSec
	default:
		loc := dt.loc
		if loc == nil {
			loc = tc.location()
		}
		wall := wallMicros(dt)
		usec = wall - int64(zoneOffset(wall, loc))*usecPerSec
	}
	if usec < tsMin || usec >= tsEnd {
		return 0, errDateRange
	}
	return usec, nil
}

// zoneOffset is the UTC offset (seconds east) PostgreSQL's
// DetermineTimeZoneOffset gives a wall-clock reading in loc (wall is
// microseconds since 2000-01-01 read as if UTC). At a transition Go's
// time.Date leaves the choice unspecified; PostgreSQL takes the offset from
// before a spring-forward gap and the one from after a fall-back overlap, so
// 02:30 in a gap is read as standard time and an ambiguous 01:30 as the
// second one.
func zoneOffset(wall int64, loc *time.Location) int {
	sec := wall / usecPerSec
	if wall%usecPerSec < 0 {
		sec--
	}
	sec += unixToPGEpochSeconds // Unix seconds of the reading, as if UTC
	// Like PostgreSQL, find the first boundary after a day earlier.
	prev := time.Unix(sec-86400, 0).In(loc)
	_, before := prev.Zone()
	_, end := prev.ZoneBounds()
	if end.IsZero() {
		return before
	}
	_, after := end.In(loc).Zone()
	boundary := end.Unix()
	beforeTime, afterTime := sec-int64(before), sec-int64(after)
	switch {
	case beforeTime < boundary && afterTime < boundary:
		return before
	case beforeTime >= boundary && afterTime >= boundary:
		return after
	case beforeTime > afterTime:
		return before
	}
	return after
}

func wallMicros(dt dateTime) int64 {
	days := daysSincePGEpoch(dt.year, dt.month, dt.day)
	secs := int64((dt.hour*60+dt.min)*60 + dt.sec)
	return days*usecPerDay + secs*usecPerSec + int64(dt.usec)
}

func (timestampCodec) fromBinary(src []byte) ([]byte, error) {
	if _, err := decodeTimestamp(src); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, 8), src...), nil
}

// appendText prints PostgreSQL's ISO DateStyle: timestamptz in the session's
// time zone with its UTC offset as +HH, +HH:MM or +HH:MM:SS.
func (c timestampCodec) appendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
	usec, err := decodeTimestamp(canonical)
	if err != nil {
		return nil, err
	}
	switch usec {
	case tsInf:
		return append(dst, "infinity"...), nil
	case math.MinInt64:
		return append(dst, "-infinity"...), nil
	}
	t := pgEpochTime(usec)
	if !c.tz {
		return appendWallClock(dst, t)
	}
	local := t.In(tc.location())
	_, offset := local.Zone()
	start := len(dst)
	dst, err = appendWallClock(dst, wallAsUTC(local))
	if err != nil {
		return nil, err
	}
	// The offset goes before a trailing " BC", as PostgreSQL writes it.
	era := len(dst)
	if bytes.HasSuffix(dst[start:], []byte(" BC")) {
		era -= 3
	}
	var zone [16]byte
	z := appendUTCOffset(zone[:0], offset)
	dst = append(dst, z...)
	copy(dst[era+len(z):], dst[era:len(dst)-len(z)])
	copy(dst[era:], z)
	return dst, nil
}

func (timestampCodec) appendBinary(dst, canonical []byte) ([]byte, error) {
	if _, err := decodeTimestamp(canonical); err != nil {
		return nil, err
	}
	return append(dst, canonical...), nil
}

func decodeTimestamp(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, errLength
	}
	usec := int64(binary.BigEndian.Uint64(b))
	if usec != tsInf && usec != math.MinInt64 && (usec < tsMin || usec >= tsEnd) {
		return 0, errDateRange
	}
	return usec, nil
}

// pgEpochTime is the UTC instant usec microseconds after 2000-01-01.
func pgEpochTime(usec int64) time.Time {
	sec, frac := usec/usecPerSec, usec%usecPerSec
	if frac < 0 {
		sec, frac = sec-1, frac+usecPerSec
	}
	return time.Unix(sec+unixToPGEpochSeconds, frac*1000).UTC()
}

func wallAsUTC(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// appendWallClock prints t's fields as PostgreSQL prints a timestamp.
func appendWallClock(dst []byte, t time.Time) ([]byte, error) {
	ts := pgtype.Timestamp{Time: t, Valid: true}
	return (&pgtype.TimestampCodec{}).PlanEncode(nil, pgtype.TimestampOID, pgtype.TextFormatCode, ts).Encode(ts, dst)
}

// appendUTCOffset is EncodeTimezone: +HH, +HH:MM or +HH:MM:SS as needed.
func appendUTCOffset(dst []byte, offset int) []byte {
	sign := byte('+')
	if offset < 0 {
		sign, offset = '-', -offset
	}
	h, m, s := offset/3600, offset/60%60, offset%60
	dst = append(dst, sign)
	dst = append2(dst, h)
	if m == 0 && s == 0 {
		return dst
	}
	dst = append2(append(dst, ':'), m)
	if s == 0 {
		return dst
	}
	return append2(append(dst, ':'), s)
}

func append2(dst []byte, v int) []byte {
	if v < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(v), 10)
}

// daysSincePGEpoch counts days from 2000-01-01 to a valid proleptic
// Gregorian date (astronomical year).
func daysSincePGEpoch(year, month, day int) int64 {
	return time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC).Unix()/86400 - unixToPGEpochDays
}

func isLeapYear(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(year, month int) int {
	switch month {
	case 2:
		if isLeapYear(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
