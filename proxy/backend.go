package proxy

import (
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"
)

// backend holds the backend loop's own state.
type backend struct {
	rowBuf []byte
	rows   uint // DataRows seen, for sampling their latency
}

// Proxy latency observers, resolved once.
var (
	latencyToServer = metrics.ProxyLatency.WithLabelValues(metrics.ToServer)
	latencyToClient = metrics.ProxyLatency.WithLabelValues(metrics.ToClient)
)

// rowSampling: one DataRow in this many is timed, so that a large result
// pays for the clock and the histogram in a few rows only.
const rowSampling = 16

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
		if typ == wire.ServerDataRow {
			be.rows++
			if be.rows%rowSampling != 1 {
				if err := ss.backendMessage(&be, typ, body); err != nil {
					return err
				}
				continue
			}
		}
		start := time.Now()
		err = ss.backendMessage(&be, typ, body)
		latencyToClient.Observe(time.Since(start).Seconds())
		if err != nil {
			return err
		}
	}
}

func (ss *session) backendMessage(be *backend, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerReadyForQuery:
		return ss.readyForQuery(body)
	case wire.ServerParameterStatus:
		ss.noteParameter(body)
	case wire.ServerNotificationResponse:
		// Notifications are the client's whatever request is at the
		// head, the proxy's own queries included; but for the proxy's
		// own channel.
		if ss.catalogNotification(body) {
			return nil
		}
	}
	ss.mu.Lock()
	ev := ss.pl.Server(typ)
	if typ == wire.ServerErrorResponse && ev.Req != nil && ev.Action != pipeline.Own {
		ss.state.error()
	}
	ss.mu.Unlock()
	p := ev.Req
	var err error
	switch {
	case ev.Action == pipeline.Own:
		p.Data.(*internalQuery).handle(typ, body)
	case p == nil:
		// A message that answers no request: ParameterStatus, a
		// notification, a FATAL on shutdown.
		err = ss.cw.raw(typ, body)
	case typ == wire.ServerErrorResponse:
		err = ss.serverError(p, ev.Action, body)
	case p.Kind == pipeline.HiddenDescribe:
		err = ss.hiddenDescribe(p, typ, body)
	case p.Kind == pipeline.Describe:
		err = ss.describeResponse(p, ev.Action, typ, body)
	default:
		err = ss.resultMessage(be, p, ev.Action, typ, body)
	}
	if ev.Last {
		ss.complete(p)
	}
	return err
}

// resultMessage handles a message of the answer to a Query, an Execute or
// a request without a result.
func (ss *session) resultMessage(be *backend, p *pending, act pipeline.Action, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerRowDescription:
		return ss.rowDescription(p, act, body)
	case wire.ServerDataRow:
		return ss.dataRow(be, p, act, body)
	case wire.ServerCommandComplete:
		return ss.commandComplete(p, act, body)
	case wire.ServerEmptyQueryResponse:
		if f := flowOf(p); f != nil {
			f.shape = nil
			f.stmtIdx++
		}
	case wire.ServerPortalSuspended:
		ss.account(p, statementEnd{})
	case wire.ServerCopyOutResponse:
		return ss.copyOutResponse(p, act, body)
	case wire.ServerCopyData, wire.ServerCopyDone:
		return ss.copyOutData(p, act, typ, body)
	}
	return ss.forward(act, typ, body)
}

func (ss *session) forward(act pipeline.Action, typ wire.ServerType, body []byte) error {
	if act == pipeline.Drop {
		return nil
	}
	return ss.cw.raw(typ, body)
}

// serverError forwards (or replaces) an ErrorResponse; the books dropped
// the requests the server will now skip.
func (ss *session) serverError(p *pending, act pipeline.Action, body []byte) error {
	if f := flowOf(p); f != nil {
		ss.account(p, statementEnd{sqlstate: errorCode(body)})
		f.shape, f.out = nil, nil
	}
	switch act {
	case pipeline.Drop:
		return nil
	case pipeline.Replace:
		ss.mu.Lock()
		replacement := p.Refusal
		ss.mu.Unlock()
		return ss.cw.send(errorResponse(replacement))
	}
	return ss.cw.raw(wire.ServerErrorResponse, body)
}

// noteTxEndLocked records what any ReadyForQuery at idle tells beyond the
// books: the end of the transaction's uncommitted DDL.
func (ss *session) noteTxEndLocked(status wire.TxStatus) {
	if status != wire.TxIdle {
		return
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

// readyForQuery ends the request at the head. The answer to a batch of the
// proxy's own tells the transaction status but, unlike the client's,
// completes nothing of the client's session state.
func (ss *session) readyForQuery(body []byte) error {
	var rfq pgproto3.ReadyForQuery
	if rfq.Decode(body) != nil {
		return ss.serverMalformed("ReadyForQuery")
	}
	status := wire.TxStatus(rfq.TxStatus)
	ss.mu.Lock()
	ev := ss.pl.Ready(status)
	p := ev.Req
	if p == nil {
		ss.mu.Unlock()
		return ss.cw.raw(wire.ServerReadyForQuery, body)
	}
	if ev.Action != pipeline.Own {
		ss.state.readyForQuery(status)
	}
	ss.noteTxEndLocked(status)
	// After the proxy failed a result, an explicit transaction must end
	// up failed as the client believes.
	abort := ev.Action != pipeline.Own && ss.abortTx && status == wire.TxInBlock && ss.pl.Len() == 1
	if ev.Action != pipeline.Own {
		ss.abortTx = false
	}
	ss.mu.Unlock()
	if ev.Action == pipeline.Own {
		ss.complete(p)
		// Last: the waiting frontend reads the status.
		p.Data.(*internalQuery).handle(wire.ServerReadyForQuery, body)
		return nil
	}
	if abort {
		if injected, err := ss.injectAbort(p); injected || err != nil {
			return err
		}
	}
	err := ss.cw.raw(wire.ServerReadyForQuery, body)
	ss.complete(p)
	if err == nil {
		// After the ReadyForQuery, so that a drain ends the session
		// only once the client has its answer (a COMMIT's among them).
		ss.checkIdle()
	}
	return err
}

// injectAbort holds back the ReadyForQuery of p, the request at the head,
// when nothing else is in flight, and runs a request that fails instead;
// its own ReadyForQuery (in a failed transaction) goes to the client. The
// check, the completion and the push happen under the upstream writer's
// lock, so no request of the client's can come between. (The lock is free
// soon: the frontend pushes before it writes, and the server, idle, reads
// what it writes.)
func (ss *session) injectAbort(p *pending) (bool, error) {
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	ss.mu.Lock()
	alone := ss.pl.Len() == 1
	ss.mu.Unlock()
	if !alone {
		return false, nil
	}
	// Booked before p completes, which wakes a frontend waiting for it,
	// which must not find the session idle (and reload the catalog)
	// meanwhile.
	ss.pushLocked(&pending{Kind: pipeline.Refused, Simple: true, Discard: true})
	ss.complete(p)
	// Parse and Sync, not a Query, which would drop the client's unnamed
	// statement and portal.
	if err := ss.uw.sendLocked(failingParse(abortStatement), &pgproto3.Sync{}); err != nil {
		return true, err
	}
	return true, ss.uw.flushLocked()
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

func (ss *session) rowDescription(p *pending, act pipeline.Action, body []byte) error {
	var rd pgproto3.RowDescription
	if rd.Decode(body) != nil {
		return ss.serverMalformed("RowDescription")
	}
	shape := ss.shapeFor(rd.Fields, statementOf(p), nil)
	if f := flowOf(p); f != nil {
		f.shape = shape
	}
	if shape == nil {
		return ss.forward(act, wire.ServerRowDescription, body)
	}
	if act == pipeline.Drop {
		return nil
	}
	return ss.cw.send(&pgproto3.RowDescription{Fields: shape.describe(rd.Fields)})
}

func (ss *session) dataRow(be *backend, p *pending, act pipeline.Action, body []byte) error {
	if act == pipeline.Drop {
		return nil
	}
	f := flowOf(p)
	if f == nil {
		return ss.cw.raw(wire.ServerDataRow, body)
	}
	if p.Kind == pipeline.Execute && f.shape == nil && p.Portal != nil && !f.shapeKnown {
		f.shapeKnown = true
		ss.mu.Lock()
		fields, ok := p.Portal.resultFields()
		ss.mu.Unlock()
		if ok {
			f.shape = ss.shapeFor(fields, statementOf(p), p.Portal.stored)
		}
	}
	if f.shape == nil {
		return ss.cw.raw(wire.ServerDataRow, body)
	}
	out, err := f.shape.rewriteRow(be.rowBuf[:0], body)
	if err != nil {
		return ss.failResult(p, err)
	}
	f.rows++
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
	metrics.ResultErrors.Inc()
	werr := ss.cw.send(errorResponse(err))
	ss.mu.Lock()
	ss.abortTx = true
	ss.pl.DiscardUntilSync(p)
	ss.mu.Unlock()
	return werr
}

func (ss *session) commandComplete(p *pending, act pipeline.Action, body []byte) error {
	var cc pgproto3.CommandComplete
	if cc.Decode(body) != nil {
		return ss.serverMalformed("CommandComplete")
	}
	ss.completed(p, statementOf(p), string(cc.CommandTag))
	ss.account(p, statementEnd{tag: string(cc.CommandTag)})
	if f := flowOf(p); f != nil {
		f.shape = nil
		f.shapeKnown = false
		f.stmtIdx++
	}
	return ss.forward(act, wire.ServerCommandComplete, body)
}

func (ss *session) describeResponse(p *pending, act pipeline.Action, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerParameterDescription:
		if act == pipeline.Drop {
			// The proxy already reported an error for this batch.
			return nil
		}
		if p.Stmt == nil || len(p.Stmt.plan.Params) == 0 {
			return ss.cw.raw(typ, body)
		}
		var pd pgproto3.ParameterDescription
		if pd.Decode(body) != nil {
			return ss.serverMalformed("ParameterDescription")
		}
		plan := p.Stmt.plan
		if n := plan.ClientParams; n > 0 && n <= len(pd.ParameterOIDs) {
			// The hidden parameters are the proxy's, not the client's.
			pd.ParameterOIDs = pd.ParameterOIDs[:n]
		}
		for i, pr := range plan.Params {
			if pr == nil || pr.Source != 0 || i >= len(pd.ParameterOIDs) {
				continue
			}
			pd.ParameterOIDs[i] = p.Stmt.describedType(i, pr)
		}
		return ss.cw.send(&pd)
	case wire.ServerRowDescription:
		var rd pgproto3.RowDescription
		if rd.Decode(body) != nil {
			return ss.serverMalformed("RowDescription")
		}
		fields := cloneFields(rd.Fields)
		ss.recordDescription(p.Target, p.Stmt, p.Portal, fields)
		shape := ss.shapeFor(fields, describedStatement(p), storedFormatsOf(p))
		if act == pipeline.Drop {
			return nil
		}
		if shape == nil {
			return ss.cw.raw(typ, body)
		}
		return ss.cw.send(&pgproto3.RowDescription{Fields: shape.describe(fields)})
	case wire.ServerNoData:
		ss.recordDescription(p.Target, p.Stmt, p.Portal, nil)
	}
	return ss.forward(act, typ, body)
}

// hiddenDescribe records the answer to a Describe the proxy added; none of
// it reaches the client.
func (ss *session) hiddenDescribe(p *pending, typ wire.ServerType, body []byte) error {
	switch typ {
	case wire.ServerRowDescription:
		var rd pgproto3.RowDescription
		if rd.Decode(body) != nil {
			return ss.serverMalformed("RowDescription")
		}
		ss.recordDescription(wire.TargetPortal, nil, p.Portal, cloneFields(rd.Fields))
	case wire.ServerNoData:
		ss.recordDescription(wire.TargetPortal, nil, p.Portal, nil)
	}
	return nil
}

func (ss *session) recordDescription(object wire.Target, st *preparedStmt, pt *portal, fields []pgproto3.FieldDescription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if object == wire.TargetStatement && st != nil {
		st.fields, st.described = fields, true
		st.stored = storedFormatsMemo{}
	}
	if object == wire.TargetPortal && pt != nil {
		if pt.stored != nil {
			// The server describes the formats it was asked for; the
			// client's are what it gets.
			for i := range fields {
				fields[i].Format = formatFor(pt.resultFormats, i)
			}
		}
		pt.fields, pt.described = fields, true
	}
}

// storedFormatsOf is the formats the server was asked for by the Bind of
// the portal p describes, when the proxy changed them.
func storedFormatsOf(p *pending) []int16 {
	if p.Target != wire.TargetPortal || p.Portal == nil {
		return nil
	}
	return p.Portal.stored
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
