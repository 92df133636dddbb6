package proxy

import (
	"sync"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// preparedStmt is a protocol-level prepared statement as the proxy planned
// it.
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
	resultFormats []int16
	fields        []pgproto3.FieldDescription // from a portal Describe
	described     bool
	// epoch counts the requests ending in ReadyForQuery sent before the
	// Bind; the portal dies with the transaction those requests end.
	epoch uint64
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

type pendingKind uint8

const (
	pendQuery          pendingKind = iota // simple Query, until ReadyForQuery
	pendParse                             // ParseComplete
	pendBind                              // BindComplete
	pendDescribe                          // [ParameterDescription] RowDescription | NoData
	pendHiddenDescribe                    // a Describe the proxy added; swallowed
	pendExecute                           // rows, then a completion
	pendClose                             // CloseComplete
	pendSync                              // ReadyForQuery
	pendRefused                           // an error the proxy caused on purpose
	pendInternal                          // a batch of the proxy's own, up to its ReadyForQuery
	pendFunctionCall                      // FunctionCallResponse, ReadyForQuery
)

// pending is one client request whose response the backend loop awaits, in
// the order the requests went upstream.
type pending struct {
	kind pendingKind

	plan    *sqlrewrite.Plan // pendQuery
	stmtIdx int              // pendQuery: statement whose result is flowing

	stmt    *preparedStmt // pendParse, pendDescribe of a statement, pendExecute
	created bool          // pendParse, pendBind: the request added stmt or portal to its map
	// prevStmt, prevPrepared and prevPortal are what a Parse or Bind
	// replaced (the unnamed one) or a Close removed, restored when the
	// server skips the request.
	prevStmt     *preparedStmt
	prevPrepared *sqlrewrite.Prepared
	prevPortal   *portal
	name         string      // pendClose: the object's name
	portal       *portal     // pendBind, pendDescribe of a portal, pendHiddenDescribe, pendExecute
	object       wire.Target // pendDescribe, pendClose

	// copyReq (pendSync) is the request whose COPY FROM STDIN the Sync
	// was sent during, if any; copyInStarted marks a request the server
	// answered with CopyInResponse. The server ignores a Sync sent in
	// copy-in mode.
	copyReq       *pending
	copyInStarted bool
	// copyIn, when set, is closed at the request's first CopyInResponse,
	// for a frontend waiting on the request's barrier.
	copyIn chan struct{}

	// err replaces the server's error (pendRefused, or a COPY the proxy
	// failed); simple marks a refusal that stands for a request ending
	// at ReadyForQuery (a simple Query, a FunctionCall).
	err    error
	simple bool

	iq *internalQuery

	// discard drops this request's responses instead of forwarding them,
	// after the proxy already reported an error for it.
	discard bool

	// barrier, when set, is closed once the request completes so the
	// frontend loop can wait for session state to settle. It is set
	// before the request is queued (or under ss.mu) and never cleared:
	// the frontend reads it while the backend releases the request.
	barrier  chan struct{}
	released sync.Once

	shape      *resultShape // result columns being decrypted
	shapeKnown bool         // pendExecute: shape worked out (nil if plain)
	out        *copyOut     // COPY TO STDOUT being decrypted
}

// endsWithReady reports whether the server answers the request with a
// ReadyForQuery.
func (p *pending) endsWithReady() bool {
	switch p.kind {
	case pendQuery, pendSync, pendInternal, pendFunctionCall:
		return true
	case pendRefused:
		return p.simple
	}
	return false
}

// extended reports whether the request belongs to the extended protocol,
// where an error makes the server skip to the next Sync.
func (p *pending) extended() bool {
	switch p.kind {
	case pendParse, pendBind, pendDescribe, pendHiddenDescribe, pendExecute, pendClose:
		return true
	case pendRefused:
		return !p.simple
	}
	return false
}

// statement is the sqlrewrite statement whose result is flowing, if any.
func (p *pending) statement() *sqlrewrite.Statement {
	switch p.kind {
	case pendQuery:
		if p.plan != nil && p.stmtIdx < len(p.plan.Statements) {
			return p.plan.Statements[p.stmtIdx]
		}
	case pendExecute:
		if p.portal != nil {
			return p.portal.stmt.statement()
		}
	}
	return nil
}

// release wakes whoever waits for the request; safe to call more than
// once.
func (p *pending) release() {
	p.released.Do(func() {
		if p.barrier != nil {
			close(p.barrier)
		}
	})
}

// pushLocked queues a request; the caller holds the upstream writer's lock
// and sends the request right after, so queue order is wire order.
func (ss *session) pushLocked(p *pending) {
	ss.mu.Lock()
	if p.kind == pendSync && p.copyReq != nil && p.copyReq.copyInStarted {
		// Swallowed by the server's COPY: nothing will answer it.
		ss.mu.Unlock()
		p.release()
		return
	}
	if ss.skipping && p.kind != pendSync {
		// The server ignores the request: nothing will answer it.
		ss.undoLocked(p)
		ss.mu.Unlock()
		p.release()
		return
	}
	switch {
	case p.kind == pendSync:
		ss.extOpen, ss.skipping = false, false
	case p.extended():
		ss.extOpen = true
	}
	ss.queue = append(ss.queue, p)
	if p.endsWithReady() {
		ss.rfqSent++
	}
	ss.mu.Unlock()
}

// send queues p and writes its messages upstream atomically with respect
// to the other loop's injected requests.
func (ss *session) send(p *pending, msgs ...encoder) error {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	if p != nil {
		ss.pushLocked(p)
	}
	return ss.uw.sendLocked(msgs...)
}

// sendRaw queues p and forwards a message unchanged.
func (ss *session) sendRaw(p *pending, typ wire.ClientType, body []byte) error {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	if p != nil {
		ss.pushLocked(p)
	}
	return ss.uw.rawLocked(typ, body)
}

// undoLocked reverts what the frontend recorded for a Parse, Bind or Close
// the server skipped after an error, so the proxy's statements and portals
// stay the server's (a stale plan would leave a later Bind's parameters
// unencrypted, a stale portal a result undecrypted). Undo newest first.
func (ss *session) undoLocked(p *pending) {
	switch p.kind {
	case pendParse:
		if p.created && ss.stmts[p.stmt.name] == p.stmt {
			if p.prevStmt != nil {
				ss.stmts[p.stmt.name] = p.prevStmt
			} else {
				delete(ss.stmts, p.stmt.name)
			}
		}
	case pendBind:
		if p.created && p.portal != nil && ss.portals[p.portal.name] == p.portal {
			if p.prevPortal != nil {
				ss.portals[p.portal.name] = p.prevPortal
			} else {
				delete(ss.portals, p.portal.name)
			}
		}
	case pendClose:
		ss.undoCloseLocked(p)
	}
}

func (ss *session) undoCloseLocked(p *pending) {
	if p.object != wire.TargetStatement {
		if p.prevPortal != nil && ss.portals[p.name] == nil {
			ss.portals[p.name] = p.prevPortal
		}
		return
	}
	if p.prevStmt != nil && ss.stmts[p.name] == nil {
		ss.stmts[p.name] = p.prevStmt
	}
	if p.prevPrepared != nil && ss.sqlPrepared[p.name] == nil {
		ss.sqlPrepared[p.name] = p.prevPrepared
	}
}

// failedLocked forgets what a Parse or Bind the server rejected recorded:
// a named statement or portal does not exist, and PostgreSQL drops the
// unnamed statement before parsing; an unnamed portal that failed to bind
// is unusable whether or not the server dropped the previous one.
func (ss *session) failedLocked(p *pending) {
	switch {
	case p.kind == pendParse && p.created && ss.stmts[p.stmt.name] == p.stmt:
		delete(ss.stmts, p.stmt.name)
	case p.kind == pendBind && p.created && p.portal != nil && ss.portals[p.portal.name] == p.portal:
		delete(ss.portals, p.portal.name)
	}
}

func (ss *session) head() *pending {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.queue) == 0 {
		return nil
	}
	return ss.queue[0]
}

func (ss *session) pop() {
	ss.mu.Lock()
	p := ss.queue[0]
	ss.queue[0] = nil
	ss.queue = ss.queue[1:]
	ss.mu.Unlock()
	p.release()
}

// releaseWaiters wakes anything waiting on a request that will never
// complete because the session ended.
func (ss *session) releaseWaiters() {
	ss.mu.Lock()
	q := ss.queue
	ss.queue = nil
	ss.mu.Unlock()
	for _, p := range q {
		p.release()
		if p.iq != nil && !p.iq.finished() {
			p.iq.fail(errSessionClosed)
			close(p.iq.done)
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
