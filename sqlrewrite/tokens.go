package sqlrewrite

import (
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// The parse tree gives where a node starts but not where it ends. Edits need
// both, so the end of a constant, a type name or a cast is found with the
// lexer's tokens. Scanning costs about as much as a second parse, so it is
// done once per Analyze and only when an edit needs it.

// span is a byte range of the SQL text.
type span struct{ start, end int }

// tokens returns the SQL's tokens without comments, scanning on first use.
func (a *analyzer) tokens() ([]*pg_query.ScanToken, error) {
	if a.toks != nil || a.scanErr != nil {
		return a.toks, a.scanErr
	}
	if err := a.admit(); err != nil {
		a.scanErr = err
		return nil, err
	}
	res, err := pg_query.Scan(a.sql)
	if err != nil {
		// PostgreSQL's lexer fails on the same text: a syntax error.
		a.scanErr = withParserPosition(syntaxRefusal("syntax error: the statement cannot be tokenized"), err)
		return nil, a.scanErr
	}
	toks := make([]*pg_query.ScanToken, 0, len(res.Tokens))
	for _, t := range res.Tokens {
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			continue
		}
		toks = append(toks, t)
	}
	a.toks = toks
	return toks, nil
}

// tokenAt returns the index of the token starting at byte offset pos.
func (a *analyzer) tokenAt(pos int32) (int, error) {
	toks, err := a.tokens()
	if err != nil {
		return 0, err
	}
	i := sort.Search(len(toks), func(i int) bool { return toks[i].Start >= pos })
	if pos < 0 || i == len(toks) || toks[i].Start != pos {
		return 0, errLocate
	}
	return i, nil
}

// tokenFrom returns the index of the first token starting at or after pos.
func (a *analyzer) tokenFrom(pos int) int {
	if _, err := a.tokens(); err != nil {
		return 0
	}
	i := sort.Search(len(a.toks), func(i int) bool { return int(a.toks[i].Start) >= pos })
	return i
}

var errLocate = refuse("", "statement could not be rewritten safely: a constant could not be located")

func (a *analyzer) tok(i int) *pg_query.ScanToken {
	if i < 0 || i >= len(a.toks) {
		return &pg_query.ScanToken{Start: int32(len(a.sql)), End: int32(len(a.sql)), Token: pg_query.Token_NUL}
	}
	return a.toks[i]
}

func (a *analyzer) tokText(i int) string {
	t := a.tok(i)
	return a.sql[t.Start:t.End]
}

func isWordToken(t *pg_query.ScanToken) bool {
	return t.Token == pg_query.Token_IDENT || t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD
}

// constSpan is the range of the constant token(s) of an A_Const at loc: a
// literal, optionally preceded by signs and parentheses that the parser
// folded into it ("- 5", "-(5)").
func (a *analyzer) constSpan(loc int32) (span, error) {
	if end, ok := quickConstEnd(a.sql, int(loc)); ok {
		return span{int(loc), end}, nil
	}
	i, err := a.tokenAt(loc)
	if err != nil {
		return span{}, err
	}
	open := 0
	for {
		switch a.tok(i).Token {
		case pg_query.Token_ASCII_45, pg_query.Token_ASCII_43: // - +
			i++
			continue
		case pg_query.Token_ASCII_40: // (
			open++
			i++
			continue
		}
		break
	}
	end, next, err := a.literalTokenEnd(i)
	if err != nil {
		return span{}, err
	}
	for ; open > 0; open-- {
		if a.tok(next).Token != pg_query.Token_ASCII_41 {
			return span{}, errLocate
		}
		end = int(a.tok(next).End)
		next++
	}
	return span{int(loc), end}, nil
}

// literalTokenEnd returns where the literal token i ends and the index of
// the token after it.
func (a *analyzer) literalTokenEnd(i int) (int, int, error) {
	t := a.tok(i)
	switch t.Token {
	case pg_query.Token_SCONST, pg_query.Token_ICONST, pg_query.Token_FCONST,
		pg_query.Token_BCONST, pg_query.Token_XCONST,
		pg_query.Token_TRUE_P, pg_query.Token_FALSE_P, pg_query.Token_NULL_P:
		return int(t.End), i + 1, nil
	case pg_query.Token_USCONST:
		return a.unicodeStringEnd(i)
	}
	return 0, 0, errLocate
}

// unicodeStringEnd measures U&'...' [UESCAPE '.'] by hand: the scanner
// reports a wrong end for USCONST tokens.
func (a *analyzer) unicodeStringEnd(i int) (int, int, error) {
	start := int(a.tok(i).Start)
	if !strings.HasPrefix(strings.ToLower(a.sql[start:min(start+3, len(a.sql))]), "u&'") {
		return 0, 0, errLocate
	}
	end := quotedStringEnd(a.sql, start+2)
	if end < 0 {
		return 0, 0, errLocate
	}
	next := a.tokenFrom(end)
	if a.tok(next).Token == pg_query.Token_UESCAPE {
		if a.tok(next+1).Token != pg_query.Token_SCONST {
			return 0, 0, errLocate
		}
		return int(a.tok(next + 1).End), next + 2, nil
	}
	return end, next, nil
}

// quotedStringEnd returns the end of a standard '...' string starting at
// s[i] (quotes doubled, no backslash escapes), following the SQL rule that
// strings separated only by whitespace with a newline are one string.
func quotedStringEnd(s string, i int) int {
	for {
		if i >= len(s) || s[i] != '\'' {
			return -1
		}
		j := i + 1
		for ; j < len(s); j++ {
			if s[j] != '\'' {
				continue
			}
			if j+1 < len(s) && s[j+1] == '\'' {
				j++
				continue
			}
			break
		}
		if j >= len(s) {
			return -1
		}
		end := j + 1
		k, newline := end, false
		for k < len(s) && strings.IndexByte(" \t\n\r\f", s[k]) >= 0 {
			newline = newline || s[k] == '\n' || s[k] == '\r'
			k++
		}
		if !newline || k >= len(s) || s[k] != '\'' {
			return end
		}
		i = k
	}
}

// typeNameEnd returns the end of the type name whose first token starts at
// loc: qualified names, multi-word names (double precision, character
// varying, timestamp with time zone), modifiers and array bounds.
func (a *analyzer) typeNameEnd(loc int32) (int, error) {
	i, err := a.tokenAt(loc)
	if err != nil {
		return 0, err
	}
	if !isWordToken(a.tok(i)) {
		return 0, errLocate
	}
	first := strings.ToLower(a.tokText(i))
	i++
	for a.tok(i).Token == pg_query.Token_ASCII_46 && isWordToken(a.tok(i+1)) {
		i += 2
	}
	i = a.multiWordType(first, i)
	if a.tok(i).Token == pg_query.Token_ASCII_40 {
		if i, err = a.skipBalanced(i); err != nil {
			return 0, err
		}
	}
	if first == "time" || first == "timestamp" {
		w := strings.ToLower(a.tokText(i))
		if (w == "with" || w == "without") && strings.EqualFold(a.tokText(i+1), "time") &&
			strings.EqualFold(a.tokText(i+2), "zone") {
			i += 3
		}
	}
	for {
		switch {
		case a.tok(i).Token == pg_query.Token_ASCII_91:
			if i, err = a.skipBalanced(i); err != nil {
				return 0, err
			}
		case a.tok(i).Token == pg_query.Token_ARRAY:
			i++
			if a.tok(i).Token == pg_query.Token_ASCII_91 {
				if i, err = a.skipBalanced(i); err != nil {
					return 0, err
				}
			}
		default:
			if i == 0 || i > len(a.toks) {
				return 0, errLocate
			}
			return int(a.toks[i-1].End), nil
		}
	}
}

// multiWordType skips the words that continue a multi-word type name.
func (a *analyzer) multiWordType(first string, i int) int {
	word := func(j int) string { return strings.ToLower(a.tokText(j)) }
	switch first {
	case "double":
		if word(i) == "precision" {
			i++
		}
	case "national":
		if w := word(i); w == "character" || w == "char" {
			i++
		}
		if word(i) == "varying" {
			i++
		}
	case "character", "char", "nchar", "bit":
		if word(i) == "varying" {
			i++
		}
	case "interval":
		for {
			switch word(i) {
			case "year", "month", "day", "hour", "minute", "second", "to":
				i++
				continue
			}
			return i
		}
	}
	return i
}

// skipBalanced returns the index after the bracket that closes the one at i.
func (a *analyzer) skipBalanced(i int) (int, error) {
	depth := 0
	for ; i < len(a.toks); i++ {
		switch a.toks[i].Token {
		case pg_query.Token_ASCII_40, pg_query.Token_ASCII_91:
			depth++
		case pg_query.Token_ASCII_41, pg_query.Token_ASCII_93:
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, errLocate
}

// wrapParens widens inner to the parentheses written around it when the
// tokens between inner.end and limit are only closing parentheses.
func (a *analyzer) wrapParens(inner span, limit int) (span, error) {
	j := a.tokenFrom(inner.end)
	closing := 0
	for ; j < len(a.toks) && int(a.toks[j].Start) < limit; j++ {
		if a.toks[j].Token != pg_query.Token_ASCII_41 {
			return span{}, errLocate
		}
		closing++
	}
	if closing == 0 {
		return inner, nil
	}
	s := a.tokenFrom(inner.start) - closing
	if s < 0 {
		return span{}, errLocate
	}
	for k := s; k < s+closing; k++ {
		if a.toks[k].Token != pg_query.Token_ASCII_40 {
			return span{}, errLocate
		}
	}
	return span{int(a.toks[s].Start), int(a.toks[j-1].End)}, nil
}

// relationNameEnd returns the end of the (qualified) relation name whose
// first token starts at loc, and with alias also past "AS alias".
func (a *analyzer) relationNameEnd(loc int32, alias bool) (int, error) {
	i, err := a.tokenAt(loc)
	if err != nil {
		return 0, err
	}
	if !isWordToken(a.tok(i)) {
		return 0, errLocate
	}
	for a.tok(i+1).Token == pg_query.Token_ASCII_46 && isWordToken(a.tok(i+2)) {
		i += 2
	}
	if alias && a.tok(i+1).Token == pg_query.Token_AS && isWordToken(a.tok(i+2)) {
		i += 2
	}
	return int(a.tok(i).End), nil
}

// quickConstEnd measures the two most common constants without the lexer:
// a plain '...' string and a decimal number. Anything else, or anything
// that might continue (a string followed by another string, a number
// followed by more of a token), is left to the lexer.
func quickConstEnd(s string, i int) (int, bool) {
	if i < 0 || i >= len(s) {
		return 0, false
	}
	c := s[i]
	switch {
	case c == '\'':
		j := i + 1
		for {
			k := strings.IndexByte(s[j:], '\'')
			if k < 0 {
				return 0, false
			}
			j += k
			if j+1 < len(s) && s[j+1] == '\'' {
				j += 2
				continue
			}
			break
		}
		end := j + 1
		if mayContinueString(s, end) {
			return 0, false
		}
		return end, true
	case c >= '0' && c <= '9':
		j := skipDigits(s, i)
		if j < len(s) && s[j] == '.' {
			j = skipDigits(s, j+1)
		}
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if k >= len(s) || s[k] < '0' || s[k] > '9' {
				return 0, false
			}
			j = skipDigits(s, k)
		}
		if j < len(s) && (isIdentChar(s[j]) || s[j] == '.') {
			return 0, false
		}
		return j, true
	}
	return 0, false
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// mayContinueString reports whether another string (or a comment, which
// may separate continued strings) follows after whitespace.
func mayContinueString(s string, i int) bool {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i+1 < len(s) && (s[i:i+2] == "--" || s[i:i+2] == "/*") {
		return true
	}
	return i < len(s) && s[i] == '\''
}
