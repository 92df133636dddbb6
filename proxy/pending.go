package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// preparedStmt is a prepared statement as the proxy planned it: made by
// protocol Parse, or standing for one made by SQL PREPARE (prep), as the two
// share PostgreSQL's namespace.
type preparedStmt struct {
	name string
	plan *sqlrewrite.Plan
	// fields are PostgreSQL's description of the result (bytea for
	// encrypted columns), once a Describe has answered (described); nil
	// when the statement returns no rows.
	fields    []pgproto3.FieldDescription
	described bool
	// env is what the plan's analysis depended on (frontend only).
	env planEnv
	// prep is the SQL-level prepared statement this one stands for, if it
	// was made by PREPARE rather than Parse.
	prep *sqlrewrite.Prepared
	// declared are the parameter types the Parse declared (0: none),
	// which a ParameterDescription gives back as they were.
	declared []uint32
	// keys are the key versions of the constants in its SQL.
	keys keyVersions
	// stored is storedFormats' last answer, which depends only on the
	// description, the catalog snapshot and the client's codes; a new
	// description clears it (session.mu).
	stored storedFormatsMemo
}

// storedFormatsMemo is storedFormats' answer for one catalog snapshot and
// one list of client result formats.
type storedFormatsMemo struct {
	cat            *catalog
	client, answer []int16
}

// statement is the plan's single statement (the extended protocol allows
// one per Parse), or nil for an empty query.
func (p *preparedStmt) statement() *sqlrewrite.Statement {
	if p == nil || p.plan == nil || len(p.plan.Statements) == 0 {
		return nil
	}
	return p.plan.Statements[0]
}

// portal is a bound statement.
type portal struct {
	name          string
	stmt          *preparedStmt
	resultFormats []int16 // the client's
	// stored are the result formats the Bind sent the server instead, one
	// per column, when the proxy asked for encrypted columns in binary
	// (see storedFormats); nil when it sent the client's.
	stored    []int16
	fields    []pgproto3.FieldDescription // from a portal Describe
	described bool
}

// resultFields returns the portal's columns with their wire formats.
func (p *portal) resultFields() ([]pgproto3.FieldDescription, bool) {
	if p.described {
		return p.fields, true
	}
	if p.stmt == nil || !p.stmt.described {
		return nil, false
	}
	fields := make([]pgproto3.FieldDescription, len(p.stmt.fields))
	copy(fields, p.stmt.fields)
	for i := range fields {
		fields[i].Format = formatFor(p.resultFormats, i)
	}
	return fields, true
}

// formatFor applies the protocol's rule for format-code lists: none means
// text, one applies to all, otherwise one each.
func formatFor(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	default:
		if i < len(codes) {
			return codes[i]
		}
		return 0
	}
}

// pending is one request sent upstream, booked in the session's pipeline
// (see proxy/internal/pipeline). Its Data is, by kind: *resultFlow for a
// Query or an Execute, *internalQuery for a batch of the proxy's own.
type pending = pipeline.Request[*preparedStmt, *portal]

// books is the session's pipeline of requests, statements and portals.
type books = pipeline.Pipeline[*preparedStmt, *portal]

func newBooks() *books { return pipeline.New[*preparedStmt, *portal]() }

// resultFlow is the result of a Query or an Execute on its way to the
// client.
type resultFlow struct {
	plan    *sqlrewrite.Plan // Query
	stmtIdx int              // Query: statement whose result is flowing
	// shape is the result columns being decrypted; shapeKnown (Execute)
	// that it was worked out (nil if plain).
	shape      *resultShape
	shapeKnown bool
	rows       int64    // rows decrypted through shape, for accounting
	out        *copyOut // COPY TO STDOUT being decrypted
}

// flowOf is p's result flow, or nil when p returns no result.
func flowOf(p *pending) *resultFlow {
	f, _ := p.Data.(*resultFlow)
	return f
}

// statementOf is the sqlrewrite statement whose result is flowing for p,
// if any.
func statementOf(p *pending) *sqlrewrite.Statement {
	switch p.Kind {
	case pipeline.Query:
		if f := flowOf(p); f != nil && f.plan != nil && f.stmtIdx < len(f.plan.Statements) {
			return f.plan.Statements[f.stmtIdx]
		}
	case pipeline.Execute:
		if p.Portal != nil {
			return p.Portal.stmt.statement()
		}
	}
	return nil
}

// describedStatement is the statement a Describe is about.
func describedStatement(p *pending) *sqlrewrite.Statement {
	if p.Target == wire.TargetStatement {
		return p.Stmt.statement()
	}
	if p.Portal != nil {
		return p.Portal.stmt.statement()
	}
	return nil
}

// pushLocked books a request; the caller holds the upstream writer's lock
// and sends the request right after, so the books' order is wire order.
func (ss *session) pushLocked(p *pending) {
	ss.mu.Lock()
	ss.pl.Push(p)
	ss.mu.Unlock()
}

// send books p and writes its messages upstream atomically with respect
// to the other loop's injected requests.
func (ss *session) send(p *pending, msgs ...encoder) error {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	if p != nil {
		ss.pushLocked(p)
	}
	return ss.uw.sendLocked(msgs...)
}

// sendRaw books p and forwards a message unchanged.
func (ss *session) sendRaw(p *pending, typ wire.ClientType, body []byte) error {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	if p != nil {
		ss.pushLocked(p)
	}
	return ss.uw.rawLocked(typ, body)
}

// complete takes p, answered in full, out of the books.
func (ss *session) complete(p *pending) {
	ss.mu.Lock()
	ss.pl.Complete(p)
	ss.mu.Unlock()
}

// releaseWaiters wakes anything waiting on a request that will never
// complete because the session ended.
func (ss *session) releaseWaiters() {
	ss.mu.Lock()
	q := ss.pl.End()
	ss.mu.Unlock()
	for _, p := range q {
		if iq, ok := p.Data.(*internalQuery); ok && !iq.finished() {
			iq.fail(errSessionClosed)
			close(iq.done)
		}
	}
}

// paramValue is the client's value of parameter i (from 0) of the
// statement: its declared type and the casts the SQL writes on it say
// what PostgreSQL would take it as.
func (p *preparedStmt) paramValue(i int, format int16, raw []byte) clientValue {
	var oid uint32
	if i < len(p.declared) {
		oid = p.declared[i]
	}
	var casts []sqlrewrite.Cast
	if i < len(p.plan.Params) && p.plan.Params[i] != nil {
		casts = p.plan.Params[i].Casts
	}
	return clientValue{src: sourceOf(oid, casts), format: format, raw: raw}
}

// checkParamTypes gives the error PostgreSQL would give when preparing
// the statement for a parameter whose type (declared, or given by a
// cast) cannot become its encrypted column's type: no assignment cast
// where it is stored (42804), no operator where it is compared (42883).
func (p *preparedStmt) checkParamTypes() error {
	for i, pr := range p.plan.Params {
		if pr == nil || pr.Source != 0 {
			continue
		}
		if pr.Array {
			// An array compared element by element: its element type
			// must compare with the column's.
			src, _, err := p.arrayElemSource(i, pr)
			if err != nil {
				return err
			}
			if err := keymap.Convertible(src, pr.Rule.Type, keymap.UseCompare); err != nil {
				return columnValueError(pr.Rule, err)
			}
			continue
		}
		src := p.paramValue(i, 0, nil).src
		if pr.Write {
			if err := keymap.Convertible(src, pr.Rule.Type, keymap.UseStore); err != nil {
				return columnValueError(pr.Rule, err)
			}
		}
		if !pr.Write || p.plan.HasHidden(i+1) {
			if err := keymap.Convertible(src, pr.Rule.Type, keymap.UseCompare); err != nil {
				return columnValueError(pr.Rule, err)
			}
		}
	}
	return nil
}

// describedType is the type a ParameterDescription gives parameter i
// (from 0) bound for an encrypted column: the one the client declared
// (drivers check it stayed), else the innermost cast's, else the
// column's logical type — never the bytea the proxy declared upstream.
// For an array parameter (sqlrewrite.ParamRule.Array) it is the array of
// the innermost cast's type or of the column's.
func (p *preparedStmt) describedType(i int, pr *sqlrewrite.ParamRule) uint32 {
	var t uint32
	switch {
	case i < len(p.declared) && p.declared[i] != 0 && !(pr.Array && p.declared[i] == pgtype.UnknownOID):
		return p.declared[i]
	case len(pr.Casts) > 0:
		t = pr.Casts[0].OID
	default:
		t = pr.Rule.Type.OID()
	}
	if pr.Array {
		return arrayOIDs[t]
	}
	return t
}
