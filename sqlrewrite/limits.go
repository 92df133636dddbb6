package sqlrewrite

import (
	"fmt"
	"strings"

	"github.com/pgcloak/pgcloak/policy"
)

// One client must neither crash nor exhaust the shared process (DESIGN.md,
// security rule 8). pg_query's C parser builds the whole parse tree and
// then serialises it by recursion, with no stack check, on the calling
// thread's C stack; and the Go tree, the scanner's tokens and the analysis
// grow with the number of tokens. So before any text reaches pg_query's C
// code, a linear scan of its bytes bounds three things:
//
//   - its length (Limits.MaxStatementBytes, server.max_statement_bytes);
//   - its tokens: at most one per bytesPerToken bytes of that limit;
//   - an estimate of its parse tree's depth: at most maxTreeDepth.
//
// What breaks, measured with pg_query_go v5.1.0 (libpg_query 16) on
// linux/amd64, parsing in a child process:
//
//   - The serialisation recurses once per protobuf message on the tree's
//     deepest path, about 178 bytes of C stack each. With the usual 8 MiB
//     thread stack (ulimit -s 8192), SELECT 1+1+…+1 crashes the process
//     (SIGSEGV) from 23,700 terms on; a||b||…, x::int::int…, x IS NULL
//     IS NULL…, COLLATE, AT TIME ZONE and JOIN chains at the same length;
//     a UNION ALL chain at twice it. glibc gives threads 2 MiB when the
//     stack limit is unlimited: there the chains crash from 5,900 terms;
//     with 1 MiB from 2,950. Left-deep chains like these are the danger:
//     the grammar reduces them as it reads, so nothing but the stack
//     bounds their depth.
//   - Right-nested forms (parentheses, f(f(…)), NOT NOT …, - - …,
//     ARRAY[[…]], CASE in CASE, subqueries) fill bison's parser stack
//     first: pg_query refuses them ("memory exhausted") beyond 10,000
//     parser states, 1,665 nested subqueries or 1,999 nested CASEs, which
//     fits in 8 MiB but not in 1 MiB (subqueries crash from 982 levels,
//     CASE from 1,475, f(f(…)) from 2,950).
//   - pg_query_go's protobuf decoding refuses trees more than 10,000
//     messages deep with an error (after the C side survived).
//
// The depth estimate counts in depthUnits: one unit is one expression
// node on the deepest path, a pg_query Node and its payload, two messages.
// The estimate is meant to be at least the tree's real depth for every
// construct (TestLimitDepthEstimateBoundsTree checks it against parsed
// trees), so that maxTreeDepth, 1,000 units, is 23 times below the crash
// with an 8 MiB stack, 5.9 times with 2 MiB and still 2.9 times with 1 MiB
// (TestLimitDeepestAcceptedDoesNotCrash parses the deepest accepted form
// of each construct in a child process with 1 MiB). PostgreSQL itself
// stops SELECT 1+1+…+1 with "stack depth limit exceeded" (54001) too.
//
// Memory, measured with BenchmarkLimitAnalysisCost as the Go allocations
// of Analyze and Rewrite (the process's peak RSS grows by 70 to 90% of
// them): pg_query.Parse and pg_query.Scan cost about 135 bytes a token
// each; the whole analysis 150 bytes per input byte for a plain
// id IN (1,1,…), which is how the report's 8 MB statement took 1.3 GB;
// 395 for an IN list on an encrypted column (1.6 KB an item, its
// candidate array), 460 for SELECT 1,1,…, 95 for a multi-row INSERT.
// Bounding bytes alone would leave 500 MB for 1 MiB of SELECT 1,1,…; the
// token budget bounds that. The default, 1 MiB and so 262,144 tokens,
// keeps the 20,000-row, 4-column INSERT bulk loaders send (200,000
// tokens, 860 KB: 80 MB); at the budget the shapes above cost 39 MB (plain
// IN list), 99 MB (INSERT), 120 MB (SELECT list) and at most 207 MB
// (131,000 encrypted IN items, 0.5 s); a 10,000-row INSERT or IN list
// costs 15 to 40 MB. With less memory to spare, lower
// server.max_statement_bytes: it lowers both bounds.

// Limits bounds what analysing one SQL string may cost. The zero value
// means the defaults.
type Limits struct {
	// MaxStatementBytes bounds the text of a string that needs parsing
	// and, at one token per bytesPerToken bytes, its tokens; 0 means
	// policy.DefaultMaxStatementBytes.
	MaxStatementBytes int
}

// depthUnits measures parse-tree depth: one unit is one expression node
// (a pg_query Node and its payload) on the path from the root.
type depthUnits int

// maxTreeDepth bounds the estimated depth of the parse tree; see above
// for the measurements it is chosen from.
const maxTreeDepth depthUnits = 1000

// bytesPerToken is how many bytes of MaxStatementBytes buy one token.
// Ordinary SQL has 4 to 8 bytes a token (the 20,000-row INSERT 4.3); a
// dense list such as 1,1,1 has 1, and costs the most per byte.
const bytesPerToken = 4

// Depth weights of the constructs the estimate counts, each at least the
// nodes the construct adds to the tree (in parentheses: what they are).
const (
	// An operator, a typecast, or an operator keyword (NOT, IS, IN,
	// LIKE, BETWEEN, COLLATE, AT, JOIN, UNION, OVER, FILTER, …): one
	// A_Expr, TypeCast, BoolExpr, NullTest, JoinExpr, SelectStmt or
	// window wrapping what is left of it. AND and OR count once a
	// frame: the grammar flattens their chains.
	operatorWeight depthUnits = 1
	// '(': a function call, row, sublink or nothing.
	parenWeight depthUnits = 1
	// '[': an array (A_ArrayExpr) or a subscript (A_Indirection and
	// A_Indices).
	bracketWeight depthUnits = 2
	// CASE: CaseExpr and CaseWhen.
	caseWeight depthUnits = 2
	// SELECT, VALUES, WITH and the DML keywords: SubLink or
	// RangeSubselect, the statement, and its target or CTE.
	statementWeight depthUnits = 2
	// ORDER BY or PARTITION BY in a frame: the SortBy (or window
	// definition) between the items and what holds them.
	sortWeight depthUnits = 1
)

// statementBytes is the effective MaxStatementBytes.
func (l Limits) statementBytes() int {
	if l.MaxStatementBytes > 0 {
		return l.MaxStatementBytes
	}
	return policy.DefaultMaxStatementBytes
}

// maxTokens is the token budget of a statement.
func (l Limits) maxTokens() int { return l.statementBytes() / bytesPerToken }

// check refuses sql when parsing or analysing it could crash or exhaust
// the process: it runs before any call into pg_query's C code.
func (l Limits) check(sql string) error {
	maxBytes := l.statementBytes()
	if len(sql) > maxBytes {
		return &Error{Code: CodeProgramLimitExceeded, Message: fmt.Sprintf(
			"statement of %d bytes is longer than server.max_statement_bytes (%d), the most the proxy parses; split it", len(sql), maxBytes)}
	}
	cost := measureCost(sql, l.maxTokens())
	switch {
	case cost.tokens > l.maxTokens():
		return &Error{Code: CodeProgramLimitExceeded, Message: fmt.Sprintf(
			"statement has more than %d tokens (list items, values, operators), the most the proxy analyses with server.max_statement_bytes %d; split it", l.maxTokens(), maxBytes)}
	case cost.depth > maxTreeDepth:
		return &Error{Code: CodeStatementTooComplex, Message: fmt.Sprintf(
			"statement is too complex: its expressions nest more than %d deep, the most the proxy parses safely; flatten or split it", maxTreeDepth)}
	}
	return nil
}

// statementCost is what the pre-parse scan measured.
type statementCost struct {
	tokens int
	depth  depthUnits // the deepest estimate seen
}

// measureCost scans sql like pg_query's lexer (standard_conforming_strings
// on, as pg_query parses), counting tokens and estimating tree depth. It
// stops early once either exceeds its bound, so its work is bounded too.
func measureCost(sql string, maxTokens int) statementCost {
	s := &costScanner{sql: sql, frames: []frame{{kind: frameStatement}}}
	for s.pos < len(s.sql) && s.cost.tokens <= maxTokens && s.cost.depth <= maxTreeDepth {
		s.next()
	}
	return s.cost
}

// frameKind is what opened a frame of the depth estimate.
type frameKind uint8

const (
	frameStatement frameKind = iota // the whole string; never closed
	frameParen                      // ( … )
	frameBracket                    // [ … ]
	frameCase                       // CASE … END
	frameQuery                      // a SELECT or VALUES body, ended by a set operator, ')' or ';'
)

// frame is one level of nesting. Items separated by commas are siblings
// in the tree, and so are the operands of AND and OR (which the grammar
// flattens) and the branches of a CASE: the operators counted since the
// last separator (chain) are what can stack up, on top of the depth the
// frame opened at (base). JOINs and set operators stack up across AND, OR
// and CASE (… JOIN t ON a AND b JOIN …), so they count apart (tables),
// until a comma or ';'.
type frame struct {
	kind   frameKind
	base   depthUnits
	chain  depthUnits
	tables depthUnits
	sawAnd bool // a BoolExpr AND holds the items
	sawOr  bool // a BoolExpr OR holds the items
	sorted bool // ORDER BY or PARTITION BY: a SortBy holds the items
}

func (f *frame) depth() depthUnits {
	d := f.base + f.tables + f.chain
	if f.sawAnd {
		d += operatorWeight
	}
	if f.sawOr {
		d += operatorWeight
	}
	if f.sorted {
		d += sortWeight
	}
	return d
}

// endStatement forgets the frame's items, at ';'.
func (f *frame) endStatement() { *f = frame{kind: f.kind, base: f.base} }

// costScanner is the state of measureCost.
type costScanner struct {
	sql    string
	pos    int
	frames []frame
	cost   statementCost
	// afterDot: the previous token was '.', so a word is a name (t.end,
	// t.and), never a keyword.
	afterDot bool
	// afterSetOp: the previous words were UNION, INTERSECT or EXCEPT
	// (and ALL or DISTINCT): a SELECT there is a branch of the chain
	// that operator already counted.
	afterSetOp bool
}

func (s *costScanner) peek(off int) byte {
	if s.pos+off < len(s.sql) {
		return s.sql[s.pos+off]
	}
	return 0
}

func (s *costScanner) top() *frame { return &s.frames[len(s.frames)-1] }

// next consumes one token (or whitespace).
func (s *costScanner) next() {
	c := s.sql[s.pos]
	if isSpace(c) {
		s.pos++
		return
	}
	s.cost.tokens++
	switch {
	case c == '-' && s.peek(1) == '-':
		s.skipLineComment()
		return
	case c == '/' && s.peek(1) == '*':
		s.skipBlockComment()
		return
	}
	afterDot, afterSetOp := s.afterDot, s.afterSetOp
	s.afterDot, s.afterSetOp = false, false
	switch {
	case isIdentStart(c):
		s.word(afterDot, afterSetOp)
	case isDigit(c) || c == '.' && isDigit(s.peek(1)):
		s.number()
	case c == '\'' || c == '"':
		s.skipQuoted(s.pos, c, false)
	case c == '$':
		s.dollar()
	default:
		s.punctuation(c)
	}
}

// punctuation handles operators and the characters that open, close and
// separate.
func (s *costScanner) punctuation(c byte) {
	switch {
	case c == ':' && s.peek(1) == ':':
		s.pos += 2
		s.count(operatorWeight)
	case isOpChar(c):
		s.operator()
	case c == '(':
		s.pos++
		s.open(frameParen, parenWeight)
	case c == '[':
		s.pos++
		s.open(frameBracket, bracketWeight)
	case c == ')' || c == ']':
		s.pos++
		s.closeQueries()
		if len(s.frames) > 1 {
			s.frames = s.frames[:len(s.frames)-1]
		}
	case c == ',':
		s.pos++
		s.top().chain, s.top().tables = 0, 0
	case c == ';':
		s.pos++
		s.closeQueries()
		s.top().endStatement()
	case c == '.':
		s.pos++
		s.afterDot = true
	default:
		s.pos++
	}
}

// count adds operators to the current chain.
func (s *costScanner) count(w depthUnits) {
	s.top().chain += w
	s.deepen(s.top().depth())
}

// countTables adds a JOIN or set operator.
func (s *costScanner) countTables(w depthUnits) {
	s.top().tables += w
	s.deepen(s.top().depth())
}

func (s *costScanner) deepen(d depthUnits) {
	s.cost.depth = max(s.cost.depth, d)
}

// open starts a nested frame at the current depth plus weight.
func (s *costScanner) open(kind frameKind, weight depthUnits) {
	base := s.top().depth() + weight
	s.frames = append(s.frames, frame{kind: kind, base: base})
	s.deepen(base)
}

// closeQueries ends the SELECT or VALUES bodies open in the innermost
// parenthesis, bracket or CASE.
func (s *costScanner) closeQueries() {
	for len(s.frames) > 1 && s.top().kind == frameQuery {
		s.frames = s.frames[:len(s.frames)-1]
	}
}

// operator consumes a run of operator characters. PostgreSQL's lexer
// makes the run one operator, except that it splits off a trailing + or -
// (unless the run holds one of ~!@#%^&|`?), so -+-1 is three prefix
// operators; counting each trailing + or - stays above that.
func (s *costScanner) operator() {
	start := s.pos
	special := false
	for s.pos < len(s.sql) && isOpChar(s.sql[s.pos]) {
		if s.startsComment() && s.pos > start {
			break
		}
		special = special || isSpecialOpChar(s.sql[s.pos])
		s.pos++
	}
	ops := operatorWeight
	if !special {
		for i := s.pos - 1; i > start && (s.sql[i] == '+' || s.sql[i] == '-'); i-- {
			ops += operatorWeight
		}
	}
	s.count(ops)
}

func (s *costScanner) startsComment() bool {
	c, n := s.sql[s.pos], s.peek(1)
	return c == '-' && n == '-' || c == '/' && n == '*'
}

func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}

func isSpecialOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '%':
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// word consumes an identifier or keyword, or a string with a one-letter
// prefix (E'…', B'…', X'…', N'…', U&'…', U&"…").
func (s *costScanner) word(afterDot, afterSetOp bool) {
	start := s.pos
	for s.pos < len(s.sql) && isIdentChar(s.sql[s.pos]) {
		s.pos++
	}
	w := s.sql[start:s.pos]
	if s.prefixedString(w) {
		return
	}
	if afterDot {
		return
	}
	s.keyword(keywordRoleOf(w), afterSetOp)
}

// prefixedString skips a string or quoted identifier whose prefix is w.
func (s *costScanner) prefixedString(w string) bool {
	if len(w) != 1 {
		return false
	}
	switch c := w[0] | 0x20; {
	case s.peek(0) == '\'' && (c == 'b' || c == 'x' || c == 'n'):
		s.skipQuoted(s.pos, '\'', false)
	case s.peek(0) == '\'' && c == 'e':
		s.skipQuoted(s.pos, '\'', true)
	case c == 'u' && s.peek(0) == '&' && (s.peek(1) == '\'' || s.peek(1) == '"'):
		s.skipQuoted(s.pos+1, s.peek(1), false)
	default:
		return false
	}
	return true
}

// keywordRole is what a keyword does to the depth estimate.
type keywordRole uint8

const (
	roleNone      keywordRole = iota
	roleOperator              // NOT, IS, IN, LIKE, OVER, …: an operator
	roleJoin                  // JOIN: an operator between tables
	roleSetOp                 // UNION, INTERSECT, EXCEPT: an operator between queries
	roleSetOpNoun             // ALL, DISTINCT: may follow a set operator
	roleQuery                 // SELECT, VALUES: a query body
	roleStatement             // WITH, INSERT, UPDATE, DELETE, MERGE
	roleSort                  // ORDER, PARTITION
	roleAnd
	roleOr
	roleSeparator // WHEN, THEN, ELSE: between sibling expressions
	roleCase
	roleEnd
)

var keywordRoles = map[string]keywordRole{
	"not": roleOperator, "is": roleOperator, "isnull": roleOperator, "notnull": roleOperator,
	"in": roleOperator, "like": roleOperator, "ilike": roleOperator, "similar": roleOperator,
	"between": roleOperator, "collate": roleOperator, "at": roleOperator, "overlaps": roleOperator,
	"join": roleJoin, "operator": roleOperator,
	"over": roleOperator, "filter": roleOperator, "within": roleOperator,
	"union": roleSetOp, "intersect": roleSetOp, "except": roleSetOp,
	"all": roleSetOpNoun, "distinct": roleSetOpNoun,
	"select": roleQuery, "values": roleQuery,
	"with": roleStatement, "insert": roleStatement, "update": roleStatement, "delete": roleStatement, "merge": roleStatement,
	"order": roleSort, "partition": roleSort,
	"and": roleAnd, "or": roleOr,
	"when": roleSeparator, "then": roleSeparator, "else": roleSeparator,
	"case": roleCase, "end": roleEnd,
}

// maxKeywordLen is the length of the longest word in keywordRoles.
const maxKeywordLen = len("intersect")

// keywordRoleOf looks w up case-insensitively without allocating.
func keywordRoleOf(w string) keywordRole {
	if len(w) > maxKeywordLen {
		return roleNone
	}
	var buf [maxKeywordLen]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return keywordRoles[string(buf[:len(w)])]
}

// keyword applies a keyword's role.
func (s *costScanner) keyword(role keywordRole, afterSetOp bool) {
	f := s.top()
	switch role {
	case roleOperator:
		s.count(operatorWeight)
	case roleJoin:
		s.countTables(operatorWeight)
	case roleSetOp:
		s.closeQueries()
		s.countTables(operatorWeight)
		s.afterSetOp = true
	case roleSetOpNoun:
		s.afterSetOp = afterSetOp
	case roleQuery:
		weight := statementWeight
		if afterSetOp {
			weight = 0
		}
		s.open(frameQuery, weight)
	case roleStatement:
		s.count(statementWeight)
	case roleSort:
		f.sorted = true
		s.deepen(f.depth())
	case roleAnd:
		f.sawAnd, f.chain = true, 0
		s.deepen(f.depth())
	case roleOr:
		f.sawOr, f.chain = true, 0
		s.deepen(f.depth())
	case roleSeparator:
		if f.kind == frameCase {
			f.chain = 0
		}
	case roleCase:
		s.open(frameCase, caseWeight)
	case roleEnd:
		s.closeQueries()
		if s.top().kind == frameCase {
			s.frames = s.frames[:len(s.frames)-1]
		}
	}
}

// number consumes a numeric literal: decimal with fraction and exponent
// (1.5e-3 is one token), or 0x/0o/0b, with _ separators; trailing
// letters are PostgreSQL's "trailing junk" error, consumed with it.
func (s *costScanner) number() {
	radix := s.peek(0) == '0' && (s.peek(1)|0x20 == 'x' || s.peek(1)|0x20 == 'o' || s.peek(1)|0x20 == 'b')
	if radix {
		s.pos += 2
	}
	for s.pos < len(s.sql) && (isDigit(s.sql[s.pos]) || s.sql[s.pos] == '_' || s.sql[s.pos] == '.' ||
		radix && isIdentStart(s.sql[s.pos])) {
		s.pos++
	}
	if !radix && s.peek(0)|0x20 == 'e' {
		sign := 0
		if s.peek(1) == '+' || s.peek(1) == '-' {
			sign = 1
		}
		if isDigit(s.peek(1 + sign)) {
			s.pos += 1 + sign
		}
	}
	for s.pos < len(s.sql) && (isDigit(s.sql[s.pos]) || isIdentStart(s.sql[s.pos]) || s.sql[s.pos] == '_') {
		s.pos++
	}
}

// skipQuoted skips the quoted span opening with quote at s.sql[at]: a
// doubled quote stays inside, and so, in E” strings, does a backslash
// with the byte after it. An unclosed span runs to the end (pg_query then
// refuses it).
func (s *costScanner) skipQuoted(at int, quote byte, backslashes bool) {
	i := at + 1
	for i < len(s.sql) {
		switch c := s.sql[i]; {
		case backslashes && c == '\\':
			i += 2
		case c != quote:
			i++
		case i+1 < len(s.sql) && s.sql[i+1] == quote:
			i += 2
		default:
			s.pos = i + 1
			return
		}
	}
	s.pos = len(s.sql)
}

// dollar consumes a parameter ($1), a dollar-quoted string ($$…$$,
// $tag$…$tag$) or a lone '$'.
func (s *costScanner) dollar() {
	if isDigit(s.peek(1)) {
		// $1, or $1abc, PostgreSQL's "trailing junk" error; a '$' after
		// the digits starts a new token ($1$q$…$q$), as in the lexer.
		s.pos++
		for s.pos < len(s.sql) && (isDigit(s.sql[s.pos]) || s.sql[s.pos] == '_') {
			s.pos++
		}
		if s.pos < len(s.sql) && isIdentStart(s.sql[s.pos]) {
			for s.pos < len(s.sql) && isIdentChar(s.sql[s.pos]) {
				s.pos++
			}
		}
		return
	}
	end := s.pos + 1
	if end < len(s.sql) && isIdentStart(s.sql[end]) {
		for end < len(s.sql) && isIdentChar(s.sql[end]) && s.sql[end] != '$' {
			end++
		}
	}
	if end >= len(s.sql) || s.sql[end] != '$' {
		s.pos++
		return
	}
	delim := s.sql[s.pos : end+1]
	body := end + 1
	if i := strings.Index(s.sql[body:], delim); i >= 0 {
		s.pos = body + i + len(delim)
		return
	}
	s.pos = len(s.sql)
}

func (s *costScanner) skipLineComment() {
	for s.pos < len(s.sql) && s.sql[s.pos] != '\n' && s.sql[s.pos] != '\r' {
		s.pos++
	}
}

// skipBlockComment skips a /* */ comment, which nests in PostgreSQL.
func (s *costScanner) skipBlockComment() {
	nesting := 0
	for s.pos < len(s.sql) {
		switch {
		case s.sql[s.pos] == '/' && s.peek(1) == '*':
			nesting++
			s.pos += 2
		case s.sql[s.pos] == '*' && s.peek(1) == '/':
			nesting--
			s.pos += 2
			if nesting == 0 {
				return
			}
		default:
			s.pos++
		}
	}
}
