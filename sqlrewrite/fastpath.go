package sqlrewrite

import "strings"

// plainKinds are the leading keywords of single statements that, when the
// text names no encrypted relation (the caller checked), need nothing from
// the proxy: no edits, no grants, no session effects.
var plainKinds = map[string]Kind{
	"select": KindSelect,
	"values": KindSelect,
	"table":  KindSelect,
	"with":   KindSelect,
	"insert": KindInsert,
	"update": KindUpdate,
	"delete": KindDelete,
}

// plainDML plans, without parsing, a single DML statement whose text names
// no encrypted relation. Parsing costs more than everything else the proxy
// does for such a statement, and most traffic is like it. Anything less
// certain (a leading comment, a second statement, another keyword) takes
// the full path.
func plainDML(sql string) (*Plan, bool) {
	start := 0
	for start < len(sql) && isSpace(sql[start]) {
		start++
	}
	end := len(sql)
	for end > start && (isSpace(sql[end-1]) || sql[end-1] == ';') {
		end--
	}
	body := sql[start:end]
	if body == "" || strings.IndexByte(body, ';') >= 0 {
		return nil, false
	}
	w := 0
	for w < len(body) && isIdentChar(body[w]) {
		w++
	}
	if w == len(body) || !(isSpace(body[w]) || body[w] == '(' || body[w] == '*') {
		return nil, false
	}
	kind, ok := plainKinds[lowerASCII(body[:w])]
	if !ok {
		return nil, false
	}
	return &Plan{SQL: sql, Statements: []*Statement{{Kind: kind, Start: start, End: end}}}, true
}
