package sqlrewrite

import (
	"errors"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// FuzzAnalyze feeds random SQL to Analyze. Beyond "no panic, no hang" it
// checks, for every accepted plan:
//   - the edits are sorted, inside the text and do not overlap;
//   - the rewritten SQL still parses when the original did;
//   - analyzing the rewritten SQL again (with every encrypted constant
//     replaced by NULL) finds no constant left to encrypt;
//   - an independent, deliberately naive oracle finds no constant next to
//     an encrypted column in statements simple enough for it to judge.
func FuzzAnalyze(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkInvariants)
}

// checkInvariants analyzes sql and checks the properties every accepted
// plan must have.
func checkInvariants(t *testing.T, sql string) {
	env := testEnv()
	env.Prepared = testPrepared
	p, err := Analyze(sql, env)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Code == "" || e.Message == "" {
			t.Fatalf("bad error %T %v", err, err)
		}
		return
	}
	checkPlanShape(t, p)
	if _, perr := pg_query.Parse(sql); perr != nil {
		if len(p.Edits) != 0 {
			t.Fatalf("edits on unparsable SQL")
		}
		return
	}
	out, err := p.Rewrite(func(*Literal) (string, error) { return "NULL", nil })
	if err != nil {
		t.Fatal(err)
	}
	tree, err := pg_query.Parse(out)
	if err != nil {
		t.Fatalf("rewritten SQL does not parse: %v\n in: %q\nout: %q", err, sql, out)
	}
	if p2, err := Analyze(out, env); err == nil {
		for _, e := range p2.Edits {
			if e.Literal != nil {
				t.Fatalf("constant for %s left unencrypted\n in: %q\nout: %q", e.Literal.Rule.Name(), sql, out)
			}
		}
	}
	if msg := naiveOracle(tree); msg != "" {
		t.Fatalf("%s\n in: %q\nout: %q", msg, sql, out)
	}
}

func checkPlanShape(t *testing.T, p *Plan) {
	t.Helper()
	last := 0
	for _, e := range p.Edits {
		if e.Start < last || e.End < e.Start || e.End > len(p.SQL) {
			t.Fatalf("bad edit %d-%d after %d in %d bytes", e.Start, e.End, last, len(p.SQL))
		}
		if e.Literal != nil && e.Literal.Rule == nil {
			t.Fatal("literal without rule")
		}
		last = e.End
	}
	for _, s := range p.Statements {
		if s.Start < 0 || s.End < s.Start || s.End > len(p.SQL) {
			t.Fatalf("bad statement range %d-%d", s.Start, s.End)
		}
	}
	for _, r := range p.Params {
		if r != nil && r.Rule == nil {
			t.Fatal("param without rule")
		}
	}
	if len(p.Params) > 0 && p.Params[len(p.Params)-1] == nil {
		t.Fatal("Params longer than the highest encrypted parameter")
	}
}

// oracleColumns are the encrypted columns of the test catalog's relations.
// In a flat statement (no subqueries, CTEs or functions in FROM) over those
// relations only, a reference to one of these names through a relation
// that has it can only be that encrypted column.
var oracleColumns = map[string]map[string]bool{
	"patients":      {"ssn": true, "diagnosis": true, "dob": true},
	"patient_names": {"ssn": true},
	"visits":        {"patient_ssn": true, "note": true},
	"staff":         {"badge": true},
}

// oracleScope maps the names a flat statement's relations go by to the
// relation.
type oracleScope map[string]string

// naiveOracle returns a complaint when a constant sits next to an
// encrypted column in the rewritten tree, for the statements it can judge.
func naiveOracle(tree *pg_query.ParseResult) string {
	for _, raw := range tree.GetStmts() {
		sc, ok := oracleCanJudge(raw.GetStmt())
		if !ok {
			continue
		}
		if msg := sc.statement(raw.GetStmt()); msg != "" {
			return msg
		}
	}
	return ""
}

func oracleCanJudge(stmt *pg_query.Node) (oracleScope, bool) {
	switch stmt.GetNode().(type) {
	case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt:
	default:
		return nil, false
	}
	sc := oracleScope{}
	for _, rv := range rangeVarsIn(stmt.ProtoReflect()) {
		if (rv.GetSchemaname() != "" && rv.GetSchemaname() != "public") || oracleColumns[rv.GetRelname()] == nil {
			return nil, false
		}
		name := rv.GetRelname()
		if rv.GetAlias() != nil {
			name = rv.GetAlias().GetAliasname()
		}
		sc[name] = rv.GetRelname()
	}
	ok := true
	walkAll(stmt, func(n *pg_query.Node) bool {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_RangeSubselect, *pg_query.Node_CommonTableExpr, *pg_query.Node_RangeFunction,
			*pg_query.Node_RangeTableFunc, *pg_query.Node_WithClause, *pg_query.Node_SubLink:
			ok = false
		case *pg_query.Node_SelectStmt:
			// Branches of a set operation are separate scopes.
			ok = x.SelectStmt.GetOp() == pg_query.SetOperation_SETOP_NONE
		}
		return ok
	})
	return sc, ok
}

func (sc oracleScope) isEncRef(n *pg_query.Node) bool {
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	f := cr.GetFields()
	col := f[len(f)-1].GetString_().GetSval()
	if len(f) >= 2 {
		return oracleColumns[sc[f[len(f)-2].GetString_().GetSval()]][col]
	}
	for _, rel := range sc {
		if oracleColumns[rel][col] {
			return true
		}
	}
	return false
}

// isConstant looks through casts and signs for a non-NULL constant.
func isConstant(n *pg_query.Node) bool {
	for {
		switch {
		case n.GetTypeCast() != nil:
			n = n.GetTypeCast().GetArg()
		case n.GetAExpr() != nil && n.GetAExpr().GetLexpr() == nil:
			n = n.GetAExpr().GetRexpr()
		default:
			c := n.GetAConst()
			return c != nil && !c.GetIsnull()
		}
	}
}

func constantsIn(n *pg_query.Node) bool {
	if isConstant(n) {
		return true
	}
	for _, it := range n.GetList().GetItems() {
		if isConstant(it) {
			return true
		}
	}
	for _, it := range n.GetAArrayExpr().GetElements() {
		if isConstant(it) {
			return true
		}
	}
	return false
}

func (sc oracleScope) statement(stmt *pg_query.Node) string {
	msg := ""
	walked := stmt
	if ins := stmt.GetInsertStmt(); ins != nil {
		// The source of an INSERT does not see the target table; only
		// ON CONFLICT does.
		walked = &pg_query.Node{Node: &pg_query.Node_List{List: &pg_query.List{}}}
		if oc := ins.GetOnConflictClause(); oc != nil {
			walked.GetList().Items = append(walked.GetList().Items, oc.GetWhereClause())
			for _, t := range oc.GetTargetList() {
				walked.GetList().Items = append(walked.GetList().Items, t.GetResTarget().GetVal())
			}
		}
	}
	walkAll(walked, func(n *pg_query.Node) bool {
		if e := n.GetAExpr(); e != nil {
			l, r := e.GetLexpr(), e.GetRexpr()
			if (sc.isEncRef(l) && constantsIn(r)) || (sc.isEncRef(r) && constantsIn(l)) {
				msg = "a constant is compared with an encrypted column"
			}
		}
		return msg == ""
	})
	if msg != "" {
		return msg
	}
	if ins := stmt.GetInsertStmt(); ins != nil {
		return sc.insert(ins)
	}
	for _, t := range stmt.GetUpdateStmt().GetTargetList() {
		rt := t.GetResTarget()
		if sc.targetEncrypted(stmt.GetUpdateStmt().GetRelation(), rt.GetName()) && isConstant(rt.GetVal()) {
			return "a constant is assigned to an encrypted column"
		}
	}
	return ""
}

func (sc oracleScope) targetEncrypted(rv *pg_query.RangeVar, col string) bool {
	return oracleColumns[rv.GetRelname()][col]
}

func (sc oracleScope) insert(ins *pg_query.InsertStmt) string {
	var cols []string
	for _, c := range ins.GetCols() {
		cols = append(cols, c.GetResTarget().GetName())
	}
	for _, row := range ins.GetSelectStmt().GetSelectStmt().GetValuesLists() {
		for i, v := range row.GetList().GetItems() {
			if i < len(cols) && sc.targetEncrypted(ins.GetRelation(), cols[i]) && isConstant(v) {
				return "a constant is stored in an encrypted column"
			}
		}
	}
	for _, t := range ins.GetOnConflictClause().GetTargetList() {
		rt := t.GetResTarget()
		if sc.targetEncrypted(ins.GetRelation(), rt.GetName()) && isConstant(rt.GetVal()) {
			return "a constant is assigned to an encrypted column"
		}
	}
	return ""
}

func fuzzSeeds() []string {
	var out []string
	for _, g := range [][]acceptCase{selectCases, writeCases} {
		for _, c := range g {
			out = append(out, c.sql)
		}
	}
	for _, c := range refuseCases {
		out = append(out, c.sql)
	}
	for _, c := range sessionCases {
		out = append(out, c.sql)
	}
	for _, c := range planCases {
		out = append(out, c.sql)
	}
	out = append(out, generateStatements(7, 200)...)
	return append(out,
		`SELECT * FROM patients WHERE ssn='x'AND id=1`,
		`INSERT INTO patients(ssn,diagnosis)VALUES('a','b')RETURNING ssn`,
		`UPDATE visits SET note=$1,patient_ssn='q'WHERE patient_ssn IN('a',$2)`,
		`SELECT * FROM staff WHERE badge=-(-(3))::int8`,
	)
}

// walkAll calls fn on every Node in the tree under n, n included; fn
// returns false to stop.
func walkAll(n *pg_query.Node, fn func(*pg_query.Node) bool) bool {
	if n == nil {
		return true
	}
	if !fn(n) {
		return false
	}
	ok := true
	_ = eachChildNode(n, func(c *pg_query.Node) error {
		if !walkAll(c, fn) {
			ok = false
			return errStop
		}
		return nil
	})
	return ok
}

var errStop = errors.New("stop")
