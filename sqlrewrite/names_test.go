package sqlrewrite

import (
	"fmt"
	"strings"
	"testing"
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

// BenchmarkMentionedEncryptedPathological measures the word scan on
// inputs that would make a naive scan quadratic (every quote opening an
// identifier); compare ns/op across sizes to see it stay linear.
func BenchmarkMentionedEncryptedPathological(b *testing.B) {
	cat := nameSet{"patients": true}
	for _, size := range []int{1 << 16, 1 << 20} {
		for name, s := range map[string]string{
			"quotes":  strings.Repeat(`"`, size),
			"escaped": strings.Repeat(`""x`, size/3),
			"word":    strings.Repeat("a", size),
		} {
			b.Run(fmt.Sprintf("%s/%d", name, size), func(b *testing.B) {
				for b.Loop() {
					mentionedEncrypted(s, cat)
				}
			})
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
