package sqlrewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// PostgreSQL lexes a statement after converting it from the session's
// client_encoding, and reads backslashes in '…' literals by
// standard_conforming_strings. The analysis lexes the raw bytes as UTF-8
// with standard_conforming_strings on. Where the two could disagree about
// where a literal ends, text the analysis took for the inside of a string
// could run as SQL: such statements are refused.
//
// Only a backslash can move a literal's end. Quotes, dollar signs and the
// characters that open or close comments are all below 0x30, and no byte
// after the first of a multibyte character is, in any encoding PostgreSQL
// supports. A backslash (0x5C) can be such a byte in the client-only
// encodings (SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030, JOHAB), where
// it then escapes nothing; SHIFT_JIS_2004 converts the character 0x81 0x5F
// to a backslash; and with standard_conforming_strings off a backslash
// escapes the next character of a '…' literal. Other bytes an encoding may
// join to a character only change the name of an identifier that already
// holds a non-ASCII byte, which no policy check relies on. (A probe of
// every two-byte sequence of the client-only encodings found no other that
// converts to an ASCII quote, dollar sign or backslash.)
//
// The checks apply to every statement that is analysed, not only to those
// naming encrypted data: a literal ending elsewhere could hide an EXECUTE
// of a statement prepared earlier. Single plain DML statements, which the
// proxy does not parse, cannot hide a second statement (a ';' is below
// 0x30 too).

// LexRisk says which of the session's lexing settings the proxy cannot be
// sure of for a statement: unknown, changing while the statement is in
// flight, or known to differ from the analysis's.
type LexRisk uint8

const (
	// RiskBackslashEscapes: standard_conforming_strings may be off, so a
	// backslash in a '…' literal may escape the character after it.
	RiskBackslashEscapes LexRisk = 1 << iota
	// RiskSplitBackslash: client_encoding may be one whose multibyte
	// characters can end in the byte of a backslash.
	RiskSplitBackslash
	// RiskClientOnlyEncoding: client_encoding is known to be a
	// client-only encoding: every non-ASCII byte is a risk then.
	RiskClientOnlyEncoding
	// RiskPre16Numbers: the server is older than PostgreSQL 16, whose
	// grammar the analysis uses: it lexes 1_000 and 0x1F as a number
	// followed by a name, where the analysis sees one number.
	RiskPre16Numbers
)

// checkModernNumbers refuses numeric literals with underscores or a
// 0x/0o/0b prefix when the server predates them: PostgreSQL 15 reads
// SELECT 0x1F as 0 AS x1F.
func (a *analyzer) checkModernNumbers() error {
	if a.env.LexRisk&RiskPre16Numbers == 0 || !strings.ContainsAny(a.sql, "_xXoObB") {
		return nil
	}
	toks, err := a.tokens()
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Token != pg_query.Token_ICONST && t.Token != pg_query.Token_FCONST {
			continue
		}
		if t.Start < 0 || int(t.End) > len(a.sql) || t.Start >= t.End {
			continue
		}
		if text := a.sql[t.Start:t.End]; strings.IndexByte(text, '_') >= 0 || len(text) > 1 && text[0] == '0' && strings.ContainsAny(text[1:2], "xXoObB") {
			return syntaxRefusal("syntax error: the numeric literal %s needs PostgreSQL 16 or later (trailing junk after numeric literal)", text).at(a.sql, int(t.Start))
		}
	}
	return nil
}

// checkSplitBackslash refuses, before parsing, a statement whose literals
// a client-only encoding could end elsewhere.
func (a *analyzer) checkSplitBackslash() error {
	if a.env.LexRisk&RiskClientOnlyEncoding != 0 && !isASCII(a.sql) {
		return refuse("", "statements with non-ASCII text are refused while client_encoding is a client-only encoding, which PostgreSQL may read differently from pgcloak; use client_encoding UTF8")
	}
	if a.env.LexRisk&RiskSplitBackslash == 0 || !hasSplittableBackslash(a.sql) {
		return nil
	}
	return refuse("", "a backslash follows a non-ASCII byte in a statement on encrypted data, which PostgreSQL may read differently under the session's client_encoding; use client_encoding UTF8 and send the statement on its own (after Sync)")
}

// checkBackslashLiterals refuses a statement with a backslash in a '…'
// literal while standard_conforming_strings may be off.
func (a *analyzer) checkBackslashLiterals() error {
	if a.env.LexRisk&RiskBackslashEscapes == 0 || strings.IndexByte(a.sql, '\\') < 0 {
		// (No backslash, nothing to scan for: with requests in flight
		// this is every statement's case but a few.)
		return nil
	}
	toks, err := a.tokens()
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Token != pg_query.Token_SCONST || t.Start < 0 || int(t.End) > len(a.sql) || t.Start >= t.End {
			continue
		}
		text := a.sql[t.Start:t.End]
		if text[0] != '\'' {
			// E'…' (always escapes), U&'…' (refused by PostgreSQL when
			// standard_conforming_strings is off), b'…', x'…'.
			continue
		}
		if strings.IndexByte(text, '\\') >= 0 {
			return refuse("", "a backslash in a '…' literal of a statement on encrypted data, while standard_conforming_strings is off or may change before the statement runs; set it on, use E'…' literals, or send the statement on its own (after Sync)")
		}
	}
	return nil
}

// hasSplittableBackslash reports a backslash right after a non-ASCII byte:
// the one place where a client-only encoding can make PostgreSQL's lexer
// and the analysis disagree (see above).
func hasSplittableBackslash(sql string) bool {
	for i := 1; i < len(sql); i++ {
		switch {
		case sql[i] == '\\' && sql[i-1] >= 0x80:
			return true
		case sql[i] == sjis2004Backslash[1] && sql[i-1] == sjis2004Backslash[0]:
			return true
		}
	}
	return false
}

// sjis2004Backslash is the SHIFT_JIS_2004 character PostgreSQL converts to
// a backslash.
var sjis2004Backslash = [2]byte{0x81, 0x5F}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
