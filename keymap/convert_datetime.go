package keymap

import (
	"encoding/binary"
	"math"

	"github.com/pgcloak/pgcloak/policy"
)

// castDateTime converts between date, timestamp and timestamptz as
// PostgreSQL's cast functions do: a date is its midnight, a timestamp
// becomes a timestamptz by reading it in the session's time zone and back
// by showing it there, and infinities stay infinities.
func castDateTime(d datum, to policy.PGType, tc *TextContext) ([]byte, error) {
	wall, inf, err := wallClock(d, tc)
	if err != nil {
		return nil, err
	}
	switch to {
	case policy.PGDate:
		if inf != 0 {
			return putDate(int64(inf) * dateInf), nil
		}
		days := floorDiv(wall, usecPerDay)
		if days < dateMin || days >= dateEnd {
			return nil, errDateRangeFor(to)
		}
		return putDate(days), nil
	case policy.PGTimestamp:
		if inf != 0 {
			return putTimestamp(infMicros(inf)), nil
		}
		return checkedTimestamp(wall, to)
	}
	if inf != 0 {
		return putTimestamp(infMicros(inf)), nil
	}
	return checkedTimestamp(wall-int64(zoneOffset(wall, tc.location()))*usecPerSec, to)
}

// wallClock is d's wall-clock reading in the session's time zone, as
// microseconds since 2000-01-01 read as if UTC, or its infinity (±1).
func wallClock(d datum, tc *TextContext) (int64, int, error) {
	switch d.t {
	case policy.PGDate:
		days, err := decodeDate(d.canon)
		if err != nil {
			return 0, 0, err
		}
		switch days {
		case dateInf:
			return 0, 1, nil
		case math.MinInt32:
			return 0, -1, nil
		}
		return int64(days) * usecPerDay, 0, nil
	}
	t, err := decodeTimestamp(d.canon)
	if err != nil {
		return 0, 0, err
	}
	switch t {
	case math.MaxInt64:
		return 0, 1, nil
	case math.MinInt64:
		return 0, -1, nil
	}
	if d.t == policy.PGTimestamptz {
		_, offset := pgEpochTime(t).In(tc.location()).Zone()
		t += int64(offset) * usecPerSec
	}
	return t, 0, nil
}

func infMicros(inf int) int64 {
	if inf > 0 {
		return math.MaxInt64
	}
	return math.MinInt64
}

func checkedTimestamp(usec int64, to policy.PGType) ([]byte, error) {
	if usec < tsMin || usec >= tsEnd {
		return nil, errDateRangeFor(to)
	}
	return putTimestamp(usec), nil
}

func errDateRangeFor(t policy.PGType) error {
	return &ValueError{Type: "date", Reason: t.SQLName() + " out of range", Code: SQLStateDatetimeOverflow}
}

func putDate(days int64) []byte {
	if days == -dateInf {
		days = math.MinInt32
	}
	return binary.BigEndian.AppendUint32(nil, uint32(int32(days)))
}

func putTimestamp(usec int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(usec)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
