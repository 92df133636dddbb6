package sqlrewrite

import "strings"

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers, so
// a long word may still name a relation by its first 63 bytes.
const maxIdentLen = 63

// mentionedEncrypted returns the first word of s that may name a relation
// with encrypted columns. It is deliberately cruder than the lexer: it looks
// at every run of identifier characters anywhere, including inside strings
// and comments, folded to lower case and as written, and at the content of
// every double-quoted span. Seeing too much only costs the slow path; seeing
// too little would skip the analysis, so it never tries to be clever.
func mentionedEncrypted(s string, cat Catalog) (string, bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			// Every quote may open an identifier (or sit in a string
			// literal): each is tried, and the words inside are checked
			// too as the scan goes on.
			if name := quotedNameAt(s, i); name != "" && cat.EncryptedName(name) {
				return name, true
			}
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			if name, ok := wordNamesEncrypted(s[i:j], cat); ok {
				return name, true
			}
			i = j
		default:
			i++
		}
	}
	return "", false
}

// quotedNameAt returns the name a quoted identifier opening at s[i] would
// have, as far as it can equal a relation name: PostgreSQL truncates names
// to 63 bytes, so the scan stops there, which keeps trying every quote
// linear.
func quotedNameAt(s string, i int) string {
	var b []byte
	for j := i + 1; j < len(s); j++ {
		if s[j] == '"' {
			if j+1 >= len(s) || s[j+1] != '"' {
				break
			}
			j++
		}
		b = append(b, s[j])
		if len(b) > maxIdentLen {
			return truncateIdent(string(b))
		}
	}
	return string(b)
}

// wordNamesEncrypted checks a word as PostgreSQL would fold it and as
// written (it may be the inside of a quoted identifier).
func wordNamesEncrypted(w string, cat Catalog) (string, bool) {
	for _, cand := range [...]string{lowerASCII(w), w} {
		if cat.EncryptedName(cand) {
			return cand, true
		}
		if len(cand) > maxIdentLen {
			if t := truncateIdent(cand); cat.EncryptedName(t) {
				return t, true
			}
		}
	}
	return "", false
}

// quotedEnd returns the index just past the double-quoted span starting at
// s[i] (or len(s) when it is not closed).
func quotedEnd(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		if s[j] != '"' {
			continue
		}
		if j+1 < len(s) && s[j+1] == '"' {
			j++
			continue
		}
		return j + 1
	}
	return len(s)
}

// unquoteIdent turns "a""b" into a"b.
func unquoteIdent(q string) string {
	q = strings.TrimPrefix(q, `"`)
	q = strings.TrimSuffix(q, `"`)
	return strings.ReplaceAll(q, `""`, `"`)
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 0x80 || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func isIdentChar(c byte) bool {
	return isIdentStart(c) || c == '$' || c >= '0' && c <= '9'
}

// lowerASCII folds like PostgreSQL's downcase_identifier for UTF-8: ASCII
// letters only. It does not allocate when there is nothing to fold.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// truncateIdent cuts an identifier to 63 bytes without splitting a UTF-8
// sequence, as PostgreSQL's truncate_identifier does.
func truncateIdent(s string) string {
	n := maxIdentLen
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// containsFold reports whether s contains the lower-case ASCII word w in any
// case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if (s[i] | 0x20) != w[0] {
			continue
		}
		if strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// hasUnicodeIdent reports whether s may contain a U&"..." identifier, whose
// escapes the word scan cannot see through.
func hasUnicodeIdent(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if (s[i]|0x20) == 'u' && s[i+1] == '&' && s[i+2] == '"' {
			return true
		}
	}
	return false
}

// quoteIdent always quotes: it is only used for column lists the proxy
// inserts, where a stray keyword must not change the statement.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
