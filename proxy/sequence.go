package proxy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// PostgreSQL runs each statement of a query string with the role,
// search_path and prepared statements the earlier ones left, and analyses
// a prepared statement again when search_path (or a relation it uses)
// changed since it was prepared. The proxy's analysis and grant checks
// must follow, or a name could resolve to a plain table for the proxy and
// to an encrypted one for PostgreSQL (and receive plaintext), or a write
// be checked against a role that is no longer current.

// planEnv is what the analysis of a statement depended on: the catalog
// snapshot and the effective search path.
type planEnv struct {
	cat  sqlrewrite.Catalog
	path []string
	// versions counts an ordered key's enabled versions (see
	// sqlrewrite.Env.OrderVersions); key state, so not part of same: a
	// plan's versions are checked at every Bind (checkOrderVersions).
	versions versionCounter
}

// versionCounter is the session, as planEnv holds it: an interface, so
// that making a planEnv at every Bind allocates nothing.
type versionCounter interface {
	orderVersions(*policy.ColumnRule) int
}

func (e planEnv) same(o planEnv) bool {
	return e.cat == o.cat && slices.Equal(e.path, o.path)
}

func (e planEnv) sqlEnv(prepared func(string) (*sqlrewrite.Prepared, bool)) *sqlrewrite.Env {
	env := &sqlrewrite.Env{Catalog: e.cat, SearchPath: e.path, Prepared: prepared}
	if e.versions != nil {
		env.OrderVersions = e.versions.orderVersions
	}
	return env
}

// planEnvLocked is the session's environment for analysis now.
//
// Temporary tables are deliberately not part of it: believing in a temp
// table that is gone (rolled back, ON COMMIT DROP, dropped by a function)
// would let a name PostgreSQL resolves to an encrypted table be treated as
// plain. A temp table shadowing an encrypted one is treated as encrypted
// (and pinned: the statement then uses the encrypted table).
//
// When the catalog is not known (catalogUnknownLocked), the environment's
// catalog refuses every relation it resolves; being new each time, it is
// never the same as a statement's earlier environment.
func (ss *session) planEnvLocked() planEnv {
	cur := ss.state.current
	env := planEnv{cat: ss.cat, path: expandSearchPath(cur.searchPath, cur.currentRole()), versions: ss}
	if refusal := ss.catalogUnknownLocked(); refusal != nil {
		env.cat = &afterDDL{base: ss.cat, path: env.path, refusal: refusal}
	}
	return env
}

func (ss *session) planEnvNow() planEnv {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.planEnvLocked()
}

// prepSource is where an SQL-level prepared statement came from: its
// PREPARE text and the environment it was analysed in.
type prepSource struct {
	text string
	env  planEnv
	keys keyVersions // of the constants in the SQL sent for it
}

// afterDDL stands for a catalog the proxy cannot know: after DDL earlier
// in the same query string, which has not run yet, or after DDL when the
// catalog could not be reloaded. Every name may now be a relation with
// encrypted columns. Resolving one is reported to resolved (when set), and
// the statement refused with refusal (fail closed); statements that name
// no relation pass.
type afterDDL struct {
	base     sqlrewrite.Catalog
	path     []string
	resolved func()
	refusal  error
}

func (c *afterDDL) SchemasWith(name string) []string { c.touch(); return c.path }

func (c *afterDDL) Relation(schema, name string) *sqlrewrite.Relation {
	c.touch()
	return c.base.Relation(schema, name)
}

func (c *afterDDL) EncryptedName(string) bool { return true }

func (c *afterDDL) touch() {
	if c.resolved != nil {
		c.resolved()
	}
}

// errDDLInString refuses a statement after DDL in the same string.
var errDDLInString = newSQLError("0A000", "a statement after DDL in the same query string uses a relation whose definition the proxy cannot know yet; send it separately")

// analyzeIn analyses text in env. When env's catalog is not known, a
// statement that resolves any relation is refused.
func analyzeIn(text string, env planEnv, prepared func(string) (*sqlrewrite.Prepared, bool)) (*sqlrewrite.Plan, error) {
	c, unknown := env.cat.(*afterDDL)
	if !unknown {
		return sqlrewrite.Analyze(text, env.sqlEnv(prepared))
	}
	probe := *c
	resolved := false
	probe.resolved = func() { resolved = true }
	plan, err := sqlrewrite.Analyze(text, planEnv{cat: &probe, path: env.path, versions: env.versions}.sqlEnv(prepared))
	if resolved {
		return nil, c.refusal
	}
	return plan, err
}

// querySim follows the session state through the statements of one query
// string while sqlrewrite analyses them (Env.Next), recording the role and
// environment each statement runs in.
type querySim struct {
	ss       *session
	sql      string
	state    sessionState
	cat      sqlrewrite.Catalog
	failedTx bool
	// overlay overlays the session's prepared statements with the
	// string's own PREPARE (nil: DEALLOCATE); cleared drops the session's
	// (DEALLOCATE ALL, DISCARD ALL).
	overlay map[string]*simPrepared
	cleared bool
	// Per statement, in order.
	roles   []grantee
	envs    []planEnv
	touched []bool // resolved a relation after DDL in the string
	// executes records the prepared statements EXECUTE looked up.
	executes []simExecute
}

type simPrepared struct {
	prep *sqlrewrite.Prepared
	src  prepSource
}

type simExecute struct {
	stmt int
	name string
	p    *simPrepared
}

// newQuerySim snapshots the session for analysing sql. The caller
// refreshed the catalog first when it was due.
func (ss *session) newQuerySim(sql string) *querySim {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	env := ss.planEnvLocked()
	sim := &querySim{ss: ss, sql: sql, state: *ss.state, cat: env.cat, failedTx: ss.pl.Status() == wire.TxFailed, overlay: map[string]*simPrepared{}}
	if c, ok := env.cat.(*afterDDL); ok {
		c.resolved = sim.touch
	}
	sim.state.savepoints = slices.Clone(sim.state.savepoints)
	sim.mark()
	return sim
}

func (sim *querySim) mark() {
	cur := sim.state.current
	sim.roles = append(sim.roles, granteeOf(cur))
	sim.envs = append(sim.envs, planEnv{cat: sim.cat, path: expandSearchPath(cur.searchPath, cur.currentRole()), versions: sim.ss})
	sim.touched = append(sim.touched, false)
}

func (sim *querySim) touch() { sim.touched[len(sim.touched)-1] = true }

// env is the Env of the statement being analysed.
func (sim *querySim) env() *sqlrewrite.Env {
	env := sim.envs[len(sim.envs)-1].sqlEnv(sim.lookup)
	env.Next = sim.next
	env.Limits.MaxStatementBytes = sim.ss.srv.policy().limits.StatementBytesLimit()
	return env
}

func (sim *querySim) next(st *sqlrewrite.Statement) *sqlrewrite.Env {
	sim.step(st)
	sim.mark()
	return sim.env()
}

// lookup finds a prepared statement for EXECUTE, as of the statement being
// analysed: one of the string's own PREPAREs, or the session's, made by
// SQL PREPARE or by protocol Parse (one namespace in PostgreSQL).
func (sim *querySim) lookup(name string) (*sqlrewrite.Prepared, bool) {
	p, ok := sim.overlay[name]
	if !ok && !sim.cleared {
		ss := sim.ss
		// As for Bind: a Parse or Close of name in an earlier batch
		// still in flight is undone should that batch fail, and the
		// EXECUTE must be planned by the statement the server keeps.
		// (Should the session end meanwhile, the lookup finds what it
		// finds; nothing more is sent.)
		_ = ss.settleStatement(name)
		ss.mu.Lock()
		p = ss.sessionPreparedLocked(name)
		ss.mu.Unlock()
	}
	sim.executes = append(sim.executes, simExecute{stmt: len(sim.envs) - 1, name: name, p: p})
	if p == nil {
		return nil, false
	}
	return p.prep, true
}

// sessionPreparedLocked is the session's prepared statement name as EXECUTE
// sees it, with where it came from.
func (ss *session) sessionPreparedLocked(name string) *simPrepared {
	st := ss.pl.Statement(name)
	switch {
	case st == nil:
		return nil
	case st.prep != nil:
		p := &simPrepared{prep: st.prep}
		if src, ok := ss.prepSrc[st.prep]; ok {
			p.src = src
		}
		return p
	case name == "" || st.plan == nil:
		return nil
	}
	return &simPrepared{
		prep: &sqlrewrite.Prepared{Name: name, Params: st.plan.Params, ClientParams: st.plan.ClientParams, Statement: st.statement()},
		src:  prepSource{text: st.plan.SQL, env: st.env},
	}
}

// step applies what a statement does to the session state, assuming it
// succeeds (when it fails, PostgreSQL skips the rest of the string).
func (sim *querySim) step(st *sqlrewrite.Statement) {
	// The tag a transaction's end will have: a failed transaction rolls
	// back whatever ends it.
	tag := "COMMIT"
	if sim.failedTx {
		tag = "ROLLBACK"
	}
	applyStatement(sim, st, tag)
	switch st.Tx {
	case sqlrewrite.TxCommit, sqlrewrite.TxRollback, sqlrewrite.TxRollbackTo, sqlrewrite.TxPrepare:
		sim.failedTx = false
	}
	if c, ok := sim.cat.(*afterDDL); ok {
		c.path = expandSearchPath(sim.state.current.searchPath, sim.state.current.currentRole())
	}
}

// The querySim is the stateTarget of the statements being planned.

func (sim *querySim) settings() *sessionState { return &sim.state }

func (sim *querySim) prepared(st *sqlrewrite.Statement) {
	sim.overlay[st.Prepare.Name] = &simPrepared{prep: st.Prepare, src: prepSource{text: sim.sql[st.Start:st.End], env: sim.envs[len(sim.envs)-1]}}
}

func (sim *querySim) deallocated(name string) {
	if name == "" {
		sim.overlay, sim.cleared = map[string]*simPrepared{}, true
		return
	}
	sim.overlay[name] = nil
}

func (sim *querySim) discarded() { sim.overlay, sim.cleared = map[string]*simPrepared{}, true }

// ddl: the statements after it use a catalog the proxy cannot know yet.
func (sim *querySim) ddl(*sqlrewrite.Statement) {
	if _, ok := sim.cat.(*afterDDL); !ok {
		sim.cat = &afterDDL{base: sim.cat, resolved: sim.touch, refusal: errDDLInString}
	}
}

func (sim *querySim) unlistened() {}

// transactionControl: the prediction follows no portals.
func (sim *querySim) transactionControl(*sqlrewrite.Statement) {}

// check authorizes each statement of plan for the role it runs as, refuses
// statements that resolved relations after DDL in the same string, and
// EXECUTE of a statement prepared in another environment whose analysis
// would now differ. It records where the string's PREPARE statements come
// from.
func (sim *querySim) check(plan *sqlrewrite.Plan) error {
	ss := sim.ss
	for i, st := range plan.Statements {
		if i < len(sim.touched) && sim.touched[i] {
			if c, ok := sim.envs[i].cat.(*afterDDL); ok && c.refusal != nil {
				return c.refusal
			}
			return errDDLInString
		}
		if err := ss.authorizeAs(sim.roles[min(i, len(sim.roles)-1)], []*sqlrewrite.Statement{st}); err != nil {
			return err
		}
	}
	for _, ex := range sim.executes {
		if ex.p == nil {
			continue
		}
		if ex.p.src.text == "" {
			// Without its source the proxy cannot tell whether
			// PostgreSQL would now analyse it differently.
			return stalePrepared(ex.name)
		}
		if err := ex.p.src.stillValid(ex.name, sim.envs[ex.stmt]); err != nil {
			return err
		}
		if err := ss.checkKeyVersions(ex.name, ex.p.src.keys); err != nil {
			return err
		}
	}
	if err := ss.checkOrderVersions("", plan); err != nil {
		return err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	// Pruned before this string's own are recorded: they are not
	// prepared yet (the server confirms them later), and a statement
	// without its source would run unchecked.
	if ss.prepSrc == nil || len(ss.prepSrc) > 2*ss.pl.NumStatements()+64 {
		ss.prunePrepSrcLocked()
	}
	for i, st := range plan.Statements {
		if st.Kind == sqlrewrite.KindPrepare && st.Prepare != nil {
			ss.prepSrc[st.Prepare] = prepSource{text: plan.SQL[st.Start:st.End], env: sim.envs[min(i, len(sim.envs)-1)]}
		}
	}
	return nil
}

// prunePrepSrcLocked forgets the sources of prepared statements that are
// gone (or whose PREPARE failed). It keeps those of the PREPAREs parsed
// by the protocol (not run yet), and those of a query string in flight,
// which the frontend waits for (a PREPARE holds a barrier) before it plans
// again.
func (ss *session) prunePrepSrcLocked() {
	keep := map[*sqlrewrite.Prepared]prepSource{}
	for _, st := range ss.pl.Statements() {
		for _, prep := range []*sqlrewrite.Prepared{st.prep, preparedBy(st)} {
			if src, ok := ss.prepSrc[prep]; ok && prep != nil {
				keep[prep] = src
			}
		}
	}
	ss.prepSrc = keep
}

// preparedBy is the SQL-level statement that running st (a protocol
// statement whose SQL is a PREPARE) makes, if any.
func preparedBy(st *preparedStmt) *sqlrewrite.Prepared {
	if s := st.statement(); s != nil && s.Kind == sqlrewrite.KindPrepare {
		return s.Prepare
	}
	return nil
}

// stillValid re-analyses a PREPARE in env, which PostgreSQL will use for
// the statement, and refuses when the proxy's plan for it would differ.
func (src prepSource) stillValid(name string, env planEnv) error {
	if src.env.same(env) {
		return nil
	}
	then, err := analyzeIn(src.text, src.env, nil)
	if err != nil {
		return stalePrepared(name)
	}
	now, err := analyzeIn(src.text, env, nil)
	if err != nil {
		return err
	}
	if planSignature(then) != planSignature(now) {
		return stalePrepared(name)
	}
	return nil
}

func stalePrepared(name string) error {
	return newSQLError("0A000", "prepared statement %q was prepared under another search_path, catalog or policy, and PostgreSQL would now run it on different columns; prepare it again", name)
}

// replanned checks a prepared statement before a Bind: when the
// environment changed since its Parse (or PREPARE), PostgreSQL analyses it
// again, so the proxy does too, and refuses it when its plan would differ.
// An unchanged environment costs a comparison.
func (ss *session) replanned(st *preparedStmt) error {
	ss.refreshCatalogIfStale()
	ss.mu.Lock()
	env := ss.planEnvLocked()
	src, fromSQL := ss.prepSrc[st.prep]
	ss.mu.Unlock()
	if st.prep != nil {
		// Made by SQL PREPARE: check its source, which the proxy
		// keeps for every statement it saw prepared.
		if !fromSQL {
			return stalePrepared(st.name)
		}
		if err := ss.checkKeyVersions(st.name, src.keys); err != nil {
			return err
		}
		return src.stillValid(st.name, env)
	}
	if err := ss.checkKeyVersions(st.name, st.keys); err != nil {
		return err
	}
	if err := ss.checkOrderVersions(st.name, st.plan); err != nil {
		return err
	}
	if st.env.cat == nil || st.env.same(env) {
		return nil
	}
	now, err := analyzeIn(st.plan.SQL, env, ss.newQuerySim(st.plan.SQL).lookup)
	if err != nil {
		return err
	}
	now.SetClientParams(len(st.declared))
	if planSignature(now) != planSignature(st.plan) {
		return stalePrepared(st.name)
	}
	st.env = env
	return nil
}

// planSignature sums up what a plan makes the proxy do: the splices (and
// the column rules literals are encrypted under), the parameters'
// rules, and the columns each statement writes, searches and returns.
func planSignature(p *sqlrewrite.Plan) string {
	var b strings.Builder
	literal := func(l *sqlrewrite.Literal) {
		if l != nil {
			fmt.Fprintf(&b, "l%+v%q%t%t%d%t%+v%v", *l.Rule, l.Value, l.Write, l.Candidates, l.Slots, l.Array, l.Source, l.Bound)
		}
	}
	for _, e := range p.Edits {
		fmt.Fprintf(&b, "e%d-%d%q", e.Start, e.End, e.Text)
		literal(e.Literal)
		for _, part := range e.Parts {
			fmt.Fprintf(&b, "(%q%d", part.Text, part.Hidden)
			literal(part.Literal)
			b.WriteByte(')')
		}
		b.WriteByte(';')
	}
	params := func(ps []*sqlrewrite.ParamRule, client int) {
		fmt.Fprintf(&b, "c%d;", client)
		for i, pr := range ps {
			if pr != nil {
				fmt.Fprintf(&b, "p%d%+v%t%d%t%d%t%v%t;", i, *pr.Rule, pr.Write, pr.Source, pr.Candidates, pr.Slot, pr.Array, pr.Bound, pr.BoundsOnly)
			}
		}
	}
	var stmt func(st *sqlrewrite.Statement)
	stmt = func(st *sqlrewrite.Statement) {
		if st == nil {
			return
		}
		fmt.Fprintf(&b, "s%d", st.Kind)
		for _, rules := range [][]*policy.ColumnRule{st.Writes, st.Searches, st.Outputs, st.Orders} {
			b.WriteByte('[')
			for _, r := range rules {
				fmt.Fprintf(&b, "%+v;", *r)
			}
			b.WriteByte(']')
		}
		if st.Copy != nil {
			for _, r := range st.Copy.Rules {
				if r != nil {
					fmt.Fprintf(&b, "c%+v;", *r)
				}
			}
		}
		if st.Prepare != nil {
			params(st.Prepare.Params, st.Prepare.ClientParams)
			stmt(st.Prepare.Statement)
		}
	}
	params(p.Params, p.ClientParams)
	for _, st := range p.Statements {
		stmt(st)
	}
	return b.String()
}

// positionalRule is the rule of result column i when PostgreSQL reports no
// column of origin for it (a set operation's output) but the analysis
// knows it carries a ciphertext.
func positionalRule(st *sqlrewrite.Statement, fields []pgproto3.FieldDescription, i int) *policy.ColumnRule {
	if st == nil || len(st.Columns) != len(fields) {
		return nil
	}
	f := fields[i]
	if f.TableOID != 0 || f.DataTypeOID != byteaOID {
		return nil
	}
	return st.Columns[i]
}
