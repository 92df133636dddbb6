package proxy_test

import "testing"

const dateStylePolicy = `
policy:
  keys:
    - {name: k, kind: deterministic}
  columns:
    - {table: public.ds_t, column: d, key: k, type: date}
    - {table: public.ds_t, column: ts, key: k, type: timestamptz}
  roles:
    - {role: doctor, read: [k], write: [k]}
`

// TestDateStyleReadsAndPrints: encrypted dates are read in the session's
// DateStyle field order and printed in its format, as PostgreSQL would; a
// DateStyle change in the same query string as such a value is refused,
// as a TimeZone change is (checkZoneOrder).
func TestDateStyleReadsAndPrints(t *testing.T) {
	h := newHarness(t, dateStylePolicy, "CREATE TABLE public.ds_t (id serial, d bytea, ts bytea); GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;")
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "dmy", c.query("SET DateStyle = 'SQL, DMY'"), "C:SET", "Z:I")
	wantTokens(t, "insert", c.query("INSERT INTO ds_t (d, ts) VALUES ('01/02/2024', '01/02/2024 10:00+00')"), "C:INSERT 0 1", "Z:I")
	wantTokens(t, "sql dmy", c.query("SELECT d, ts FROM ds_t"), "Row:d/1082,ts/1184", "D:01/02/2024,01/02/2024 10:00:00 UTC", "C:SELECT 1", "Z:I")
	wantTokens(t, "search", c.query("SELECT count(*) FROM ds_t WHERE d = '1.2.2024'"), "Row:count/20", "D:1", "C:SELECT 1", "Z:I")
	wantTokens(t, "iso", c.query("SET DateStyle = ISO"), "C:SET", "Z:I")
	wantTokens(t, "iso dmy", c.query("SELECT d FROM ds_t"), "Row:d/1082", "D:2024-02-01", "C:SELECT 1", "Z:I")
	wantTokens(t, "german", c.query("SET DateStyle = German"), "C:SET", "Z:I")
	wantTokens(t, "german", c.query("SELECT d, ts FROM ds_t"), "Row:d/1082,ts/1184", "D:01.02.2024,01.02.2024 10:00:00 UTC", "C:SELECT 1", "Z:I")
	wantTokens(t, "postgres mdy", c.query("SET DateStyle = 'Postgres, MDY'"), "C:SET", "Z:I")
	wantTokens(t, "postgres mdy", c.query("SELECT d, ts FROM ds_t"), "Row:d/1082,ts/1184", "D:02-01-2024,Thu Feb 01 10:00:00 2024 UTC", "C:SELECT 1", "Z:I")

	for _, sql := range []string{
		"SET DateStyle = 'SQL, DMY'; INSERT INTO ds_t (d) VALUES ('01/02/2024')",
		"SET datestyle TO german; SELECT d FROM ds_t",
		"RESET DateStyle; SELECT count(*) FROM ds_t WHERE d = '01/02/2024'",
		"SELECT set_config('DateStyle', 'ISO, YMD', false); INSERT INTO ds_t (d) VALUES ('01/02/03')",
		"RESET ALL; SELECT d FROM ds_t",
		"SET DATESTYLE = 'SQL'; COPY ds_t (d) FROM STDIN",
		"SET TIME ZONE 'Asia/Tokyo'; INSERT INTO ds_t (d) VALUES ('today')",
		"SET TIME ZONE 'Asia/Tokyo'; SELECT ts FROM ds_t",
	} {
		wantTokens(t, sql, c.query(sql), "E:0A000", "Z:I")
	}
	// Values that do not depend on the changed setting still go through.
	wantTokens(t, "zone then date", c.query("SET TIME ZONE 'Asia/Tokyo'; SELECT d FROM ds_t"),
		"C:SET", "Row:d/1082", "D:02-01-2024", "C:SELECT 1", "Z:I")
	wantTokens(t, "style then plain", c.query("SET DateStyle = ISO; SELECT count(*) FROM ds_t"),
		"C:SET", "Row:count/20", "D:1", "C:SELECT 1", "Z:I")
	wantTokens(t, "show then date", c.query("SHOW DateStyle; SELECT d FROM ds_t"),
		"Row:DateStyle/25", "D:ISO, MDY", "C:SHOW", "Row:d/1082", "D:2024-02-01", "C:SELECT 1", "Z:I")
}
