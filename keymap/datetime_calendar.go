package keymap

// Calendar arithmetic of PostgreSQL's datetime.c and timestamp.h, with the
// C int arithmetic (32-bit, wrapping) it relies on.

const (
	postgresEpochJDate = 2451545 // date2j(2000, 1, 1)
	unixEpochJDate     = 2440588 // date2j(1970, 1, 1)

	julianMinYear  = -4713
	julianMinMonth = 11
	julianMaxYear  = 5874898
	julianMaxMonth = 6

	secsPerDay  = 86400
	usecPerHour = 3600 * usecPerSec
	usecPerMin  = 60 * usecPerSec
)

// date2j is PostgreSQL's date2j: the Julian day of a proleptic Gregorian
// date (astronomical year), computed in 32-bit ints as C does.
func date2j(year, month, day int) int {
	y, m := int32(year), int32(month)
	if m > 2 {
		m++
		y += 4800
	} else {
		m += 13
		y += 4799
	}
	century := y / 100
	julian := y*365 - 32167
	julian += y/4 - century + century/4
	julian += 7834*m/256 + int32(day)
	return int(julian)
}

// j2date is PostgreSQL's j2date, in unsigned 32-bit arithmetic as C does.
func j2date(jd int) (year, month, day int) {
	julian := uint32(int32(jd))
	julian += 32044
	quad := julian / 146097
	extra := (julian-quad*146097)*4 + 3
	julian += 60 + quad*3 + extra/146097
	quad = julian / 1461
	julian -= quad * 1461
	y := int32(julian * 4 / 1461)
	if y != 0 {
		julian = (julian+305)%365 + 123
	} else {
		julian = (julian+306)%366 + 123
	}
	y += int32(quad * 4)
	year = int(y - 4800)
	quad = julian * 2141 / 65536
	day = int(julian - 7834*quad/256)
	month = int((quad+10)%12 + 1)
	return year, month, day
}

// j2day is the day of the week (0 = Sunday) of a Julian day.
func j2day(jd int) int {
	d := (jd + 1) % 7
	if d < 0 {
		d += 7
	}
	return d
}

// validJulian is IS_VALID_JULIAN: whether date2j works for the date.
func validJulian(year, month int) bool {
	return (year > julianMinYear || (year == julianMinYear && month >= julianMinMonth)) &&
		(year < julianMaxYear || (year == julianMaxYear && month < julianMaxMonth))
}

// dayTab is day_tab: days per month in common and leap years.
var dayTab = [2][12]int{
	{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31},
	{31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31},
}

func isLeapYear(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(year, month int) int {
	leap := 0
	if isLeapYear(year) {
		leap = 1
	}
	return dayTab[leap][month-1]
}

// daysSincePGEpoch counts days from 2000-01-01 to a valid date.
func daysSincePGEpoch(year, month, day int) int64 {
	return int64(date2j(year, month, day) - postgresEpochJDate)
}

// dt2time is PostgreSQL's dt2time: a time of day in microseconds broken
// into fields.
func dt2time(t int64) (hour, min, sec, fsec int) {
	hour = int(t / usecPerHour)
	t -= int64(hour) * usecPerHour
	min = int(t / usecPerMin)
	t -= int64(min) * usecPerMin
	sec = int(t / usecPerSec)
	fsec = int(t - int64(sec)*usecPerSec)
	return hour, min, sec, fsec
}
