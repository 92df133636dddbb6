package keymap

import (
	"encoding/binary"
	"math"
	"time"
)

// PostgreSQL's date/time binary forms count from 2000-01-01 and reserve the
// extreme integers for ±infinity. Ranges are from datatype/timestamp.h.
const (
	unixToPGEpochSeconds = 946684800 // 2000-01-01 in Unix seconds
	unixToPGEpochDays    = 10957
	usecPerSec           = 1_000_000
	usecPerDay           = 86_400 * usecPerSec

	dateMin = -postgresEpochJDate             // 4714-11-24 BC, Julian day 0
	dateEnd = 2147483494 - postgresEpochJDate // DATE_END_JULIAN, exclusive
	tsMin   = -211813488000000000             // MIN_TIMESTAMP
	tsEnd   = 9223371331200000000             // END_TIMESTAMP (294277-01-01), exclusive
	dateInf = math.MaxInt32                   // DATEVAL_NOEND
	tsInf   = math.MaxInt64                   // DT_NOEND

	// epochMicros is SetEpochTimestamp: 1970-01-01 00:00 (UTC).
	epochMicros = -unixToPGEpochSeconds * usecPerSec
)

// dateCodec: canonical is int32 days since 2000-01-01.
type dateCodec struct{}

// fromText is date_in.
func (dateCodec) fromText(src []byte, tc *TextContext) ([]byte, error) {
	p, err := parseDateTimeText(src, dateWorkBuf, tc)
	if err != nil {
		return nil, err
	}
	var days int64
	switch p.dtype {
	case dtkDate:
	case dtkEpoch:
		p.tm = pgTm{year: 1970, mon: 1, mday: 1}
	case dtkLate:
		days = dateInf
	case dtkEarly:
		days = math.MinInt32
	default:
		return nil, errSyntax
	}
	if p.dtype == dtkDate || p.dtype == dtkEpoch {
		if !validJulian(p.tm.year, p.tm.mon) {
			return nil, errDateRange
		}
		days = daysSincePGEpoch(p.tm.year, p.tm.mon, p.tm.mday)
		if days < dateMin || days >= dateEnd {
			return nil, errDateRange
		}
	}
	return binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(int32(days))), nil
}

// fromBinary is date_recv: four bytes, a date in date_in's range or an
// infinity.
func (dateCodec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 4); err != nil {
		return nil, err
	}
	if _, err := decodeDate(src); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, 4), src...), nil
}

// appendText is date_out.
func (dateCodec) appendText(dst, canonical []byte, tc *TextContext) ([]byte, error) {
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
	var tm pgTm
	tm.year, tm.mon, tm.mday = j2date(int(days) + postgresEpochJDate)
	return appendDateOnly(dst, &tm, tc), nil
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

// fromText is timestamp_in and timestamptz_in: timestamp ignores a zone
// in the literal; timestamptz reads a literal without one in the session's
// time zone.
func (c timestampCodec) fromText(src []byte, tc *TextContext) ([]byte, error) {
	p, err := parseDateTimeText(src, timestampWorkBuf, tc)
	if err != nil {
		return nil, err
	}
	var usec int64
	switch p.dtype {
	case dtkDate:
		var tz *int
		if c.tz {
			tz = &p.tz
		}
		var ok bool
		if usec, ok = tm2timestamp(&p.tm, p.fsec, tz); !ok {
			return nil, errDateRange
		}
	case dtkEpoch:
		usec = epochMicros
	case dtkLate:
		usec = tsInf
	case dtkEarly:
		usec = math.MinInt64
	default:
		return nil, errSyntax
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(usec)), nil
}

// tm2timestamp is PostgreSQL's tm2timestamp, overflow checks included; tz
// (seconds west) makes the result UTC.
func tm2timestamp(tm *pgTm, fsec int, tz *int) (int64, bool) {
	if !validJulian(tm.year, tm.mon) {
		return 0, false
	}
	date := int64(date2j(tm.year, tm.mon, tm.mday) - postgresEpochJDate)
	// time2t: the seconds are computed in C int, which wraps.
	secs := (int32(tm.hour)*60+int32(tm.min))*60 + int32(tm.sec)
	t := int64(secs)*usecPerSec + int64(fsec)
	result := date*usecPerDay + t
	if (result-t)/usecPerDay != date {
		return 0, false
	}
	// 1999-12-31 24:00:00 is allowed; a time of day that wraps is not.
	if (result < 0 && date > 0) || (result > 0 && date < -1) {
		return 0, false
	}
	if tz != nil {
		result += int64(*tz) * usecPerSec
	}
	if result < tsMin || result >= tsEnd {
		return 0, false
	}
	return result, true
}

// zoneOffset is the UTC offset (seconds east) PostgreSQL's
// DetermineTimeZoneOffset gives a wall-clock reading in loc (wall is
// microseconds since 2000-01-01 read as if UTC): in a spring-forward gap
// the offset from before the change, in a fall-back overlap the one from
// after it.
func zoneOffset(wall int64, loc *time.Location) int {
	tm, _ := timestampFields(wall)
	return -determineTimeZoneOffset(&tm, loc)
}

// timestampFields is timestamp2tm without a zone: the fields of usec
// microseconds after 2000-01-01.
func timestampFields(usec int64) (pgTm, int) {
	date := usec / usecPerDay
	t := usec % usecPerDay
	if t < 0 {
		t += usecPerDay
		date--
	}
	var tm pgTm
	tm.year, tm.mon, tm.mday = j2date(int(date + postgresEpochJDate))
	var fsec int
	tm.hour, tm.min, tm.sec, fsec = dt2time(t)
	return tm, fsec
}

// fromBinary is timestamp_recv and timestamptz_recv.
func (timestampCodec) fromBinary(src []byte) ([]byte, error) {
	if err := binaryLength(src, 8); err != nil {
		return nil, err
	}
	if _, err := decodeTimestamp(src); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, 8), src...), nil
}

// appendText is timestamp_out and timestamptz_out: timestamptz in the
// session's time zone, with its offset (ISO) or abbreviation (SQL, German,
// Postgres).
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
	if !c.tz {
		tm, fsec := timestampFields(usec)
		return appendDateTime(dst, &tm, fsec, nil, tc), nil
	}
	t := pgEpochTime(usec).In(tc.location())
	tm := pgTm{
		year: t.Year(), mon: int(t.Month()), mday: t.Day(),
		hour: t.Hour(), min: t.Minute(), sec: t.Second(),
	}
	name, offset := t.Zone()
	zone := zoneOut{tz: -offset, abbrev: name}
	return appendDateTime(dst, &tm, t.Nanosecond()/1000, &zone, tc), nil
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
