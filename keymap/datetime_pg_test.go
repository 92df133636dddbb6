package keymap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

// datetimeCorpus is the literals TestDateTimeMatchesPostgres sends: the
// curated ones of testdata/datetime_inputs.txt, combinations of date, time
// and zone forms, and seeded mutations of both.
func datetimeCorpus(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("testdata/datetime_inputs.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var base []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, `"`):
			s, err := strconv.Unquote(line)
			if err != nil {
				t.Fatalf("bad quoted line %s: %v", line, err)
			}
			line = s
		}
		base = append(base, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	dates := []string{"2024-01-31", "01/02/2024", "Jan 31 2024", "31 Jan 2024", "20240131", "2024.031", "J2460341", "0044-03-15", "2024-07-04"}
	times := []string{"", "00:00", "13:45:30.5", "24:00:00", "23:59:60", "1345", "T134530", "12:00 pm", "02:30"}
	zones := []string{"", "+05:30", "-0800", "Z", "UTC", "PST", "CEST", "Europe/Paris", "America/New_York", "LHDT", "MSK", "BC"}
	var combos []string
	for _, d := range dates {
		for _, tm := range times {
			for _, z := range zones {
				combos = append(combos, strings.TrimSpace(strings.Join([]string{d, tm, z}, " ")))
			}
		}
	}

	// Every keyword and zone abbreviation, after a date and alone.
	for _, tok := range dateTokens {
		combos = append(combos, "2024-01-31 10:00 "+tok.text, tok.text)
	}
	for _, a := range defaultZoneAbbrevs {
		combos = append(combos, "2024-07-31 10:00 "+strings.ToUpper(a.abbrev), "1995-01-15 10:00 "+a.abbrev)
	}
	// Lengths around the work buffers of date_in and timestamp_in, and
	// field counts around MAXDATEFIELDS.
	for n := 100; n <= 140; n++ {
		combos = append(combos, "2024-01-31 13:45:00."+strings.Repeat("5", n))
	}
	for n := 22; n <= 27; n++ {
		combos = append(combos, "2024-01-31"+strings.Repeat(" at", n-1))
	}

	rng := rand.New(rand.NewPCG(20240131, 15))
	all := append(append([]string(nil), base...), combos...)
	var mutants []string
	for range 600 {
		mutants = append(mutants, mutate(rng, all[rng.IntN(len(all))]))
	}
	corpus := append(all, mutants...)
	seen := map[string]bool{}
	out := corpus[:0]
	for _, s := range corpus {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// mutate makes one or two random edits of s.
func mutate(rng *rand.Rand, s string) string {
	const alphabet = " -/:.+TtZ0123456789ajm,"
	b := []byte(s)
	for range 1 + rng.IntN(2) {
		if len(b) == 0 {
			b = append(b, alphabet[rng.IntN(len(alphabet))])
			continue
		}
		i := rng.IntN(len(b))
		switch rng.IntN(6) {
		case 0:
			b = append(b[:i], b[i+1:]...)
		case 1:
			b = append(b[:i+1], b[i:]...)
		case 2:
			if i+1 < len(b) {
				b[i], b[i+1] = b[i+1], b[i]
			}
		case 3:
			if isDigit(b[i]) {
				b[i] = byte('0' + rng.IntN(10))
			}
		case 4:
			b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
		default:
			b[i] ^= 0x20 * byte(rng.IntN(2))
		}
	}
	return string(b)
}

// TestDateTimeMatchesPostgres sends every corpus literal to PostgreSQL as
// date, timestamp and timestamptz under several DateStyles and TimeZones,
// and checks that the codecs accept exactly what PostgreSQL accepts, with
// its SQLSTATE when not, its binary value, and its text output.
func TestDateTimeMatchesPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	if pg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	corpus := datetimeCorpus(t)
	// Every DateStyle with a few zones, then zones with odd histories
	// (negative DST, 45-minute offsets, a skipped day, Ramadan DST) under
	// a style that prints abbreviations.
	type setting struct{ style, zone string }
	var settings []setting
	for _, style := range []string{"ISO, MDY", "SQL, DMY", "Postgres, YMD", "German, DMY", "Postgres, MDY", "SQL, MDY"} {
		for _, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"} {
			settings = append(settings, setting{style, zone})
		}
	}
	for _, zone := range []string{"Europe/Dublin", "Pacific/Chatham", "America/St_Johns", "Europe/Moscow", "EST5EDT", "Africa/Casablanca", "Pacific/Apia", "Antarctica/Troll"} {
		settings = append(settings, setting{"Postgres, DMY", zone})
	}
	types := []policy.LogicalType{policy.TypeDate, policy.TypeTimestamp, policy.TypeTimestamptz}

	var problems []string
	checked := 0
	outcomes := map[string]int{} // "ok" or PostgreSQL's SQLSTATE
	for _, set := range settings {
		tc := sessionContext(ctx, t, conn, set.style, set.zone)
		for _, typ := range types {
			for _, in := range corpus {
				checked++
				outcome, p := compareWithPostgres(ctx, conn, typ, in, tc)
				outcomes[outcome]++
				if p != "" {
					problems = append(problems, fmt.Sprintf("[%s | %s] %s %q: %s", set.style, set.zone, typ, in, p))
				}
			}
		}
	}
	t.Logf("%d literals, %d comparisons (outcomes %v), %d mismatches", len(corpus), checked, outcomes, len(problems))
	for i, p := range problems {
		if i == 300 {
			t.Errorf("… and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
}

// sessionContext sets DateStyle and TimeZone on the connection and returns
// the TextContext the proxy would build from what the server reports.
func sessionContext(ctx context.Context, t *testing.T, conn *pgconn.PgConn, style, zone string) *TextContext {
	t.Helper()
	sql := fmt.Sprintf("SET DateStyle = '%s'; SET TimeZone = '%s'", style, zone)
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, order, ok := ParseDateStyle(conn.ParameterStatus("DateStyle"))
	if !ok {
		t.Fatalf("server reports DateStyle %q, which ParseDateStyle does not read", conn.ParameterStatus("DateStyle"))
	}
	loc, err := time.LoadLocation(conn.ParameterStatus("TimeZone"))
	if err != nil {
		t.Fatal(err)
	}
	return &TextContext{Location: loc, DateOrder: order, DateOutput: out}
}

// compareWithPostgres checks one literal; it returns PostgreSQL's outcome
// ("ok" or the SQLSTATE) and what differs, or "".
func compareWithPostgres(ctx context.Context, conn *pgconn.PgConn, typ policy.LogicalType, in string, session *TextContext) (string, string) {
	sql := fmt.Sprintf("SELECT now(), $1::%s, $1::%s::text", typ, typ)
	res := conn.ExecParams(ctx, sql, [][]byte{[]byte(in)}, nil, nil, []int16{1, 1, 0}).Read()
	tc := *session
	codec := CodecFor(typ)
	if res.Err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(res.Err, &pgErr) {
			return "", "query failed: " + res.Err.Error()
		}
		tc.Now = time.Now
		got, err := codec.Canonical(TextFormat, []byte(in), &tc)
		var ve *ValueError
		switch {
		case err == nil:
			return pgErr.Code, fmt.Sprintf("accepted (%x), PostgreSQL refuses: %s %s", got, pgErr.Code, pgErr.Message)
		case !errors.As(err, &ve):
			return pgErr.Code, fmt.Sprintf("error %v is not a *ValueError", err)
		case ve.SQLState() != pgErr.Code:
			return pgErr.Code, fmt.Sprintf("SQLSTATE %s (%v), PostgreSQL %s %s", ve.SQLState(), err, pgErr.Code, pgErr.Message)
		}
		return pgErr.Code, ""
	}
	row := res.Rows[0]
	now := pgEpochTime(int64(binary.BigEndian.Uint64(row[0])))
	tc.Now = func() time.Time { return now }
	got, err := codec.Canonical(TextFormat, []byte(in), &tc)
	if err != nil {
		return "ok", fmt.Sprintf("refused (%v), PostgreSQL gives %s", err, row[2])
	}
	var diffs []string
	if !bytes.Equal(got, row[1]) {
		gotText, _ := codec.AppendText(nil, got, &tc)
		diffs = append(diffs, fmt.Sprintf("value %x (%s), PostgreSQL %x (%s)", got, gotText, row[1], row[2]))
	}
	text, err := codec.AppendText(nil, row[1], &tc)
	if err != nil || string(text) != string(row[2]) {
		diffs = append(diffs, fmt.Sprintf("prints %q (%v), PostgreSQL %q", text, err, row[2]))
	}
	return "ok", strings.Join(diffs, "; ")
}
