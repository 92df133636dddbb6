package sqlrewrite

import (
	"errors"
	"testing"
)

// Statements on encrypted data whose literals could end elsewhere for
// PostgreSQL than for the analysis are refused under the lexing risks that
// could make them; everything else is analysed as usual.
func TestLexRiskRefusesAmbiguousLiterals(t *testing.T) {
	both := RiskBackslashEscapes | RiskSplitBackslash
	cases := []struct {
		name    string
		sql     string
		risk    LexRisk
		refused bool
	}{
		{"no risk, backslash in a literal", `SELECT ssn FROM patients WHERE name = 'a\'`, 0, false},
		{"scs may be off, backslash in a literal", `SELECT ssn FROM patients WHERE name = 'a\'`, RiskBackslashEscapes, true},
		{"scs may be off, hidden insert", "SELECT 'x\\''; INSERT INTO patients (name, ssn) VALUES ($$a$$, $$b$$) --'", RiskBackslashEscapes, true},
		{"scs may be off, E literal", `SELECT ssn FROM patients WHERE name = E'a\\b'`, RiskBackslashEscapes, false},
		{"scs may be off, dollar quoted backslash", `SELECT ssn FROM patients WHERE name = $$a\$$`, RiskBackslashEscapes, false},
		{"scs may be off, backslash in a comment", "SELECT ssn FROM patients -- a\\'\n", RiskBackslashEscapes, false},
		{"scs may be off, backslash in an identifier", `SELECT "a\" FROM patients`, RiskBackslashEscapes, false},
		{"scs may be off, typed literal", `SELECT ssn FROM patients WHERE dob = date '2000\01-01'`, RiskBackslashEscapes, true},
		{"scs may be off, no backslash", `SELECT ssn FROM patients WHERE name = 'it''s'`, both, false},
		{"split encoding, backslash after high byte", "SELECT E'\x83\\'; INSERT INTO patients (name) VALUES ('x'); --'", RiskSplitBackslash, true},
		{"split encoding, in a plain literal", "SELECT ssn FROM patients WHERE name = '\x83\\'", RiskSplitBackslash, true},
		{"split encoding, UTF-8 text without backslash", "SELECT ssn FROM patients WHERE name = 'café'", RiskSplitBackslash, false},
		{"split encoding, backslash after ASCII", `SELECT ssn FROM patients WHERE name = E'a\\'`, RiskSplitBackslash, false},
		{"unicode identifier spelling a table", `SELECT 'a\' FROM U&"p\0061tients"`, RiskBackslashEscapes, true},
		{"not about encrypted data, no risk", `SELECT 'a\' FROM accounts; SELECT 1`, 0, false},
		{"hidden EXECUTE of a statement prepared earlier", "SELECT 'x\\''; EXECUTE p($$secret$$); --'", RiskBackslashEscapes, true},
		{"hidden EXECUTE in text that does not parse for the analysis", "SELECT 'x\\''; EXECUTE fzp ('FZ-1') --'", RiskBackslashEscapes, true},
		{"hidden EXECUTE, split encoding", "SELECT E'ゃ\\'; EXECUTE p($$secret$$); --'", RiskSplitBackslash, true},
		{"SHIFT_JIS_2004 character read as a backslash", "SELECT E'め_\\'; INSERT INTO patients (name) VALUES ($$x$$); --'", RiskSplitBackslash, true},
		{"client-only encoding known, non-ASCII", "SELECT 'café'; SELECT 1", RiskSplitBackslash | RiskClientOnlyEncoding, true},
		{"client-only encoding known, ASCII", "SELECT 'cafe'; SELECT 1", RiskSplitBackslash | RiskClientOnlyEncoding, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnv()
			env.LexRisk = c.risk
			_, err := Analyze(c.sql, env)
			var refusal *Error
			isRefusal := errors.As(err, &refusal) && refusal.Code == CodeFeatureNotSupported
			if c.refused && !isRefusal {
				t.Fatalf("want a 0A000 refusal, got %v", err)
			}
			if !c.refused && err != nil {
				t.Fatalf("want it analysed, got %v", err)
			}
		})
	}
}

func TestHasSplittableBackslash(t *testing.T) {
	for sql, want := range map[string]bool{
		`a\b`:        false,
		"\x83\\":     true,
		"é\\":        true, // 0xA9 then backslash
		"\\\x83":     false,
		"":           false,
		"\x83 \\":    false,
		"x\xff\\\\y": true,
		"\x81_":      true, // SHIFT_JIS_2004 reads it as a backslash
		"a_":         false,
	} {
		if got := hasSplittableBackslash(sql); got != want {
			t.Errorf("hasSplittableBackslash(%q) = %v, want %v", sql, got, want)
		}
	}
}

// Before PostgreSQL 16 the server lexes 1_000 and 0x1F as a number and a
// name; the analysis, on PostgreSQL 16's grammar, as one number. Such
// literals are a syntax error there, as PostgreSQL 15 would mostly say.
func TestPre16NumericLiteralsAreSyntaxErrors(t *testing.T) {
	cases := []struct {
		name, sql string
		risk      LexRisk
		refused   bool
	}{
		{"underscore", `INSERT INTO staff(badge) VALUES (1_000)`, RiskPre16Numbers, true},
		{"hex", `SELECT 0x1F FROM patients WHERE ssn = 'a'`, RiskPre16Numbers, true},
		{"octal", `SELECT 0o17 FROM patients`, RiskPre16Numbers, true},
		{"decimal with underscore", `INSERT INTO staff(badge) VALUES (1_000.5)`, RiskPre16Numbers, true},
		{"from 16 on", `INSERT INTO staff(badge) VALUES (1_000)`, 0, false},
		{"plain numbers", `INSERT INTO staff(badge) VALUES (1000), (0), (0.5), (1e3)`, RiskPre16Numbers, false},
		{"names and strings", `SELECT 'x_1', o_b FROM patients WHERE ssn = '0x1F'`, RiskPre16Numbers, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnv()
			env.LexRisk = c.risk
			_, err := Analyze(c.sql, env)
			var refusal *Error
			isSyntax := errors.As(err, &refusal) && refusal.Code == CodeSyntaxError
			if c.refused != isSyntax {
				t.Fatalf("refused = %v, want %v (err %v)", isSyntax, c.refused, err)
			}
		})
	}
}
