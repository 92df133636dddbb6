package sqlrewrite

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pganalyze/pg_query_go/v5/parser"
	"github.com/pgcloak/pgcloak/policy"
)

// Analyze parses sql (one or more statements) and returns the plan the
// proxy follows, or an *Error when a statement is refused. It is pure: the
// catalog and session state come from env, and nothing is encrypted here.
func Analyze(sql string, env *Env) (*Plan, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		// The C parser would stop at the NUL and never see the rest.
		return nil, syntaxRefusal("statement text contains a NUL byte")
	}
	if plan, ok := PlainPlan(sql, env.catalog()); ok {
		return plan, nil
	}
	return newAnalyzer(sql, env).analyze()
}

// PlainPlan plans, cheaply and without parsing, SQL that is one plain DML
// statement touching no encrypted data; ok is false for anything else,
// which needs Analyze. The proxy calls it first: most traffic is such SQL,
// and it needs neither session bookkeeping nor grants.
func PlainPlan(sql string, cat Catalog) (*Plan, bool) {
	if cat == nil {
		cat = emptyCatalog{}
	}
	if strings.IndexByte(sql, 0) >= 0 || mayTouch(sql, cat) {
		return nil, false
	}
	return plainDML(sql)
}

func (e *Env) catalog() Catalog {
	if e == nil || e.Catalog == nil {
		return emptyCatalog{}
	}
	return e.Catalog
}

// analyze is the full analysis: parse, then each statement.
func (a *analyzer) analyze() (*Plan, error) {
	sql := a.sql
	if err := a.admit(); err != nil {
		return nil, err
	}
	// Also when the text names nothing encrypted: a literal that ends
	// elsewhere for PostgreSQL could hide an EXECUTE of a statement
	// prepared earlier.
	// Before parsing: text that does not parse may still run in
	// PostgreSQL, which ends its literals elsewhere.
	if err := a.checkSplitBackslash(); err != nil {
		return nil, err
	}
	if err := a.checkBackslashLiterals(); err != nil {
		return nil, err
	}
	if err := a.checkModernNumbers(); err != nil {
		return nil, err
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return a.unparsable(err)
	}
	plan := &Plan{SQL: sql}
	raws := tree.GetStmts()
	for i, raw := range raws {
		st, err := a.topStatement(raw)
		if err != nil {
			return nil, err
		}
		plan.Statements = append(plan.Statements, st)
		if a.env.Next != nil && i+1 < len(raws) {
			if next := a.env.Next(st); next != nil {
				a.setEnv(next)
			}
		}
	}
	if err := a.finish(plan); err != nil {
		return nil, err
	}
	return plan, nil
}

// analyzer is the state of one Analyze call.
type analyzer struct {
	sql string
	env *Env
	cat Catalog
	// deep is false when the text cannot touch encrypted data: no word
	// names a relation with encrypted columns, no set_config, no U&""
	// identifier. Statements are then only classified.
	deep bool

	toks    []*pg_query.ScanToken
	scanErr error

	cur    span // the byte range of the top-level statement being analyzed
	edits  []Edit
	editAt map[int]int // index of the edit starting at an offset
	top    *paramSet   // the bind parameters of the plan
	params *paramSet   // where $n uses go: top, or a PREPARE body's
	stmt   *Statement

	relCols map[*Relation][]column
	schemas map[string][]string
	// setConfigOK marks the set_config calls whose effect is certain: the
	// direct targets of a top-level SELECT without FROM or other clauses.
	setConfigOK map[*pg_query.FuncCall]bool
	// subShapes caches, by location, the analysis of a multi-assignment
	// subquery, which every target of UPDATE … SET (a, b) = (SELECT …)
	// shares.
	subShapes map[int32]*shape
	// seen records the column references resolved, for the check that
	// none was skipped.
	seen map[*pg_query.ColumnRef]bool
	// touched is set when a relation with encrypted columns is resolved.
	touched bool
	// pendingRecursive is the recursive CTE whose non-recursive branch is
	// being analyzed.
	pendingRecursive *recursiveCTE
	// nested counts the statements being analyzed inside another one
	// (PREPARE, EXPLAIN, DECLARE, CREATE … AS).
	nested int
	// unnamed is the function call being analysed as a target without
	// a name (see minMax).
	unnamed *pg_query.FuncCall
	// orderVer is Plan.OrderVersions.
	orderVer map[string]int
	// boundBytes estimates the range ends of the constants compared with
	// ordered columns (see chargeBounds).
	boundBytes int
	// admitted is set once sql passed the limits that every call into
	// pg_query's C code needs first (admit).
	admitted bool
}

// admit checks sql against the Env's limits, once per analyzer; it must
// precede every pg_query call on sql.
func (a *analyzer) admit() error {
	if a.admitted {
		return nil
	}
	if err := a.env.Limits.check(a.sql); err != nil {
		return err
	}
	a.admitted = true
	return nil
}

func newAnalyzer(sql string, env *Env) *analyzer {
	if env == nil {
		env = &Env{}
	}
	cat := env.Catalog
	if cat == nil {
		cat = emptyCatalog{}
	}
	a := &analyzer{
		sql: sql, env: env, cat: cat,
		top:         &paramSet{},
		editAt:      map[int]int{},
		relCols:     map[*Relation][]column{},
		schemas:     map[string][]string{},
		setConfigOK: map[*pg_query.FuncCall]bool{},
		subShapes:   map[int32]*shape{},
		seen:        map[*pg_query.ColumnRef]bool{},
	}
	a.params = a.top
	a.deep = mayTouch(sql, cat)
	return a
}

// mayTouch reports whether sql might touch encrypted data or tracked
// session settings: a word naming a relation with encrypted columns, a
// set_config call or pg_settings, or a U&"" identifier that could spell
// any of them.
func mayTouch(sql string, cat Catalog) bool {
	_, mentions := mentionedEncrypted(sql, cat)
	return mentions || containsFold(sql, "set_config") || containsFold(sql, "pg_settings") || hasUnicodeIdent(sql)
}

// setEnv switches to the Env the statements after the current one run in
// (see Env.Next).
func (a *analyzer) setEnv(env *Env) {
	a.env = env
	if env.Catalog != nil {
		a.cat = env.Catalog
	}
	a.schemas = map[string][]string{}
	a.relCols = map[*Relation][]column{}
}

type emptyCatalog struct{}

func (emptyCatalog) SchemasWith(string) []string       { return nil }
func (emptyCatalog) Relation(string, string) *Relation { return nil }
func (emptyCatalog) EncryptedName(string) bool         { return false }

// unparsable decides about SQL the parser rejects: PostgreSQL will reject
// it too, so it may pass through unless it might carry plaintext of an
// encrypted column towards a relation the analysis cannot see. A refusal
// keeps the parser's position but not its message, which may quote a
// literal.
func (a *analyzer) unparsable(parseErr error) (*Plan, error) {
	var refusal *Error
	if name, ok := mentionedEncryptedFold(a.sql, a.cat); ok {
		refusal = syntaxRefusal("syntax error in a statement that mentions encrypted relation %s", name)
	} else if hasUnicodeIdent(a.sql) {
		refusal = syntaxRefusal("syntax error in a statement with a U&\"\" identifier that may name an encrypted relation")
	}
	if refusal != nil {
		return nil, withParserPosition(refusal, parseErr)
	}
	st := &Statement{Kind: KindOther, Start: 0, End: len(a.sql)}
	return &Plan{SQL: a.sql, Statements: []*Statement{st}}, nil
}

// withParserPosition gives refusal the position of pg_query's error,
// which PostgreSQL's own lexer and grammar compute (in characters).
func withParserPosition(refusal *Error, parseErr error) *Error {
	var pe *parser.Error
	if errors.As(parseErr, &pe) {
		refusal.Position = pe.Cursorpos
	}
	return refusal
}

// mentionedEncryptedFold is mentionedEncrypted with quoted identifiers
// also folded: for text that does not parse, any spelling counts.
func mentionedEncryptedFold(s string, cat Catalog) (string, bool) {
	if name, ok := mentionedEncrypted(s, cat); ok {
		return name, true
	}
	return mentionedEncrypted(lowerASCII(s), cat)
}

// topStatement analyzes one statement of the string.
func (a *analyzer) topStatement(raw *pg_query.RawStmt) (*Statement, error) {
	start := int(raw.GetStmtLocation())
	end := len(a.sql)
	if raw.GetStmtLen() > 0 {
		end = start + int(raw.GetStmtLen())
	}
	if start < 0 || start > end || end > len(a.sql) {
		return nil, refuse("", "statement could not be located")
	}
	for start < end && isSpace(a.sql[start]) {
		start++
	}
	for end > start && isSpace(a.sql[end-1]) {
		end--
	}
	st := &Statement{Start: start, End: end}
	a.stmt = st
	a.cur = span{start, end}
	if a.deep && updatesSettings(raw.ProtoReflect()) {
		return nil, errSettingsUpdate
	}
	if err := a.statement(raw.GetStmt(), st); err != nil {
		return nil, err
	}
	st.ChangesCatalog = st.Kind == KindDDL && a.deep && !createsOnlyTemp(raw.GetStmt())
	if a.deep {
		if err := a.checkAllSeen(raw.GetStmt()); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// finish sorts and checks the edits and settles the parameters.
func (a *analyzer) finish(plan *Plan) error {
	sort.SliceStable(a.edits, func(i, j int) bool { return a.edits[i].Start < a.edits[j].Start })
	for i := 1; i < len(a.edits); i++ {
		if a.edits[i].Start < a.edits[i-1].End {
			return refuse("", "statement could not be rewritten safely: overlapping edits")
		}
	}
	plan.Edits = a.edits
	plan.OrderVersions = a.orderVer
	if err := a.top.check(); err != nil {
		return err
	}
	if len(a.top.rules) > 0 {
		plan.Params = a.top.rules
	}
	if len(a.top.hidden) > 0 {
		n, err := a.maxParam(0, len(a.sql))
		if err != nil {
			return err
		}
		plan.ClientParams = max(n, len(a.top.rules))
		if err := tooManyParams(plan.ClientParams + len(a.top.hidden)); err != nil {
			return err
		}
		params := make([]*ParamRule, plan.ClientParams, plan.ClientParams+len(a.top.hidden))
		copy(params, a.top.rules)
		plan.Params = append(params, a.top.hidden...)
	}
	return nil
}

// maxParams is the most parameters a Bind can carry (its count is an
// Int16).
const maxParams = 65535

// tooManyParams refuses a statement whose parameters, with the hidden
// ones the proxy adds (CandidateSlots for each parameter compared with a
// deterministic column), would be more than a Bind can carry.
func tooManyParams(n int) error {
	if n <= maxParams {
		return nil
	}
	return &Error{Code: CodeProgramLimitExceeded, Message: fmt.Sprintf(
		"statement would need %d parameters with the %d pgcloak adds for each parameter compared with a deterministic encrypted column, more than %d",
		n, CandidateSlots, maxParams)}
}

// maxParam returns the highest $n written in sql[start:end].
func (a *analyzer) maxParam(start, end int) (int, error) {
	toks, err := a.tokens()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range toks[a.tokenFrom(start):] {
		if int(t.Start) >= end {
			break
		}
		if t.Token != pg_query.Token_PARAM {
			continue
		}
		v, err := strconv.Atoi(a.sql[t.Start+1 : t.End])
		if err != nil {
			return 0, errLocate
		}
		n = max(n, v)
	}
	return n, nil
}

// addEdit records an edit. The same constant may be reached twice (for
// example 'x' IN (a, b)); the second time it must want the same thing.
func (a *analyzer) addEdit(e Edit) error {
	if e.Start == e.End {
		a.edits = append(a.edits, e)
		return nil
	}
	i, ok := a.editAt[e.Start]
	if !ok {
		a.editAt[e.Start] = len(a.edits)
		a.edits = append(a.edits, e)
		return nil
	}
	o := &a.edits[i]
	switch {
	case o.End != e.End:
		// Overlapping edits are caught when the plan is finished.
		a.edits = append(a.edits, e)
		return nil
	case o.Literal == nil && e.Literal == nil && len(o.Parts) == 0 && len(e.Parts) == 0 && o.Text == e.Text:
		return nil
	case len(o.Parts) > 0 && len(e.Parts) > 0 && sameParts(o.Parts, e.Parts):
		// The same comparison analysed twice.
		return nil
	case o.Literal != nil && e.Literal != nil && o.Literal.Rule.Interchangeable(e.Literal.Rule):
		o.Literal.Write = o.Literal.Write || e.Literal.Write
		return nil
	}
	return refuse(ruleName(e.Literal), "a constant is used with encrypted columns under different keys")
}

func ruleName(l *Literal) string {
	if l == nil || l.Rule == nil {
		return ""
	}
	return l.Rule.Name()
}

// paramSet collects what the statement does with each $n.
type paramSet struct {
	rules []*ParamRule
	plain map[int32]bool
	// hidden are the hidden parameters (see ParamRule.Source), in the
	// order they are numbered.
	hidden []*ParamRule
	// base, for the body of an SQL PREPARE, returns how many parameters
	// EXECUTE passes; its hidden parameters are numbered after them. It
	// is nil for the plan's own parameters, whose hidden ones are
	// numbered when the plan is finished (Part.Hidden).
	base    func() (int, error)
	baseVal int
	baseErr error
	baseSet bool
}

// hiddenFor returns the number (from 1) of the hidden parameter that
// carries the candidates of $n for rule (of each of its elements, for an
// array), adding it on first use. For a scalar $n it is the first of
// CandidateSlots consecutive hidden parameters (ParamRule.Slot 0, 1, …).
func (p *paramSet) hiddenFor(n int32, rule *policy.ColumnRule, array bool) int {
	for i, h := range p.hidden {
		if h.Source == int(n) && h.Array == array && h.Slot == 0 && (h.Rule == rule || *h.Rule == *rule) {
			return i + 1
		}
	}
	first := len(p.hidden) + 1
	if array {
		p.hidden = append(p.hidden, &ParamRule{Rule: rule, Source: int(n), Candidates: true, Array: true})
		return first
	}
	for k := range CandidateSlots {
		p.hidden = append(p.hidden, &ParamRule{Rule: rule, Source: int(n), Candidates: true, Slot: k})
	}
	return first
}

// firstHidden returns, for a PREPARE body, the number of the parameter
// before its first hidden one.
func (p *paramSet) firstHidden() (int, error) {
	if !p.baseSet {
		p.baseVal, p.baseErr = p.base()
		p.baseSet = true
	}
	return p.baseVal, p.baseErr
}

func (p *paramSet) use(n int32, rule *policy.ColumnRule, write bool) error {
	return p.useAs(n, rule, write, false)
}

// useArray records that $n holds an array whose elements are compared
// with rule's column.
func (p *paramSet) useArray(n int32, rule *policy.ColumnRule) error {
	return p.useAs(n, rule, false, true)
}

func (p *paramSet) useAs(n int32, rule *policy.ColumnRule, write, array bool) error {
	if n <= 0 || n > 65535 {
		return refuse(rule.Name(), "parameter $%d cannot be used with encrypted column %s", n, rule.Name())
	}
	for int(n) > len(p.rules) {
		p.rules = append(p.rules, nil)
	}
	prev := p.rules[n-1]
	if prev == nil {
		p.rules[n-1] = &ParamRule{Rule: rule, Write: write, Array: array}
		return nil
	}
	prev.BoundsOnly = false
	if !prev.Rule.Interchangeable(rule) {
		return refuse(rule.Name(), "parameter $%d is used with encrypted columns %s and %s under different keys", n, prev.Rule.Name(), rule.Name())
	}
	if prev.Array != array {
		// Its value cannot be both an array of the column's values and
		// one of them.
		return refuse(rule.Name(), "parameter $%d is used both as an array and as a single value with encrypted column %s", n, rule.Name())
	}
	prev.Write = prev.Write || write
	return nil
}

// useBounds records that $n is compared with rule's ordered column, which
// needs only the hidden parameters carrying its range ends: unless $n is
// used otherwise too, its own value goes to PostgreSQL as NULL.
func (p *paramSet) useBounds(n int32, rule *policy.ColumnRule) error {
	only := int(n) > len(p.rules) || p.rules[n-1] == nil || p.rules[n-1].BoundsOnly
	if err := p.useAs(n, rule, false, false); err != nil {
		return err
	}
	p.rules[n-1].BoundsOnly = only
	return nil
}

func (p *paramSet) usePlain(n int32) {
	if p.plain == nil {
		p.plain = map[int32]bool{}
	}
	p.plain[n] = true
}

// check refuses a parameter that is both encrypted and plain: one value
// cannot be both ciphertext and plaintext.
func (p *paramSet) check() error {
	for i, r := range p.rules {
		if r != nil && p.plain[int32(i+1)] {
			return refuse(r.Rule.Name(), "parameter $%d is used both with encrypted column %s and as a plain value", i+1, r.Rule.Name())
		}
	}
	return nil
}

// record helpers keep the statement's rule lists free of duplicates.
func addRule(list []*policy.ColumnRule, r *policy.ColumnRule) []*policy.ColumnRule {
	for _, x := range list {
		if x == r || *x == *r {
			return list
		}
	}
	return append(list, r)
}

func (a *analyzer) wrote(r *policy.ColumnRule)    { a.stmt.Writes = addRule(a.stmt.Writes, r) }
func (a *analyzer) searched(r *policy.ColumnRule) { a.stmt.Searches = addRule(a.stmt.Searches, r) }
func (a *analyzer) outputs(r *policy.ColumnRule)  { a.stmt.Outputs = addRule(a.stmt.Outputs, r) }
func (a *analyzer) copied(r *policy.ColumnRule)   { a.stmt.Copies = addRule(a.stmt.Copies, r) }

// nodeName is a node's type name for messages ("FuncCall").
func nodeName(n *pg_query.Node) string {
	m := innerMessage(n)
	if m == nil {
		return "empty node"
	}
	return string(m.Descriptor().Name())
}
