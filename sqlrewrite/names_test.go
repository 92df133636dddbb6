package sqlrewrite

import (
	"strings"
	"testing"
	"time"
)

type nameSet map[string]bool

func (n nameSet) SchemasWith(string) []string       { return nil }
func (n nameSet) Relation(string, string) *Relation { return nil }
func (n nameSet) EncryptedName(s string) bool       { return n[s] }

func TestMentionedEncrypted(t *testing.T) {
	long := strings.Repeat("x", 63)
	cat := nameSet{"patients": true, "my table": true, "Mixed": true, long: true}
	for sql, want := range map[string]string{
		`SELECT 1`:                                "",
		`select * from PATIENTS`:                  "patients",
		`SELECT 'a"b', * FROM "my table"`:         "my table",
		`SELECT "my table".x FROM t`:              "my table",
		`SELECT * FROM "Mixed"`:                   "Mixed",
		`SELECT * FROM Mixed`:                     "Mixed", // as written: only costs the slow path
		`SELECT $$ patients $$`:                   "patients",
		`SELECT 1 -- patients`:                    "patients",
		`SELECT * FROM xpatients`:                 "",
		`SELECT * FROM "my  table"`:               "",
		`SELECT * FROM ` + long + `yyy`:           long,
		`SELECT * FROM "` + long + `zzz"`:         long,
		`SELECT * FROM "pat""ients"`:              "",
		`SELECT 'x' FROM "a""b", "patients"`:      "patients",
		"SELECT * FROM patients\x00":              "patients",
		`SELECT * FROM "patients`:                 "patients",
		`SELECT * FROM U&"p\0061tients"`:          "",
		`SELECT * FROM réservé, patients_archive`: "",
	} {
		got, ok := mentionedEncrypted(sql, cat)
		if got != want || ok != (want != "") {
			t.Errorf("mentionedEncrypted(%q) = %q %v, want %q", sql, got, ok, want)
		}
	}
}

func TestMentionedEncryptedIsLinear(t *testing.T) {
	cat := nameSet{"patients": true}
	for _, s := range []string{strings.Repeat(`"`, 1<<20), strings.Repeat(`""x`, 1<<18), strings.Repeat("a", 1<<20)} {
		start := time.Now()
		mentionedEncrypted(s, cat)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%d bytes took %v", len(s), d)
		}
	}
}

func TestUnicodeIdentifierForcesAnalysis(t *testing.T) {
	_, err := Analyze(`SELECT * FROM U&"p\0061tients" WHERE ssn LIKE 'x'`, testEnv())
	if err == nil {
		t.Fatal("U& identifier naming an encrypted relation was not analyzed")
	}
	_, err = Analyze(`SELECT * FROM U&"p\0061tients" WHERE ssn LIKE`, testEnv())
	if e, ok := err.(*Error); !ok || e.Code != CodeSyntaxError {
		t.Fatalf("unparsable U& statement: %v", err)
	}
}
