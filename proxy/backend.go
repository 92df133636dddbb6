package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// backend holds the backend loop's own state.
type backend struct {
	rowBuf []byte
}

// backendLoop reads server messages until the server closes, matching each
// to the request at the head of the queue.
func (ss *session) backendLoop() error {
	defer ss.releaseWaiters()
	var be backend
	for {
		if !ss.ur.buffered() {
			if err := ss.cw.flush(); err != nil {
				return err
			}
		}
		typ, body, err := ss.ur.next()
		if err != nil {
			return err
		}
		if err := ss.backendMessage(&be, typ, body); err != nil {
			return err
		}
	}
}

func (ss *session) backendMessage(be *backend, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerParameterStatus:
		ss.noteParameter(body)
		return ss.cw.raw(typ, body)
	case wire.ServerNoticeResponse:
		if p := ss.head(); p != nil && p.kind == pendInternal {
			return nil
		}
		return ss.cw.raw(typ, body)
	case wire.ServerNotificationResponse:
		// Notifications are the client's whatever request is at the
		// head, the proxy's own queries included; but for the proxy's
		// own channel.
		if ss.catalogNotification(body) {
			return nil
		}
		return ss.cw.raw(typ, body)
	}
	p := ss.head()
	if p == nil {
		// A message nobody asked for: a FATAL on shutdown, say.
		return ss.cw.raw(typ, body)
	}
	if typ == wire.ServerErrorResponse {
		return ss.serverError(p, body)
	}
	switch p.kind {
	case pendInternal:
		return ss.internalMessage(p, typ, body)
	case pendHiddenDescribe:
		return ss.hiddenDescribe(p, typ, body)
	case pendDescribe:
		return ss.describeResponse(p, typ, body)
	}
	switch typ {
	case wire.ServerRowDescription:
		return ss.rowDescription(p, body)
	case wire.ServerDataRow:
		return ss.dataRow(be, p, body)
	case wire.ServerCommandComplete:
		return ss.commandComplete(p, body)
	case wire.ServerEmptyQueryResponse:
		p.shape = nil
		p.stmtIdx++
		return ss.forwardAndMaybePop(p, typ, body, p.kind != pendQuery)
	case wire.ServerPortalSuspended:
		return ss.forwardAndMaybePop(p, typ, body, true)
	case wire.ServerReadyForQuery:
		return ss.readyForQuery(p, body)
	case wire.ServerCopyOutResponse:
		return ss.copyOutResponse(p, typ, body)
	case wire.ServerCopyData, wire.ServerCopyDone:
		return ss.copyOutData(p, typ, body)
	case wire.ServerCopyInResponse:
		ss.copyInStarted(p)
		return ss.forward(p, typ, body)
	case wire.ServerParseComplete, wire.ServerBindComplete, wire.ServerCloseComplete:
		return ss.forwardAndMaybePop(p, typ, body, true)
	default:
		return ss.forward(p, typ, body)
	}
}

func (ss *session) forward(p *pending, typ wire.ServerType, body []byte) error {
	if p.discard {
		return nil
	}
	return ss.cw.raw(typ, body)
}

func (ss *session) forwardAndMaybePop(p *pending, typ wire.ServerType, body []byte, pop bool) error {
	err := ss.forward(p, typ, body)
	if pop {
		ss.pop()
	}
	return err
}

// internalMessage consumes the answer to a batch of the proxy's own. Its
// ReadyForQuery tells the transaction status but, unlike the client's,
// completes nothing of the client's session state.
func (ss *session) internalMessage(p *pending, typ wire.ServerType, body []byte) error {
	if typ != wire.ServerReadyForQuery {
		p.iq.handle(typ, body)
		return nil
	}
	var rfq pgproto3.ReadyForQuery
	if rfq.Decode(body) != nil {
		return ss.serverMalformed("ReadyForQuery")
	}
	ss.mu.Lock()
	ss.noteReadyLocked(wire.TxStatus(rfq.TxStatus))
	ss.mu.Unlock()
	ss.pop()
	// Last: the waiting frontend reads the status.
	p.iq.handle(typ, body)
	return nil
}

// copyInStarted notes that p put the server in copy-in mode, where it
// ignores Sync: Syncs the client sent before ending the COPY get no
// ReadyForQuery and leave the queue.
func (ss *session) copyInStarted(p *pending) {
	ss.mu.Lock()
	first := !p.copyInStarted
	p.copyInStarted = true
	var dropped []*pending
	kept := ss.queue[:0]
	for _, q := range ss.queue {
		if q.kind == pendSync && q.copyReq == p {
			ss.rfqSent--
			dropped = append(dropped, q)
			continue
		}
		kept = append(kept, q)
	}
	clear(ss.queue[len(kept):])
	ss.queue = kept
	ss.mu.Unlock()
	if first && p.copyIn != nil {
		close(p.copyIn)
	}
	for _, q := range dropped {
		q.release()
	}
}

// serverError forwards (or replaces) an ErrorResponse and, for the
// extended protocol, drops the requests the server will now skip. An
// error in a batch of the proxy's own is its alone.
func (ss *session) serverError(p *pending, body []byte) error {
	if p.kind == pendInternal {
		p.iq.handle(wire.ServerErrorResponse, body)
		return nil
	}
	ss.mu.Lock()
	ss.state.error()
	replacement := p.err
	ss.mu.Unlock()
	var err error
	switch {
	case p.discard:
	case replacement != nil:
		err = ss.cw.send(errorResponse(replacement))
	default:
		err = ss.cw.raw(wire.ServerErrorResponse, body)
	}
	p.shape, p.out = nil, nil
	if p.extended() {
		ss.mu.Lock()
		ss.failedLocked(p)
		ss.mu.Unlock()
		ss.skipToSync()
	}
	return err
}

// skipToSync drops every request before the next Sync, as the server
// ignores them after an error; when the Sync is not sent yet, requests
// sent until it are dropped as they come (see pushLocked).
func (ss *session) skipToSync() {
	ss.mu.Lock()
	var dropped []*pending
	for len(ss.queue) > 0 && ss.queue[0].kind != pendSync {
		d := ss.queue[0]
		if d.endsWithReady() {
			// A Query or FunctionCall sent into the failed batch: no
			// ReadyForQuery will answer it.
			ss.rfqSent--
		}
		dropped = append(dropped, d)
		ss.queue[0] = nil
		ss.queue = ss.queue[1:]
	}
	if len(ss.queue) == 0 {
		ss.skipping = true
	}
	for i := len(dropped) - 1; i >= 0; i-- {
		ss.undoLocked(dropped[i])
	}
	ss.mu.Unlock()
	for _, d := range dropped {
		d.release()
	}
}

// noteReadyLocked records what any ReadyForQuery tells: the transaction
// status, and at idle the end of the transaction's portals and of its
// uncommitted DDL.
func (ss *session) noteReadyLocked(status wire.TxStatus) {
	ss.rfqSeen++
	if status == wire.TxIdle {
		// Protocol-level portals do not outlive their transaction.
		for name, pt := range ss.portals {
			if pt.epoch < ss.rfqSeen {
				delete(ss.portals, name)
			}
		}
		if ss.catTxDirty {
			ss.catStale, ss.catTxDirty = true, false
		}
		if ss.ddlInTx {
			// Committed (or rolled back) now: the other sessions'
			// snapshots, loaded meanwhile, may lack it.
			ss.ddlInTx = false
			ss.srv.catalogs.invalidate(ss.database)
		}
	}
	ss.txStatus = status
}

func (ss *session) readyForQuery(p *pending, body []byte) error {
	var rfq pgproto3.ReadyForQuery
	if rfq.Decode(body) != nil {
		return ss.serverMalformed("ReadyForQuery")
	}
	ss.mu.Lock()
	status := wire.TxStatus(rfq.TxStatus)
	ss.state.readyForQuery(status)
	ss.noteReadyLocked(status)
	// After the proxy failed a result, an explicit transaction must end
	// up failed as the client believes.
	abort := ss.abortTx && status == wire.TxInBlock && len(ss.queue) == 1
	ss.abortTx = false
	ss.mu.Unlock()
	if abort {
		if injected, err := ss.injectAbort(); injected || err != nil {
			return err
		}
	}
	err := ss.cw.raw(wire.ServerReadyForQuery, body)
	ss.pop()
	return err
}

// injectAbort holds back the ReadyForQuery of the request at the head of
// the queue when nothing else is in flight, and runs a request that fails
// instead; its own ReadyForQuery (wire.TxFailed) goes to the client. The check,
// the pop and the push happen under the upstream writer's lock, so no
// request of the client's can come between. (The lock is free soon: the frontend
// pushes before it writes, and the server, idle, reads what it writes.)
func (ss *session) injectAbort() (bool, error) {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	ss.mu.Lock()
	alone := len(ss.queue) == 1
	ss.mu.Unlock()
	if !alone {
		return false, nil
	}
	// Queued before the pop wakes a frontend waiting for the head, which
	// must not find the session idle (and reload the catalog) meanwhile.
	ss.pushLocked(&pending{kind: pendRefused, simple: true, discard: true})
	ss.pop()
	// Parse and Sync, not a Query, which would drop the client's unnamed
	// statement and portal.
	if err := ss.uw.sendLocked(failingParse(abortStatement), &pgproto3.Sync{}); err != nil {
		return true, err
	}
	return true, ss.uw.w.Flush()
}

// serverMalformed ends the session when PostgreSQL sends a message that
// does not decode: the proxy no longer knows where the server stands. The
// client is told the fault was not its own.
func (ss *session) serverMalformed(what string) error {
	msg := "malformed " + what + " message from PostgreSQL"
	ss.log.Error("protocol violation by PostgreSQL", "err", msg)
	ss.cw.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: "pgcloak: " + msg})
	ss.cw.end()
	return &malformedError{msg}
}

func (ss *session) rowDescription(p *pending, body []byte) error {
	var rd pgproto3.RowDescription
	if rd.Decode(body) != nil {
		return ss.serverMalformed("RowDescription")
	}
	p.shape = ss.shapeFor(rd.Fields, p.statement())
	if p.shape == nil {
		return ss.forward(p, wire.ServerRowDescription, body)
	}
	if p.discard {
		return nil
	}
	return ss.cw.send(&pgproto3.RowDescription{Fields: p.shape.describe(rd.Fields)})
}

func (ss *session) dataRow(be *backend, p *pending, body []byte) error {
	if p.discard {
		return nil
	}
	if p.kind == pendExecute && p.shape == nil && p.portal != nil && !p.shapeKnown {
		p.shapeKnown = true
		if fields, ok := p.portal.resultFields(); ok {
			p.shape = ss.shapeFor(fields, p.statement())
		}
	}
	if p.shape == nil {
		return ss.cw.raw(wire.ServerDataRow, body)
	}
	out, err := p.shape.rewriteRow(be.rowBuf[:0], body)
	if err != nil {
		return ss.failResult(p, err)
	}
	be.rowBuf = out
	if cap(be.rowBuf) > 1<<20 {
		defer func() { be.rowBuf = nil }()
	}
	return ss.cw.rawMessage(out)
}

// failResult reports an error in the middle of a result (a key became
// unavailable, a value does not decrypt) and drops the rest of the
// server's answer up to its ReadyForQuery.
func (ss *session) failResult(p *pending, err error) error {
	ss.log.Warn("result refused", "err", err.Error())
	metricResultErrors.Inc()
	werr := ss.cw.send(errorResponse(err))
	ss.mu.Lock()
	ss.abortTx = true
	for _, q := range ss.queue {
		if q.kind == pendSync {
			break
		}
		q.discard = true
		if q == p && q.kind == pendQuery {
			break
		}
	}
	ss.mu.Unlock()
	return werr
}

func (ss *session) commandComplete(p *pending, body []byte) error {
	var cc pgproto3.CommandComplete
	if cc.Decode(body) != nil {
		return ss.serverMalformed("CommandComplete")
	}
	ss.completed(p.statement(), string(cc.CommandTag))
	p.shape = nil
	p.shapeKnown = false
	p.stmtIdx++
	return ss.forwardAndMaybePop(p, wire.ServerCommandComplete, body, p.kind != pendQuery)
}

// completed applies a statement's effects on session state once the server
// confirms it ran.
func (ss *session) completed(st *sqlrewrite.Statement, tag string) {
	if st == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st.Tx != sqlrewrite.TxNone {
		ss.state.transaction(st.Tx, st.Savepoint, tag)
	}
	if st.Unlistens {
		ss.listening = false
	}
	for _, e := range st.Effects {
		ss.state.apply(e)
		if e.Setting == sqlrewrite.SettingDiscardAll {
			ss.stmts = map[string]*preparedStmt{}
			ss.portals = map[string]*portal{}
			ss.forgetAllPreparedLocked()
		}
	}
	switch st.Kind {
	case sqlrewrite.KindPrepare:
		if st.Prepare != nil {
			ss.sqlPrepared[st.Prepare.Name] = st.Prepare
		}
	case sqlrewrite.KindDeallocate:
		// SQL DEALLOCATE also drops statements made by protocol Parse
		// (one namespace), all but the unnamed one.
		if st.Deallocate == "" {
			ss.forgetAllPreparedLocked()
			for name := range ss.stmts {
				if name != "" {
					delete(ss.stmts, name)
				}
			}
		} else {
			ss.forgetPreparedLocked(st.Deallocate)
			delete(ss.stmts, st.Deallocate)
		}
	case sqlrewrite.KindDDL:
		ss.catStale = true
		// The DDL may be inside a transaction (BEGIN earlier in the same
		// string, not yet reported by a ReadyForQuery), where a reload
		// shows it uncommitted: load again once the server reports idle,
		// which, outside one, is right away.
		ss.catTxDirty = true
		if st.ChangesCatalog {
			// The other sessions' snapshots too, now and when the
			// transaction ends. Its own DDL does not make the
			// session's transaction unknown.
			ss.ddlInTx = true
			ss.txGen = ss.srv.catalogs.invalidate(ss.database)
		}
	}
}

func (ss *session) describeResponse(p *pending, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerParameterDescription:
		if p.discard {
			// The proxy already reported an error for this batch.
			return nil
		}
		if p.stmt == nil || len(p.stmt.plan.Params) == 0 {
			return ss.cw.raw(typ, body)
		}
		var pd pgproto3.ParameterDescription
		if pd.Decode(body) != nil {
			return ss.serverMalformed("ParameterDescription")
		}
		plan := p.stmt.plan
		if n := plan.ClientParams; n > 0 && n <= len(pd.ParameterOIDs) {
			// The hidden parameters are the proxy's, not the client's.
			pd.ParameterOIDs = pd.ParameterOIDs[:n]
		}
		for i, pr := range plan.Params {
			if pr == nil || pr.Source != 0 || i >= len(pd.ParameterOIDs) {
				continue
			}
			pd.ParameterOIDs[i] = p.stmt.describedType(i, pr)
		}
		return ss.cw.send(&pd)
	case wire.ServerRowDescription:
		var rd pgproto3.RowDescription
		if rd.Decode(body) != nil {
			return ss.serverMalformed("RowDescription")
		}
		fields := cloneFields(rd.Fields)
		ss.recordDescription(p.object, p.stmt, p.portal, fields)
		shape := ss.shapeFor(fields, p.describedStatement())
		ss.pop()
		if p.discard {
			return nil
		}
		if shape == nil {
			return ss.cw.raw(typ, body)
		}
		return ss.cw.send(&pgproto3.RowDescription{Fields: shape.describe(fields)})
	case wire.ServerNoData:
		ss.recordDescription(p.object, p.stmt, p.portal, nil)
		ss.pop()
		return ss.forward(p, typ, body)
	default:
		return ss.forward(p, typ, body)
	}
}

func (ss *session) hiddenDescribe(p *pending, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerRowDescription:
		var rd pgproto3.RowDescription
		if rd.Decode(body) != nil {
			return ss.serverMalformed("RowDescription")
		}
		ss.recordDescription(wire.TargetPortal, nil, p.portal, cloneFields(rd.Fields))
	case wire.ServerNoData:
		ss.recordDescription(wire.TargetPortal, nil, p.portal, nil)
	default:
		return nil
	}
	ss.pop()
	return nil
}

func (ss *session) recordDescription(object wire.Target, st *preparedStmt, pt *portal, fields []pgproto3.FieldDescription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if object == wire.TargetStatement && st != nil {
		st.fields, st.described = fields, true
	}
	if object == wire.TargetPortal && pt != nil {
		pt.fields, pt.described = fields, true
	}
}

// cloneFields copies field descriptions out of a reused read buffer.
func cloneFields(in []pgproto3.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(in))
	copy(out, in)
	for i := range out {
		out[i].Name = append([]byte(nil), in[i].Name...)
	}
	return out
}
