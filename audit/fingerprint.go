package audit

import (
	"fmt"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// Fingerprint returns sql with every constant replaced by a $N parameter
// and every comment removed, its whitespace collapsed to single spaces:
// what the statement did, never a value it carried. Constants are numbered
// after the highest $n parameter already in the text, as pg_stat_statements
// numbers them. When the lexer cannot read sql, the fingerprint is a
// placeholder that gives only its length.
//
// The text is rebuilt from the lexer's tokens alone, so nothing between
// tokens (where a mislocated token's text would be) is ever copied.
func Fingerprint(sql string) string { return rebuild(sql, false) }

// Shape is Fingerprint with every identifier replaced by ? too: for a
// statement that failed or was refused, whose identifiers may be values a
// client wrote in the wrong quotes (WHERE ssn = "123-45-6789") rather than
// names PostgreSQL knows. Keywords stay.
func Shape(sql string) string { return rebuild(sql, true) }

// rebuild is Fingerprint, or Shape when names are replaced.
func rebuild(sql string, names bool) string {
	res, err := pg_query.Scan(sql)
	if err != nil || !inBounds(res.Tokens, len(sql)) {
		return unparsable(sql)
	}
	toks := res.Tokens
	next := highestParam(sql, toks) + 1
	var b strings.Builder
	b.Grow(len(sql))
	var prevEnd int32
	comment := false // a comment was dropped since the last token written
	for i, t := range toks {
		if isComment(t) {
			comment = true
			continue
		}
		var text string
		switch {
		case isConstant(t):
			text = "$" + strconv.Itoa(next)
			next++
		case names && (t.Token == pg_query.Token_IDENT || t.Token == pg_query.Token_UIDENT):
			text = "?"
		case t.Token == pg_query.Token_UIDENT:
			text = uident(sql, toks, i)
		default:
			text = sql[t.Start:t.End]
		}
		if spaced(&b, text, comment || (t.Start > prevEnd && isSpace(sql[t.Start-1]))) {
			b.WriteByte(' ')
		}
		b.WriteString(text)
		prevEnd, comment = t.End, false
	}
	return b.String()
}

// unparsable stands in for a statement the lexer rejects: its text may be
// anything, a value included, so only its length is told.
func unparsable(sql string) string {
	return fmt.Sprintf("<unparsable statement, %d bytes>", len(sql))
}

// inBounds guards the slicing below against a lexer that misreports a
// token's range: the audit trail must not bring the proxy down.
func inBounds(toks []*pg_query.ScanToken, n int) bool {
	for _, t := range toks {
		if t.Start < 0 || t.End < t.Start || int(t.End) > n {
			return false
		}
	}
	return true
}

// isConstant reports whether t is a literal value. TRUE and FALSE count:
// an encrypted bool column's searched value is one of them. NULL does not:
// it is the absence of a value, and mostly syntax (IS NULL).
func isConstant(t *pg_query.ScanToken) bool {
	switch t.Token {
	case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_ICONST,
		pg_query.Token_FCONST, pg_query.Token_BCONST, pg_query.Token_XCONST,
		pg_query.Token_TRUE_P, pg_query.Token_FALSE_P:
		return true
	}
	return false
}

func isComment(t *pg_query.ScanToken) bool {
	return t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT
}

// spaced reports whether text needs a space before it: where the SQL had
// whitespace or a comment, and where $N would otherwise run into its
// neighbour and read as another token (a "$" and an empty string would
// make "$$1", an empty string and a 2 would make "$12").
func spaced(b *strings.Builder, text string, sqlHadOne bool) bool {
	if b.Len() == 0 || text == "" {
		return false
	}
	out := b.String()
	return sqlHadOne || (isWordByte(out[len(out)-1]) && isWordByte(text[0]))
}

// isWordByte is a byte that can continue an identifier, a number or a
// parameter.
func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 ||
		('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isSpace is the lexer's whitespace (scan.l's "space").
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

// highestParam is the largest n of the $n parameters in toks, 0 if none.
func highestParam(sql string, toks []*pg_query.ScanToken) int {
	high := 0
	for _, t := range toks {
		if t.Token != pg_query.Token_PARAM {
			continue
		}
		if n, err := strconv.Atoi(sql[t.Start+1 : t.End]); err == nil && n > high {
			high = n
		}
	}
	return high
}

// uident is the text of the U&"…" identifier toks[i]. The lexer reports
// only its "U", so it runs to the next token, less trailing whitespace;
// what lies there is the identifier, which is a name, not a value.
func uident(sql string, toks []*pg_query.ScanToken, i int) string {
	end := len(sql)
	if i+1 < len(toks) {
		end = int(toks[i+1].Start)
	}
	if start := int(toks[i].Start); end < start {
		return sql[start:toks[i].End]
	}
	return strings.TrimRight(sql[toks[i].Start:end], " \t\n\r\f\v")
}
