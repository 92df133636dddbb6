package keymap

import (
	"errors"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/policy"
)

// dtCase is a date/time literal read under a DateStyle and TimeZone, and
// what PostgreSQL 15 prints for it under the same settings, or the
// SQLSTATE it refuses it with. The expectations were taken from
// PostgreSQL 15.
type dtCase struct {
	typ, style, zone, in string
	want, code           string
}

var dtCases = []dtCase{
	{"date", "ISO, MDY", "UTC", "2024-01-31", "2024-01-31", ""},
	{"date", "ISO, MDY", "UTC", "20240131", "2024-01-31", ""},
	{"date", "ISO, MDY", "UTC", "690720", "2069-07-20", ""},
	{"date", "ISO, MDY", "UTC", "19690720", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "July 20, 1969", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "20-Jul-1969", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "Jul 20 1969", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "Sunday, July 20, 1969", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "J2440423", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "J2440423.75", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "1969.201", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "01/02/1980", "1980-01-02", ""},
	{"date", "SQL, DMY", "UTC", "01/02/1980", "01/02/1980", ""},
	{"date", "ISO, YMD", "UTC", "01/02/03", "2001-02-03", ""},
	{"date", "ISO, MDY", "UTC", "01/02/03", "2003-01-02", ""},
	{"date", "German, DMY", "UTC", "01/02/03", "01.02.2003", ""},
	{"date", "ISO, MDY", "UTC", "69-07-20", "", "22008"},
	{"date", "ISO, MDY", "UTC", "70-07-20", "", "22008"},
	{"date", "ISO, MDY", "UTC", "0044-03-15 BC", "0044-03-15 BC", ""},
	{"date", "ISO, MDY", "UTC", "March 15, 44 BC", "0044-03-15 BC", ""},
	{"date", "SQL, MDY", "UTC", "0044-03-15 BC", "03/15/0044 BC", ""},
	{"date", "Postgres, DMY", "UTC", "0044-03-15 BC", "15-03-0044 BC", ""},
	{"date", "German, DMY", "UTC", "0044-03-15 BC", "15.03.0044 BC", ""},
	{"date", "ISO, MDY", "UTC", "4714-11-24 BC", "4714-11-24 BC", ""},
	{"date", "ISO, MDY", "UTC", "4714-11-23 BC", "", "22008"},
	{"date", "ISO, MDY", "UTC", "5874897-12-31", "5874897-12-31", ""},
	{"date", "SQL, DMY", "UTC", "5874897-12-31", "31/12/5874897", ""},
	{"date", "ISO, MDY", "UTC", "5874898-01-01", "", "22008"},
	{"date", "ISO, MDY", "UTC", "12024-01-01", "12024-01-01", ""},
	{"date", "ISO, MDY", "UTC", "1969-07-20 +00", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "1969-07-20 20:17:40 America/New_York", "1969-07-20", ""},
	{"date", "ISO, MDY", "UTC", "1969-07-20 Mars/Olympus", "", "22023"},
	{"date", "ISO, MDY", "UTC", "1969-07-20 +16", "", "22009"},
	{"date", "ISO, MDY", "UTC", "infinity", "infinity", ""},
	{"date", "ISO, MDY", "UTC", "-infinity", "-infinity", ""},
	{"date", "ISO, MDY", "UTC", "epoch", "1970-01-01", ""},
	{"date", "ISO, MDY", "UTC", "2023-02-29", "", "22008"},
	{"date", "ISO, MDY", "UTC", "2024-13-01", "", "22008"},
	{"date", "ISO, MDY", "UTC", "0000-01-01", "", "22008"},
	{"date", "ISO, MDY", "UTC", "13:45", "", "22007"},
	{"date", "ISO, MDY", "UTC", "2024-01-31 junk", "", "22007"},
	{"date", "ISO, MDY", "UTC", "", "", "22007"},
	{"date", "SQL, MDY", "UTC", "2024-07-04", "07/04/2024", ""},
	{"date", "SQL, DMY", "UTC", "2024-07-04", "04/07/2024", ""},
	{"date", "Postgres, MDY", "UTC", "2024-07-04", "07-04-2024", ""},
	{"date", "Postgres, DMY", "UTC", "2024-07-04", "04-07-2024", ""},
	{"date", "German, MDY", "UTC", "2024-07-04", "04.07.2024", ""},
	{"date", "Postgres, YMD", "UTC", "2024-07-04", "07-04-2024", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00.123456", "2024-01-31 13:45:00.123456", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31T13:45:00.1234565", "2024-01-31 13:45:00.123456", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00.1234575", "2024-01-31 13:45:00.123458", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 23:59:59.9999999", "2024-02-01 00:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-02-29 24:00:00", "2024-03-01 00:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2016-12-31 23:59:60", "2017-01-01 00:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 23:59:60.5", "", "22008"},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 24:00:01", "", "22008"},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:60:00", "", "22008"},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00+05", "2024-01-31 13:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00 America/New_York", "2024-01-31 13:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00 PST", "2024-01-31 13:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 01:45 PM", "2024-01-31 13:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 12:45 AM", "2024-01-31 00:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45 PM", "", "22008"},
	{"timestamp", "ISO, MDY", "UTC", "20240131T134500", "2024-01-31 13:45:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45.5", "2024-01-31 00:13:45.5", ""},
	{"timestamp", "ISO, MDY", "UTC", "y2001m02d04h05mm06s07", "2001-02-04 05:06:07", ""},
	{"timestamp", "ISO, MDY", "UTC", "Jan 31 2024 at 10:00", "2024-01-31 10:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 996060", "2024-02-04 04:01:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "allballs 2024-01-31", "", "22007"},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 allballs", "2024-01-31 00:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "294276-12-31 23:59:59.999999", "294276-12-31 23:59:59.999999", ""},
	{"timestamp", "ISO, MDY", "UTC", "294277-01-01", "", "22008"},
	{"timestamp", "ISO, MDY", "UTC", "4714-11-24 00:00:00 BC", "4714-11-24 00:00:00 BC", ""},
	{"timestamp", "ISO, MDY", "UTC", "4714-11-23 23:59:59 BC", "", "22008"},
	{"timestamp", "SQL, MDY", "UTC", "2024-01-31 13:45:00.5", "01/31/2024 13:45:00.5", ""},
	{"timestamp", "SQL, DMY", "UTC", "2024-01-31 13:45:00.5", "31/01/2024 13:45:00.5", ""},
	{"timestamp", "Postgres, MDY", "UTC", "2024-01-31 13:45:00.5", "Wed Jan 31 13:45:00.5 2024", ""},
	{"timestamp", "Postgres, DMY", "UTC", "2024-01-31 13:45:00.5", "Wed 31 Jan 13:45:00.5 2024", ""},
	{"timestamp", "German, DMY", "UTC", "2024-01-31 13:45:00.5", "31.01.2024 13:45:00.5", ""},
	{"timestamp", "Postgres, MDY", "UTC", "0044-03-15 10:00 BC", "Fri Mar 15 10:00:00 0044 BC", ""},
	{"timestamp", "ISO, MDY", "UTC", "epoch", "1970-01-01 00:00:00", ""},
	{"timestamp", "ISO, MDY", "UTC", "infinity", "infinity", ""},
	{"timestamp", "ISO, MDY", "UTC", "2024-01-31 13:45:00 junk", "", "22007"},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00+01", "2024-01-31 12:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00-0330", "2024-01-31 17:15:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 -03:30", "2024-01-31 17:15:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00+05:30:15", "2024-01-31 08:14:45+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00+123", "2024-01-31 12:22:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00+16", "", "22009"},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00+01:60", "", "22009"},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00Z", "2024-01-31 13:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 zulu", "2024-01-31 13:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 EST", "2024-01-31 18:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-31 13:45:00 EST", "2024-07-31 18:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-31 13:45:00 CEST", "2024-07-31 11:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-31 13:45:00 MET DST", "2024-07-31 11:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-31 13:45:00 DST", "", "22007"},
	{"timestamptz", "ISO, MDY", "UTC", "1990-07-01 12:00 MSK", "1990-07-01 09:00:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-01 12:00 MSK", "2024-07-01 09:00:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 IRKT", "2024-01-31 05:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "Thu Feb 29 23:59:58 2024 UTC", "2024-02-29 23:59:58+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "Thu Feb 29 23:59:58 2024 PST", "2024-03-01 07:59:58+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 America/New_York", "2024-01-31 18:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 america/new_york", "2024-01-31 18:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 Japan", "2024-01-31 04:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 UTC+3", "2024-01-31 16:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-07-31 13:45:00 FOO5BAR", "2024-07-31 17:45:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 Mars/Olympus", "", "22023"},
	{"timestamptz", "ISO, MDY", "UTC", "2024-01-31 13:45:00 Marsolympus", "", "22007"},
	{"timestamptz", "ISO, MDY", "UTC", "J2451545-05", "2000-01-01 05:00:00+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "20011225T040506.789-07", "2001-12-25 11:05:06.789+00", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "2024-03-10 02:30", "2024-03-10 03:30:00-04", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "2024-03-10 03:30", "2024-03-10 03:30:00-04", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "2024-11-03 01:30", "2024-11-03 01:30:00-05", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "2024-11-03 01:30 EDT", "2024-11-03 01:30:00-04", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "2024-11-03 01:30 EST", "2024-11-03 01:30:00-05", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "1883-11-18 12:00", "1883-11-18 12:00:00-05", ""},
	{"timestamptz", "ISO, MDY", "America/New_York", "1800-01-01", "1800-01-01 00:00:00-04:56:02", ""},
	{"timestamptz", "ISO, MDY", "Europe/Paris", "1900-01-01 00:00:00+00", "1900-01-01 00:09:21+00:09:21", ""},
	{"timestamptz", "ISO, MDY", "Australia/Lord_Howe", "2024-04-07 01:45", "2024-04-07 01:45:00+10:30", ""},
	{"timestamptz", "ISO, MDY", "Australia/Lord_Howe", "2024-10-06 02:15", "2024-10-06 02:45:00+11", ""},
	{"timestamptz", "SQL, MDY", "America/New_York", "2024-07-04 12:00+00", "07/04/2024 08:00:00 EDT", ""},
	{"timestamptz", "SQL, DMY", "America/New_York", "2024-01-04 12:00+00", "04/01/2024 07:00:00 EST", ""},
	{"timestamptz", "Postgres, MDY", "America/New_York", "2024-07-04 12:00+00", "Thu Jul 04 08:00:00 2024 EDT", ""},
	{"timestamptz", "Postgres, DMY", "America/New_York", "2024-07-04 12:00+00", "Thu 04 Jul 08:00:00 2024 EDT", ""},
	{"timestamptz", "German, DMY", "America/New_York", "2024-07-04 12:00+00", "04.07.2024 08:00:00 EDT", ""},
	{"timestamptz", "SQL, MDY", "Asia/Kolkata", "2024-07-04 12:00:00.25+00", "07/04/2024 17:30:00.25 IST", ""},
	{"timestamptz", "Postgres, MDY", "Australia/Lord_Howe", "2024-01-04 12:00+00", "Thu Jan 04 23:00:00 2024 +11", ""},
	{"timestamptz", "SQL, MDY", "Australia/Lord_Howe", "2024-07-04 12:00+00", "07/04/2024 22:30:00 +1030", ""},
	{"timestamptz", "German, DMY", "Asia/Dubai", "2024-07-04 12:00+00", "04.07.2024 16:00:00 +04", ""},
	{"timestamptz", "SQL, MDY", "America/New_York", "1800-01-01 12:00+00", "01/01/1800 07:03:58 LMT", ""},
	{"timestamptz", "Postgres, MDY", "UTC", "0044-03-15 10:00+00 BC", "Fri Mar 15 10:00:00 0044 UTC BC", ""},
	{"timestamptz", "ISO, MDY", "Asia/Kolkata", "0044-03-15 10:00+00 BC", "0044-03-15 15:53:28+05:53:28 BC", ""},
	{"timestamptz", "ISO, MDY", "UTC", "294276-12-31 23:59:59.999999+00", "294276-12-31 23:59:59.999999+00", ""},
	{"timestamptz", "ISO, MDY", "UTC", "294276-12-31 23:59:59.999999-01", "", "22008"},
	{"timestamptz", "ISO, MDY", "UTC", "4714-11-24 00:00:00+00 BC", "4714-11-24 00:00:00+00 BC", ""},
	{"timestamptz", "ISO, MDY", "UTC", "4714-11-24 00:00:00+01 BC", "", "22008"},
	{"timestamptz", "ISO, MDY", "Europe/Paris", "epoch", "1970-01-01 01:00:00+01", ""},
	{"timestamptz", "ISO, MDY", "Europe/Paris", "-infinity", "-infinity", ""},
}

func dtContext(t *testing.T, style, zone string) *TextContext {
	t.Helper()
	out, order, ok := ParseDateStyle(style)
	if !ok {
		t.Fatalf("ParseDateStyle(%q) failed", style)
	}
	return &TextContext{Location: mustLoc(t, zone), DateOutput: out, DateOrder: order}
}

func TestDateTimeText(t *testing.T) {
	for _, tt := range dtCases {
		t.Run(tt.typ+"/"+tt.style+"/"+tt.zone+"/"+tt.in, func(t *testing.T) {
			checkDateTime(t, tt, dtContext(t, tt.style, tt.zone))
		})
	}
}

func checkDateTime(t *testing.T, tt dtCase, tc *TextContext) {
	t.Helper()
	codec := CodecFor(policy.LogicalType(tt.typ))
	canon, err := codec.Canonical(TextFormat, []byte(tt.in), tc)
	if tt.code != "" {
		var ve *ValueError
		if !errors.As(err, &ve) {
			t.Fatalf("Canonical = %x, %v; want SQLSTATE %s", canon, err, tt.code)
		}
		if ve.SQLState() != tt.code {
			t.Fatalf("SQLSTATE %s (%v), want %s", ve.SQLState(), err, tt.code)
		}
		return
	}
	if err != nil {
		t.Fatalf("Canonical: %v; want %q", err, tt.want)
	}
	got, err := codec.AppendText(nil, canon, tc)
	if err != nil || string(got) != tt.want {
		t.Fatalf("text = %q, %v; want %q", got, err, tt.want)
	}
	// ISO output reads back as the same value. (Other styles need not:
	// German prints day first whatever the order, and an abbreviation like
	// IST or LMT may read as another zone or not at all, in PostgreSQL too.)
	if tc.DateOutput != DateOutputISO {
		return
	}
	again, err := codec.Canonical(TextFormat, got, tc)
	if err != nil || string(again) != string(canon) {
		t.Fatalf("reading %q back = %x, %v; want %x", got, again, err, canon)
	}
}

// TestDateTimeClock: now, today, tomorrow and yesterday read the session's
// clock (TextContext.Now) in the session's time zone.
func TestDateTimeClock(t *testing.T) {
	// 2024-03-10 04:30 UTC is still March 9 in New York, already March 10
	// in Kolkata, and DST has begun in neither.
	now := time.Date(2024, 3, 10, 4, 30, 0, 123456789, time.UTC)
	cases := []dtCase{
		{"date", "ISO, MDY", "UTC", "today", "2024-03-10", ""},
		{"date", "ISO, MDY", "America/New_York", "today", "2024-03-09", ""},
		{"date", "ISO, MDY", "Asia/Kolkata", "yesterday", "2024-03-09", ""},
		{"date", "SQL, DMY", "America/New_York", "tomorrow", "10/03/2024", ""},
		{"date", "ISO, MDY", "Australia/Lord_Howe", "now", "2024-03-10", ""},
		{"date", "ISO, MDY", "UTC", "now 10:00", "", "22007"},
		{"timestamp", "ISO, MDY", "America/New_York", "now", "2024-03-09 23:30:00.123456", ""},
		{"timestamp", "ISO, MDY", "America/New_York", "today", "2024-03-09 00:00:00", ""},
		{"timestamp", "ISO, MDY", "UTC", "tomorrow 10:15", "2024-03-11 10:15:00", ""},
		{"timestamp", "ISO, MDY", "UTC", "yesterday allballs", "2024-03-09 00:00:00", ""},
		{"timestamptz", "ISO, MDY", "America/New_York", "now", "2024-03-09 23:30:00.123456-05", ""},
		{"timestamptz", "ISO, MDY", "Asia/Kolkata", "now", "2024-03-10 10:00:00.123456+05:30", ""},
		{"timestamptz", "ISO, MDY", "America/New_York", "today", "2024-03-09 00:00:00-05", ""},
		{"timestamptz", "ISO, MDY", "America/New_York", "today UTC", "2024-03-08 19:00:00-05", ""}, // today is New York's
		{"timestamptz", "Postgres, MDY", "America/New_York", "tomorrow 02:30", "Sun Mar 10 03:30:00 2024 EDT", ""},
		{"timestamptz", "ISO, MDY", "UTC", "now UTC", "", "22007"},
	}
	for _, tt := range cases {
		t.Run(tt.typ+"/"+tt.zone+"/"+tt.in, func(t *testing.T) {
			tc := dtContext(t, tt.style, tt.zone)
			tc.Now = func() time.Time { return now }
			codec := CodecFor(policy.LogicalType(tt.typ))
			canon, err := codec.Canonical(TextFormat, []byte(tt.in), tc)
			if tt.code != "" {
				var ve *ValueError
				if !errors.As(err, &ve) || ve.SQLState() != tt.code {
					t.Fatalf("Canonical = %x, %v; want SQLSTATE %s", canon, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := codec.AppendText(nil, canon, tc); string(got) != tt.want {
				t.Fatalf("text = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDateTimeBinaryIgnoresDateStyle: the canonical (binary) form of a
// value does not depend on DateStyle, only how text reads and prints.
func TestDateTimeBinaryIgnoresDateStyle(t *testing.T) {
	for _, typ := range []policy.LogicalType{policy.TypeDate, policy.TypeTimestamp, policy.TypeTimestamptz} {
		codec := CodecFor(typ)
		var first []byte
		for _, style := range []string{"ISO, MDY", "SQL, DMY", "Postgres, YMD", "German, DMY"} {
			tc := dtContext(t, style, "UTC")
			canon, err := codec.Canonical(TextFormat, []byte("2024-07-04 10:11:12"), tc)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = canon
			} else if string(canon) != string(first) {
				t.Errorf("%s under %s: %x, under ISO %x", typ, style, canon, first)
			}
			text, err := codec.AppendText(nil, canon, tc)
			if err != nil {
				t.Fatal(err)
			}
			if bin, err := codec.AppendBinary(nil, canon); err != nil || string(bin) != string(canon) {
				t.Errorf("%s binary = %x, %v", typ, bin, err)
			}
			// Each of these styles reads its own output back (Postgres with
			// YMD does not: it prints 07-04-2024).
			if back, err := codec.Canonical(TextFormat, text, tc); tc.DateOrder != DateOrderYMD && (err != nil || string(back) != string(canon)) {
				t.Errorf("%s under %s: %q reads back as %x, %v", typ, style, text, back, err)
			}
		}
	}
}

func TestParseDateStyle(t *testing.T) {
	for _, tt := range []struct {
		in    string
		out   DateOutput
		order DateOrder
		ok    bool
	}{
		{"ISO, MDY", DateOutputISO, DateOrderMDY, true},
		{"SQL, DMY", DateOutputSQL, DateOrderDMY, true},
		{"Postgres, YMD", DateOutputPostgres, DateOrderYMD, true},
		{"German, DMY", DateOutputGerman, DateOrderDMY, true},
		{"ISO", 0, 0, false},
		{"XSD, MDY", 0, 0, false},
		{"", 0, 0, false},
	} {
		out, order, ok := ParseDateStyle(tt.in)
		if out != tt.out || order != tt.order || ok != tt.ok {
			t.Errorf("ParseDateStyle(%q) = %v, %v, %v", tt.in, out, order, ok)
		}
	}
}

func TestJulianDays(t *testing.T) {
	if got := date2j(2000, 1, 1); got != postgresEpochJDate {
		t.Fatalf("date2j(2000-01-01) = %d", got)
	}
	if got := date2j(1970, 1, 1); got != unixEpochJDate {
		t.Fatalf("date2j(1970-01-01) = %d", got)
	}
	for _, jd := range []int{0, 1, 2440423, 2451545, 2460341, 1721426, 1721425, 5373484, 2147483493} {
		y, m, d := j2date(jd)
		if back := date2j(y, m, d); back != jd {
			t.Errorf("j2date(%d) = %d-%d-%d, date2j of that = %d", jd, y, m, d, back)
		}
	}
	// Against Go's proleptic Gregorian calendar.
	for _, day := range []time.Time{
		time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC), time.Date(0, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(1582, 10, 10, 0, 0, 0, 0, time.UTC), time.Date(294276, 12, 31, 0, 0, 0, 0, time.UTC),
	} {
		want := int(day.Unix()/86400) + unixEpochJDate
		if got := date2j(day.Year(), int(day.Month()), day.Day()); got != want {
			t.Errorf("date2j(%s) = %d, want %d", day.Format("2006-01-02"), got, want)
		}
	}
}

func TestSplitDateTime(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []dtField
	}{
		{"2024-01-31 13:45:00+05", []dtField{{"2024-01-31", fieldDate}, {"13:45:00", fieldTime}, {"+05", fieldTZ}}},
		{"J2440423.5", []dtField{{"j", fieldString}, {"2440423.5", fieldNumber}}},
		{"Jul-20-1969 America/New_York", []dtField{{"jul-20-1969", fieldDate}, {"america/new_york", fieldDate}}},
		{"20011225T040506.789-07", []dtField{{"20011225", fieldNumber}, {"t", fieldString}, {"040506.789", fieldNumber}, {"-07", fieldTZ}}},
		{"now, -infinity", []dtField{{"now", fieldString}, {"-infinity", fieldSpecial}}},
		{"utc+3", []dtField{{"utc+3", fieldDate}}},
	} {
		got, err := splitDateTime([]byte(tt.in), timestampWorkBuf)
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("splitDateTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("splitDateTime(%q)[%d] = %v, want %v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

// TestZoneOffsetTransitions: readings in a spring-forward gap take the
// offset from before the change, ambiguous ones at a fall-back the offset
// from after it (DetermineTimeZoneOffset).
func TestZoneOffsetTransitions(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	lh := mustLoc(t, "Australia/Lord_Howe")
	for _, tt := range []struct {
		loc  *time.Location
		tm   pgTm
		want int // seconds east
	}{
		{ny, pgTm{year: 2024, mon: 3, mday: 10, hour: 1, min: 59, sec: 59}, -5 * 3600},
		{ny, pgTm{year: 2024, mon: 3, mday: 10, hour: 2, min: 30}, -5 * 3600},
		{ny, pgTm{year: 2024, mon: 3, mday: 10, hour: 3}, -4 * 3600},
		{ny, pgTm{year: 2024, mon: 11, mday: 3, hour: 0, min: 59}, -4 * 3600},
		{ny, pgTm{year: 2024, mon: 11, mday: 3, hour: 1, min: 30}, -5 * 3600},
		{ny, pgTm{year: 2024, mon: 11, mday: 3, hour: 2}, -5 * 3600},
		{lh, pgTm{year: 2024, mon: 10, mday: 6, hour: 2, min: 15}, 10*3600 + 1800},
		{lh, pgTm{year: 2024, mon: 4, mday: 7, hour: 1, min: 45}, 10*3600 + 1800},
		{ny, pgTm{year: 1800, mon: 1, mday: 1}, -(4*3600 + 56*60 + 2)},
		{ny, pgTm{year: -5000, mon: 1, mday: 1}, 0}, // before Julian day 0: UTC
	} {
		if got := -determineTimeZoneOffset(&tt.tm, tt.loc); got != tt.want {
			t.Errorf("%s %+v: offset %d, want %d", tt.loc, tt.tm, got, tt.want)
		}
	}
}

func TestLookupZoneName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"america/new_york", true},
		{"AMERICA/NEW_YORK", true},
		{"japan", true},
		{"utc+3", true},
		{"xyz-3:30", true},
		{"foo5bar", true},
		{"mars/olympus", false},
		{"america", false},
		{"america//new_york", false},
		{"a", false},
		{":utc", false},
		{"foo+168", false},
	} {
		if got := lookupZoneName(tt.name) != nil; got != tt.ok {
			t.Errorf("lookupZoneName(%q) found = %v, want %v", tt.name, got, tt.ok)
		}
	}
	// POSIX signs: UTC+3 is three hours west.
	if _, off := time.Date(2024, 1, 1, 0, 0, 0, 0, lookupZoneName("utc+3")).Zone(); off != -3*3600 {
		t.Errorf("UTC+3 offset %d", off)
	}
	// FOO5BAR has the USA's daylight saving rules.
	loc := lookupZoneName("foo5bar")
	for _, tt := range []struct {
		t    time.Time
		want int
	}{{time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC), -5 * 3600}, {time.Date(2024, 7, 15, 12, 0, 0, 0, time.UTC), -4 * 3600}} {
		if _, off := tt.t.In(loc).Zone(); off != tt.want {
			t.Errorf("FOO5BAR at %s: offset %d, want %d", tt.t, off, tt.want)
		}
	}
}

// FuzzDateTimeText: no literal makes the parser panic, and what it accepts
// prints and, in ISO style, reads back as the same value.
func FuzzDateTimeText(f *testing.F) {
	for _, tt := range dtCases {
		f.Add(tt.in, uint8(0))
	}
	f.Add("y2147483647m1d1 h2147483647", uint8(1))
	f.Add("J2147483647.99999999", uint8(2))
	zones := []*time.Location{time.UTC, mustLocF(f, "America/New_York"), mustLocF(f, "Australia/Lord_Howe")}
	f.Fuzz(func(t *testing.T, in string, setting uint8) {
		tc := &TextContext{
			Location:   zones[int(setting)%len(zones)],
			DateOrder:  DateOrder(setting / 3 % 3),
			DateOutput: DateOutputISO,
			Now:        func() time.Time { return time.Date(2024, 3, 10, 4, 30, 0, 0, time.UTC) },
		}
		for _, typ := range []policy.LogicalType{policy.TypeDate, policy.TypeTimestamp, policy.TypeTimestamptz} {
			codec := CodecFor(typ)
			canon, err := codec.Canonical(TextFormat, []byte(in), tc)
			if err != nil {
				continue
			}
			text, err := codec.AppendText(nil, canon, tc)
			if err != nil {
				t.Fatalf("%s %q: accepted as %x, which does not print: %v", typ, in, canon, err)
			}
			back, err := codec.Canonical(TextFormat, text, tc)
			if err != nil || string(back) != string(canon) {
				t.Fatalf("%s %q: prints %q, which reads as %x, %v; want %x", typ, in, text, back, err, canon)
			}
		}
	})
}

func mustLocF(f *testing.F, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		f.Fatal(err)
	}
	return loc
}
