package sqlrewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// prepare handles SQL-level PREPARE: the body is analyzed like a direct
// statement (its constants are encrypted now), its $n become the prepared
// statement's parameters, and their declared types become bytea.
func (a *analyzer) prepare(ps *pg_query.PrepareStmt, st *Statement) error {
	st.Kind = KindPrepare
	inner := &Statement{Start: st.Start, End: st.End}
	p := &Prepared{Name: ps.GetName(), Statement: inner}
	st.Prepare = p
	params := &paramSet{}
	params.base = func() (int, error) {
		n, err := a.maxParam(st.Start, st.End)
		return max(n, len(ps.GetArgtypes())), err
	}
	if err := a.nestedStatement(ps.GetQuery(), inner, params); err != nil {
		return err
	}
	if err := params.check(); err != nil {
		return err
	}
	for _, h := range params.hidden {
		if h.Array {
			// EXECUTE would pass the array as a constant, whose elements
			// pgcloak does not encrypt.
			return refuse(h.Rule.Name(), "an array parameter compared with encrypted column %s is not supported in SQL PREPARE; prepare the statement with the extended protocol (Parse) instead", h.Rule.Name())
		}
	}
	p.Params = params.rules
	for _, r := range inner.Orders {
		if p.OrderVersions == nil {
			p.OrderVersions = map[string]int{}
		}
		p.OrderVersions[r.KeyName] = a.orderVer[r.KeyName]
	}
	if len(params.hidden) > 0 {
		base, err := params.firstHidden()
		if err != nil {
			return err
		}
		padded := make([]*ParamRule, base, base+len(params.hidden))
		copy(padded, params.rules)
		p.Params = append(padded, params.hidden...)
		p.ClientParams = base
		if err := tooManyParams(base + len(params.hidden)); err != nil {
			return err
		}
		if err := a.declareParams(ps, st, p); err != nil {
			return err
		}
	}
	for i, t := range ps.GetArgtypes() {
		if i >= len(p.Params) || p.Params[i] == nil {
			continue
		}
		tn := t.GetTypeName()
		end, err := a.typeNameEnd(tn.GetLocation())
		if err != nil {
			return err
		}
		if err := a.addEdit(Edit{Start: int(tn.GetLocation()), End: end, Text: "bytea"}); err != nil {
			return err
		}
	}
	return nil
}

// declareParams makes sure PREPARE declares the type of every encrypted
// parameter up to the last one: one whose every use became a comparison
// with candidates no longer appears in the body, and PostgreSQL could not
// infer its type. Plain parameters it adds are declared unknown, which
// PostgreSQL infers as if undeclared.
func (a *analyzer) declareParams(ps *pg_query.PrepareStmt, st *Statement, p *Prepared) error {
	last := 0
	for i, pr := range p.Params[:p.ClientParams] {
		if pr != nil {
			last = i + 1
		}
	}
	declared := len(ps.GetArgtypes())
	if last <= declared {
		return nil
	}
	types := make([]string, 0, last-declared)
	for _, pr := range p.Params[declared:last] {
		if pr != nil {
			types = append(types, "bytea")
		} else {
			types = append(types, "unknown")
		}
	}
	list := strings.Join(types, ", ")
	if _, err := a.tokens(); err != nil {
		return err
	}
	i := a.tokenFrom(st.Start)
	if a.tok(i).Token != pg_query.Token_PREPARE || !isWordToken(a.tok(i+1)) {
		return errLocate
	}
	if declared == 0 {
		if a.tok(i+2).Token != pg_query.Token_AS {
			return errLocate
		}
		at := int(a.tok(i + 1).End)
		return a.addEdit(Edit{Start: at, End: at, Text: "(" + list + ")"})
	}
	if a.tok(i+2).Token != pg_query.Token_ASCII_40 {
		return errLocate
	}
	j, err := a.skipBalanced(i + 2)
	if err != nil {
		return err
	}
	at := int(a.tok(j - 1).Start)
	return a.addEdit(Edit{Start: at, End: at, Text: ", " + list})
}

// execute handles SQL-level EXECUTE: an argument for an encrypted
// parameter must be a constant (encrypted now) or NULL. A statement with
// hidden parameters gets their arguments appended: the candidates of the
// constant its source parameter receives.
func (a *analyzer) execute(es *pg_query.ExecuteStmt, st *Statement) error {
	st.Kind, st.Execute = KindExecute, es.GetName()
	var p *Prepared
	if a.env.Prepared != nil {
		p, _ = a.env.Prepared(es.GetName())
	}
	if p == nil && len(es.GetParams()) > 0 {
		// Its parameters could be bound for encrypted columns; without its
		// plan the arguments cannot be judged (PostgreSQL would fail it
		// anyway if it does not exist).
		return refuse("", "EXECUTE of prepared statement %s, which pgcloak did not see prepared, with arguments is not supported", es.GetName())
	}
	if p != nil && p.Statement != nil {
		for _, r := range p.Statement.Writes {
			a.wrote(r)
		}
		for _, r := range p.Statement.Searches {
			a.searched(r)
		}
		for _, r := range p.Statement.Outputs {
			a.outputs(r)
		}
		for _, r := range p.Statement.Copies {
			a.copied(r)
		}
		for _, r := range p.Statement.Orders {
			// Checked against the versions its body was shaped for.
			st.Orders = addRule(st.Orders, r)
			if a.orderVer == nil {
				a.orderVer = map[string]int{}
			}
			a.orderVer[r.KeyName] = p.OrderVersions[r.KeyName]
		}
		st.Columns = p.Statement.Columns
	}
	empty := &scope{}
	args := es.GetParams()
	var hidden []*ParamRule
	clientParams := len(args)
	if p != nil && p.ClientParams > 0 {
		hidden, clientParams = p.Params[p.ClientParams:], p.ClientParams
	}
	vals := make([]value, len(args))
	for i, arg := range args {
		var pr *ParamRule
		if p != nil && i < clientParams && i < len(p.Params) {
			pr = p.Params[i]
		}
		if pr == nil || pr.Rule == nil {
			if a.deep {
				if err := a.plain(arg, empty, "EXECUTE"); err != nil {
					return err
				}
			}
			continue
		}
		v, err := a.executeArg(arg, pr, empty)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	if len(hidden) == 0 {
		return nil
	}
	if len(args) != clientParams {
		return syntaxRefusal("wrong number of parameters for prepared statement %q: expected %d, got %d", es.GetName(), clientParams, len(args))
	}
	return a.hiddenArgs(es, args, vals, hidden)
}

// hiddenArgs appends to EXECUTE's arguments one per hidden parameter: the
// candidates of its source argument, a constant or NULL (for a single
// value, CandidateSlots arguments from one Literal with Slots).
func (a *analyzer) hiddenArgs(es *pg_query.ExecuteStmt, args []*pg_query.Node, vals []value, hidden []*ParamRule) error {
	var b partsBuilder
	for i := 0; i < len(hidden); i++ {
		h := hidden[i]
		if h.Source < 1 || h.Source > len(args) {
			return refuse(h.Rule.Name(), "prepared statement %s has a parameter pgcloak cannot fill", es.GetName())
		}
		// A single value's slots come together, from Slot 0: one
		// constant renders them all.
		slots := 0
		if !h.Array {
			for slots < CandidateSlots && i+slots < len(hidden) && hidden[i+slots].Source == h.Source &&
				hidden[i+slots].Slot == slots && !hidden[i+slots].Array {
				slots++
			}
			if slots != CandidateSlots {
				return refuse(h.Rule.Name(), "prepared statement %s has a parameter pgcloak cannot fill", es.GetName())
			}
			i += slots - 1
		}
		b.text(", ")
		switch v := vals[h.Source-1]; v.kind {
		case valLit:
			lit, err := a.newLiteral(args[h.Source-1], h.Rule)
			if err != nil {
				return err
			}
			lit.Candidates = true
			lit.Slots = slots
			b.parts(Part{Literal: lit})
		case valNull:
			if slots == 0 {
				b.text("ARRAY[NULL::bytea]")
			} else {
				b.text(strings.Repeat("NULL::bytea, ", slots-1) + "NULL::bytea")
			}
		default:
			return refuse(h.Rule.Name(), "the EXECUTE argument for encrypted column %s must be a constant or NULL", h.Rule.Name())
		}
	}
	at, err := a.executeArgsEnd(es)
	if err != nil {
		return err
	}
	return a.addEdit(Edit{Start: at, End: at, Parts: b.done()})
}

// executeArgsEnd is where EXECUTE's argument list closes: the position of
// its ")". The statement has no locations, so its tokens are searched for
// EXECUTE name (.
func (a *analyzer) executeArgsEnd(es *pg_query.ExecuteStmt) (int, error) {
	if _, err := a.tokens(); err != nil {
		return 0, err
	}
	open := -1
	for i := a.tokenFrom(a.cur.start); i+2 < len(a.toks) && int(a.toks[i].Start) < a.cur.end; i++ {
		if a.toks[i].Token == pg_query.Token_EXECUTE && isWordToken(a.toks[i+1]) && a.toks[i+2].Token == pg_query.Token_ASCII_40 {
			open = i + 2
		}
	}
	if open < 0 {
		return 0, errLocate
	}
	j, err := a.skipBalanced(open)
	if err != nil || int(a.tok(j-1).End) > a.cur.end {
		return 0, errLocate
	}
	return int(a.tok(j - 1).Start), nil
}

func (a *analyzer) executeArg(arg *pg_query.Node, pr *ParamRule, sc *scope) (value, error) {
	if pr.Array {
		return plainValue, refuse(pr.Rule.Name(), "EXECUTE cannot pass the array parameter compared with encrypted column %s; bind it with the extended protocol", pr.Rule.Name())
	}
	v, err := a.expr(arg, sc)
	if err != nil {
		return v, err
	}
	switch v.kind {
	case valNull:
		return v, a.dropNullCast(v)
	case valLit:
		if pr.Write {
			a.wrote(pr.Rule)
		}
		return v, a.encryptLiteral(v, pr.Rule, pr.Write, pr.Compared)
	}
	return v, refuse(pr.Rule.Name(), "the EXECUTE argument for encrypted column %s must be a constant or NULL", pr.Rule.Name())
}

// runsExecute reports whether n is an EXECUTE, directly or as the query
// of a CREATE TABLE AS or of a nested EXPLAIN.
func runsExecute(n *pg_query.Node) bool {
	for n != nil {
		switch {
		case n.GetExecuteStmt() != nil:
			return true
		case n.GetCreateTableAsStmt() != nil:
			n = n.GetCreateTableAsStmt().GetQuery()
		case n.GetExplainStmt() != nil:
			n = n.GetExplainStmt().GetQuery()
		default:
			return false
		}
	}
	return false
}

// explain analyzes the explained statement like a direct one; EXPLAIN
// returns a plan, not rows, so there are no outputs.
func (a *analyzer) explain(es *pg_query.ExplainStmt, st *Statement) error {
	st.Kind = KindOther
	// EXECUTE's arguments may be bound for encrypted columns whatever
	// names the text mentions.
	if !a.deep && !runsExecute(es.GetQuery()) {
		return nil
	}
	inner := &Statement{}
	if err := a.nestedStatement(es.GetQuery(), inner, nil); err != nil {
		return err
	}
	st.Writes, st.Searches, st.Copies, st.Orders = inner.Writes, inner.Searches, inner.Copies, inner.Orders
	if inner.Kind == KindDDL {
		st.Kind = KindDDL
	}
	return nil
}

// createTableAs is CREATE TABLE AS / CREATE MATERIALIZED VIEW: a new
// table must not receive ciphertext; a materialized view may, like a view.
func (a *analyzer) createTableAs(c *pg_query.CreateTableAsStmt, st *Statement) error {
	st.Kind = KindDDL
	if !a.deep && c.GetQuery().GetExecuteStmt() == nil {
		return nil
	}
	matview := c.GetObjtype() == pg_query.ObjectType_OBJECT_MATVIEW
	if ex := c.GetQuery().GetExecuteStmt(); ex != nil {
		inner := &Statement{}
		saveStmt := a.stmt
		a.stmt = inner
		err := a.execute(ex, inner)
		a.stmt = saveStmt
		if err != nil {
			return err
		}
		if len(inner.Outputs) > 0 && !matview {
			return refuse(inner.Outputs[0].Name(), "CREATE TABLE AS would copy encrypted column %s into a new table without encryption rules", inner.Outputs[0].Name())
		}
		st.Searches, st.Writes, st.Copies, st.Orders = inner.Searches, inner.Writes, inner.Copies, inner.Orders
		return nil
	}
	sh, err := a.nestedShape(c.GetQuery())
	if err != nil {
		return err
	}
	if matview {
		if err := a.noStoredComparisons("a materialized view"); err != nil {
			return err
		}
		return a.discardShape(sh)
	}
	return a.intoPlain(sh, "CREATE TABLE AS")
}

// nestedShape analyzes a query inside a utility statement.
func (a *analyzer) nestedShape(n *pg_query.Node) (*shape, error) {
	a.nested++
	defer func() { a.nested-- }()
	if n.GetSelectStmt() != nil {
		return a.subquery(n, nil)
	}
	return a.dml(n, nil)
}

func (a *analyzer) createView(v *pg_query.ViewStmt, st *Statement) error {
	st.Kind = KindDDL
	if !a.deep {
		return nil
	}
	sh, err := a.nestedShape(v.GetQuery())
	if err != nil {
		return err
	}
	if rv := v.GetView(); sh.hasEncrypted() && (rv.GetRelpersistence() == "t" || isTempSchema(rv.GetSchemaname())) {
		// It would live in the session's pg_temp_N schema, which the
		// proxy's name resolution does not follow.
		return refuse("", "a temporary view over encrypted columns is not supported")
	}
	if err := a.noStoredComparisons("a view"); err != nil {
		return err
	}
	return a.discardShape(sh)
}

// noStoredComparisons refuses a statement whose SQL PostgreSQL keeps (a
// view) when it compares an encrypted column with a constant: the
// constant's ciphertexts are fixed at creation, so the comparison would
// stop matching after a key rotation (and during a migration it would
// hold the value's plaintext form).
func (a *analyzer) noStoredComparisons(what string) error {
	for _, e := range a.edits {
		if e.Start < a.cur.start || e.End > a.cur.end {
			continue
		}
		lits := []*Literal{e.Literal}
		for _, p := range e.Parts {
			lits = append(lits, p.Literal)
		}
		for _, l := range lits {
			if l != nil && (l.Candidates || l.Compared || l.Bound != nil) {
				return refuse(l.Rule.Name(), "%s cannot compare encrypted column %s with a constant: its ciphertexts would be fixed at creation and stop matching after a key rotation", what, l.Rule.Name())
			}
		}
	}
	// The order of an ordered key's ciphertexts holds within one key
	// version: SQL kept for later could run when there are several.
	if len(a.stmt.Orders) > 0 {
		r := a.stmt.Orders[0]
		return refuse(r.Name(), "%s cannot sort or compare ordered column %s: its ciphertexts sort together only under one key version, which a later rotation would change; sort or compare in the query that uses it", what, r.Name())
	}
	return nil
}

// declareCursor records what FETCH will return.
func (a *analyzer) declareCursor(d *pg_query.DeclareCursorStmt, st *Statement) error {
	st.Kind = KindOther
	if !a.deep {
		return nil
	}
	sh, err := a.nestedShape(d.GetQuery())
	if err != nil {
		return err
	}
	return a.output(sh)
}

// functionBody returns the text of a function's body: the AS strings, or
// for BEGIN ATOMIC / RETURN bodies the whole statement.
func functionBody(f *pg_query.CreateFunctionStmt, stmtText string) string {
	if f.GetSqlBody() != nil {
		return stmtText
	}
	return defStrings(f.GetOptions(), "as")
}

// defStrings concatenates the string arguments of the named options.
func defStrings(opts []*pg_query.Node, name string) string {
	var b strings.Builder
	for _, o := range opts {
		d := o.GetDefElem()
		if d.GetDefname() != name {
			continue
		}
		if s := d.GetArg().GetString_(); s != nil {
			b.WriteString(s.GetSval())
			b.WriteByte('\n')
		}
		for _, it := range d.GetArg().GetList().GetItems() {
			b.WriteString(it.GetString_().GetSval())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// bodyMentions refuses code whose text names an encrypted relation: the
// proxy cannot see what it will do with it.
func (a *analyzer) bodyMentions(body, what string) error {
	if !a.deep {
		return nil
	}
	if name, ok := mentionedEncrypted(body, a.cat); ok {
		return refuse("", "the body of %s mentions encrypted relation %s, which pgcloak cannot check", what, name)
	}
	if hasUnicodeIdent(body) {
		return refuse("", "the body of %s has a U&\"\" identifier, which pgcloak cannot check", what)
	}
	return nil
}

// createIndex accepts indexes on plain columns and plain references to
// deterministic columns (btree, hash), with no expression or predicate
// over encrypted columns.
func (a *analyzer) createIndex(is *pg_query.IndexStmt, st *Statement) error {
	st.Kind = KindOther
	if !a.deep {
		return nil
	}
	it, err := a.rangeVar(is.GetRelation(), &scope{}, false)
	if err != nil || !it.hasEncrypted() {
		return err
	}
	sc := &scope{items: []*item{it}}
	method := strings.ToLower(is.GetAccessMethod())
	for _, p := range is.GetIndexParams() {
		v, err := a.indexColumn(p.GetIndexElem(), sc, "an index")
		if err != nil {
			return err
		}
		if v.kind == valEnc && method != "" && method != "btree" && method != "hash" {
			return needsPlaintext("an index using "+method, v.rule)
		}
	}
	if err := a.noEncryptedRefs(is.GetWhereClause(), sc, "an index predicate"); err != nil {
		return err
	}
	if len(is.GetExcludeOpNames()) > 0 {
		return refuse("", "exclusion constraints on %s, which has encrypted columns, are not supported", it.describe())
	}
	return nil
}

// noEncryptedRefs refuses an expression that reads any encrypted column,
// even harmlessly: it will be evaluated inside PostgreSQL later.
func (a *analyzer) noEncryptedRefs(n *pg_query.Node, sc *scope, what string) error {
	if n == nil {
		return nil
	}
	var err error
	forEachColumnRef(n, func(cr *pg_query.ColumnRef) {
		if err != nil {
			return
		}
		v, e := a.columnRef(cr, sc)
		if e == nil && v.kind == valEnc {
			e = needsPlaintext(what, v.rule)
		}
		err = e
	})
	if err != nil {
		return err
	}
	return a.plain(n, sc, what)
}

// alterTable accepts subcommands that compute nothing over encrypted
// columns and store no plaintext in them.
func (a *analyzer) alterTable(at *pg_query.AlterTableStmt, st *Statement) error {
	st.Kind = KindDDL
	if !a.deep {
		return nil
	}
	it, err := a.rangeVar(at.GetRelation(), &scope{}, false)
	if err != nil {
		return err
	}
	if it.rel == nil && !a.mentions(at.ProtoReflect()) {
		return nil
	}
	sc := &scope{items: []*item{it}}
	for _, c := range at.GetCmds() {
		if err := a.alterCmd(c.GetAlterTableCmd(), it, sc); err != nil {
			return err
		}
	}
	return nil
}

func (a *analyzer) alterCmd(cmd *pg_query.AlterTableCmd, it *item, sc *scope) error {
	if cmd == nil {
		return refuse("", "unsupported ALTER TABLE subcommand")
	}
	rule := it.columnRule(cmd.GetName())
	switch cmd.GetSubtype() {
	case pg_query.AlterTableType_AT_DropColumn, pg_query.AlterTableType_AT_SetNotNull,
		pg_query.AlterTableType_AT_DropNotNull, pg_query.AlterTableType_AT_SetStatistics,
		pg_query.AlterTableType_AT_SetOptions, pg_query.AlterTableType_AT_ResetOptions,
		pg_query.AlterTableType_AT_SetStorage, pg_query.AlterTableType_AT_SetCompression,
		pg_query.AlterTableType_AT_DropConstraint, pg_query.AlterTableType_AT_ValidateConstraint,
		pg_query.AlterTableType_AT_AlterConstraint, pg_query.AlterTableType_AT_ChangeOwner,
		pg_query.AlterTableType_AT_ClusterOn, pg_query.AlterTableType_AT_DropCluster,
		pg_query.AlterTableType_AT_SetLogged, pg_query.AlterTableType_AT_SetUnLogged,
		pg_query.AlterTableType_AT_SetAccessMethod, pg_query.AlterTableType_AT_SetTableSpace,
		pg_query.AlterTableType_AT_SetRelOptions, pg_query.AlterTableType_AT_ResetRelOptions,
		pg_query.AlterTableType_AT_ReplaceRelOptions, pg_query.AlterTableType_AT_EnableTrig,
		pg_query.AlterTableType_AT_EnableAlwaysTrig, pg_query.AlterTableType_AT_EnableReplicaTrig,
		pg_query.AlterTableType_AT_DisableTrig, pg_query.AlterTableType_AT_EnableTrigAll,
		pg_query.AlterTableType_AT_DisableTrigAll, pg_query.AlterTableType_AT_EnableTrigUser,
		pg_query.AlterTableType_AT_DisableTrigUser, pg_query.AlterTableType_AT_EnableRowSecurity,
		pg_query.AlterTableType_AT_DisableRowSecurity, pg_query.AlterTableType_AT_ForceRowSecurity,
		pg_query.AlterTableType_AT_NoForceRowSecurity, pg_query.AlterTableType_AT_ReplicaIdentity,
		pg_query.AlterTableType_AT_DropExpression, pg_query.AlterTableType_AT_GenericOptions:
		return nil
	case pg_query.AlterTableType_AT_ColumnDefault:
		if cmd.GetDef() == nil {
			return nil
		}
		if rule != nil {
			return refuse(rule.Name(), "a default for encrypted column %s would be stored without encryption", rule.Name())
		}
		return a.noEncryptedRefs(cmd.GetDef(), sc, "a column default")
	case pg_query.AlterTableType_AT_AddColumn:
		return a.columnDef(cmd.GetDef().GetColumnDef(), it, sc)
	case pg_query.AlterTableType_AT_AlterColumnType:
		if rule != nil {
			cd := cmd.GetDef().GetColumnDef()
			if t, ok := castTarget(cd.GetTypeName()); ok && t.OID == policy.PGBytea.OID() && len(t.Mods) == 0 && cd.GetRawDefault() == nil {
				// The type it has: what an ORM's schema sync sends for a
				// field declared bytea.
				return nil
			}
			return refuse(rule.Name(), "changing the type of encrypted column %s needs its plaintext inside PostgreSQL; its type in PostgreSQL is bytea (declare it so in ORM models and migrations, e.g. gorm:\"type:bytea\"), and pgcloak encrypt/decrypt converts existing columns", rule.Name())
		}
		return a.noEncryptedRefs(cmd.GetDef().GetColumnDef().GetRawDefault(), sc, "USING")
	case pg_query.AlterTableType_AT_AddConstraint:
		return a.constraint(cmd.GetDef().GetConstraint(), it, sc, "")
	case pg_query.AlterTableType_AT_AddIdentity, pg_query.AlterTableType_AT_SetIdentity,
		pg_query.AlterTableType_AT_DropIdentity:
		if rule != nil {
			return refuse(rule.Name(), "identity on encrypted column %s is not supported", rule.Name())
		}
		return nil
	}
	return refuse("", "ALTER TABLE subcommand %s on %s, which has encrypted columns, is not supported",
		strings.TrimPrefix(cmd.GetSubtype().String(), "AT_"), it.describe())
}

// columnRule is the rule of one of the item's columns, or nil.
func (it *item) columnRule(name string) *policy.ColumnRule {
	if it.rel == nil || name == "" {
		return nil
	}
	return it.rel.Encrypted[name]
}

// columnDef checks ADD COLUMN: no stored or computed plaintext for an
// encrypted column, no expression over encrypted columns.
func (a *analyzer) columnDef(cd *pg_query.ColumnDef, it *item, sc *scope) error {
	if cd == nil {
		return refuse("", "unsupported column definition")
	}
	rule := it.columnRule(cd.GetColname())
	if cd.GetRawDefault() != nil {
		if rule != nil {
			return refuse(rule.Name(), "a default for encrypted column %s would be stored without encryption", rule.Name())
		}
		if err := a.noEncryptedRefs(cd.GetRawDefault(), sc, "a column default"); err != nil {
			return err
		}
	}
	for _, c := range cd.GetConstraints() {
		if err := a.constraint(c.GetConstraint(), it, sc, cd.GetColname()); err != nil {
			return err
		}
	}
	return nil
}

// constraint checks a table or column constraint.
func (a *analyzer) constraint(c *pg_query.Constraint, it *item, sc *scope, column string) error {
	if c == nil {
		return refuse("", "unsupported constraint")
	}
	keys := nodeStrings(c.GetKeys())
	if column != "" {
		keys = append(keys, column)
	}
	switch c.GetContype() {
	case pg_query.ConstrType_CONSTR_NULL, pg_query.ConstrType_CONSTR_NOTNULL,
		pg_query.ConstrType_CONSTR_ATTR_DEFERRABLE, pg_query.ConstrType_CONSTR_ATTR_NOT_DEFERRABLE,
		pg_query.ConstrType_CONSTR_ATTR_DEFERRED, pg_query.ConstrType_CONSTR_ATTR_IMMEDIATE:
		return nil
	case pg_query.ConstrType_CONSTR_PRIMARY, pg_query.ConstrType_CONSTR_UNIQUE:
		for _, k := range keys {
			if r := it.columnRule(k); r != nil && !r.Deterministic() {
				return refuse(r.Name(), "a unique constraint on column %s, encrypted with a randomized key, is not possible", r.Name())
			}
		}
		return a.noEncryptedRefs(c.GetWhereClause(), sc, "a constraint predicate")
	case pg_query.ConstrType_CONSTR_CHECK:
		return a.noEncryptedRefs(c.GetRawExpr(), sc, "a CHECK constraint")
	case pg_query.ConstrType_CONSTR_DEFAULT, pg_query.ConstrType_CONSTR_GENERATED, pg_query.ConstrType_CONSTR_IDENTITY:
		if r := it.columnRule(column); r != nil {
			return refuse(r.Name(), "a default or generated value for encrypted column %s would be stored without encryption", r.Name())
		}
		return a.noEncryptedRefs(c.GetRawExpr(), sc, "a column default")
	case pg_query.ConstrType_CONSTR_FOREIGN:
		keys = append(keys, nodeStrings(c.GetFkAttrs())...)
		for _, k := range keys {
			if r := it.columnRule(k); r != nil {
				return refuse(r.Name(), "a foreign key on encrypted column %s is not supported", r.Name())
			}
		}
		if rel, _ := a.lookupRelation(c.GetPktable().GetSchemaname(), c.GetPktable().GetRelname()); rel != nil {
			for _, k := range nodeStrings(c.GetPkAttrs()) {
				if r := rel.Encrypted[k]; r != nil {
					return refuse(r.Name(), "a foreign key referencing encrypted column %s is not supported", r.Name())
				}
			}
		}
		return nil
	}
	if it.hasEncrypted() {
		return refuse("", "constraint type %s on %s, which has encrypted columns, is not supported",
			strings.TrimPrefix(c.GetContype().String(), "CONSTR_"), it.describe())
	}
	return nil
}

func nodeStrings(ns []*pg_query.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.GetString_().GetSval())
	}
	return out
}

// createTable refuses inheriting from or partitioning a relation with
// encrypted columns: rows of the new table would be rows of the old one
// under a name the policy does not cover.
func (a *analyzer) createTable(cs *pg_query.CreateStmt, st *Statement) error {
	st.Kind = KindDDL
	if !a.deep {
		return nil
	}
	for _, n := range cs.GetInhRelations() {
		rv := n.GetRangeVar()
		if rel, _ := a.lookupRelation(rv.GetSchemaname(), rv.GetRelname()); rel != nil {
			return refuse("", "a table inheriting from or partitioning %s.%s, which has encrypted columns, is not supported", rel.Schema, rel.Name)
		}
	}
	return nil
}

// utility handles every other statement: it passes unless it mentions a
// relation with encrypted columns and is not known to be harmless then.
func (a *analyzer) utility(n *pg_query.Node, st *Statement) error {
	st.Kind = utilityKind(n)
	if !a.deep {
		return nil
	}
	switch n.GetNode().(type) {
	case *pg_query.Node_TruncateStmt, *pg_query.Node_GrantStmt, *pg_query.Node_LockStmt,
		*pg_query.Node_VacuumStmt, *pg_query.Node_CommentStmt, *pg_query.Node_ClusterStmt,
		*pg_query.Node_ReindexStmt, *pg_query.Node_AlterOwnerStmt,
		*pg_query.Node_RefreshMatViewStmt, *pg_query.Node_SecLabelStmt, *pg_query.Node_VariableShowStmt:
		return nil
	}
	return a.refuseIfMentions(n, nodeName(n))
}

func utilityKind(n *pg_query.Node) Kind {
	switch n.GetNode().(type) {
	case *pg_query.Node_CreateSchemaStmt,
		*pg_query.Node_CreateForeignTableStmt, *pg_query.Node_ImportForeignSchemaStmt,
		*pg_query.Node_CreateExtensionStmt, *pg_query.Node_AlterExtensionStmt,
		*pg_query.Node_AlterExtensionContentsStmt, *pg_query.Node_DropOwnedStmt,
		*pg_query.Node_RefreshMatViewStmt, *pg_query.Node_CompositeTypeStmt:
		return KindDDL
	}
	return KindOther
}

// mentions reports whether a tree names a relation with encrypted columns.
func (a *analyzer) mentions(m protoreflect.Message) bool {
	_, ok := a.mentioned(m)
	return ok
}

// mentioned finds a relation with encrypted columns that a name in the tree
// may be: the statements that use it are not pinned (see
// relationsAnywhere).
func (a *analyzer) mentioned(m protoreflect.Message) (*Relation, bool) {
	for _, rv := range rangeVarsIn(m) {
		if rels := a.relationsAnywhere(rv.GetSchemaname(), rv.GetRelname()); len(rels) > 0 {
			return rels[0], true
		}
	}
	return nil, false
}

func (a *analyzer) refuseIfMentions(n *pg_query.Node, what string) error {
	if !a.deep {
		return nil
	}
	m := innerMessage(n)
	if m == nil {
		return nil
	}
	if rel, ok := a.mentioned(m); ok {
		return refuse("", "%s on %s.%s, which has encrypted columns, is not supported", what, rel.Schema, rel.Name)
	}
	return nil
}

// checkAllSeen is a safety net: a column reference the analysis did not
// resolve, named like an encrypted column of a relation this statement
// touches, means some clause was skipped. Refuse rather than trust it.
func (a *analyzer) checkAllSeen(n *pg_query.Node) error {
	if !a.touched || n == nil {
		return nil
	}
	names := map[string]bool{}
	for rel := range a.relCols {
		for c := range rel.Encrypted {
			names[c] = true
		}
	}
	var err error
	forEachColumnRef(n, func(cr *pg_query.ColumnRef) {
		if err != nil || a.seen[cr] {
			return
		}
		f := cr.GetFields()
		if len(f) > 0 && names[f[len(f)-1].GetString_().GetSval()] {
			err = refuse("", "statement could not be fully analyzed: a reference to an encrypted column was not checked")
		}
	})
	return err
}
