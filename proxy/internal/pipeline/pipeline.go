// Package pipeline keeps the books of one session's exchange with
// PostgreSQL, without I/O: the requests sent upstream that await an
// answer, in wire order; the prepared statements and portals the server
// holds for the client; and what each server message does to them —
// which request it answers, whether it is that request's last, which
// requests an error makes the server skip (and the undo of what they
// recorded), the Syncs a COPY FROM STDIN swallows, the portals a
// transaction's end destroys.
//
// It knows nothing of SQL or values: the proxy attaches its own data to
// each request (Request.Data) and rewrites what flows. A Pipeline is not
// safe for concurrent use; the session serializes calls.
package pipeline

import (
	"fmt"
	"iter"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"
)

// Kind is what a request is, which decides how the server answers it.
type Kind uint8

const (
	Query          Kind = iota + 1 // simple Query: answered up to its ReadyForQuery
	Parse                          // ParseComplete
	Bind                           // BindComplete
	Describe                       // [ParameterDescription] RowDescription | NoData
	HiddenDescribe                 // a portal Describe the proxy added; its answer is the proxy's
	Execute                        // rows or COPY, then a completion or PortalSuspended
	Close                          // CloseComplete
	Sync                           // ReadyForQuery
	FunctionCall                   // FunctionCallResponse, ReadyForQuery
	Refused                        // the proxy's stand-in for a request it refused; fails on the server
	Internal                       // a batch of the proxy's own, up to its ReadyForQuery
)

func (k Kind) String() string {
	switch k {
	case Query:
		return "Query"
	case Parse:
		return "Parse"
	case Bind:
		return "Bind"
	case Describe:
		return "Describe"
	case HiddenDescribe:
		return "HiddenDescribe"
	case Execute:
		return "Execute"
	case Close:
		return "Close"
	case Sync:
		return "Sync"
	case FunctionCall:
		return "FunctionCall"
	case Refused:
		return "Refused"
	case Internal:
		return "Internal"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Request is one request sent upstream. S and P are the proxy's records of
// a prepared statement and of a portal.
type Request[S, P comparable] struct {
	Kind Kind
	// Name is the statement (Parse; Describe and Close of a statement) or
	// portal (Bind's destination; Describe and Close of a portal;
	// Execute) the request names.
	Name   string
	Target wire.Target // Describe, Close
	Stmt   S           // Parse: the statement it creates; Describe: the one described
	Portal P           // Bind: the portal it creates; Execute, Describe, HiddenDescribe: the one it uses
	// Simple marks a Refused request that stands for one ending at
	// ReadyForQuery (a Query, a FunctionCall) rather than for an
	// extended-protocol message.
	Simple bool
	// During (Sync) is the request whose COPY FROM STDIN the Sync was sent
	// during, if any: the server ignores a Sync in copy-in mode.
	During *Request[S, P]
	// Refusal is the error the client gets instead of the server's.
	Refusal error
	// Discard drops the rest of the answer (but its ReadyForQuery): the
	// client already has the proxy's error for it.
	Discard bool
	// Data is the proxy's own, by kind.
	Data any

	// What Push recorded in the namespaces, for undo.
	created    bool
	prevStmt   S
	prevPortal portalEntry[P]
	hadPortal  bool

	seq         uint64 // its place in wire order, from 1 (0: not queued)
	copying     bool   // the server answered CopyInResponse
	finished    bool
	done        chan struct{}
	copyStarted chan struct{}
}

// endsWithReady reports whether the server answers the request with a
// ReadyForQuery.
func (r *Request[S, P]) EndsWithReady() bool {
	switch r.Kind {
	case Query, Sync, Internal, FunctionCall:
		return true
	case Refused:
		return r.Simple
	}
	return false
}

// Extended reports whether the request belongs to the extended protocol,
// where an error makes the server skip to the next Sync.
func (r *Request[S, P]) Extended() bool {
	switch r.Kind {
	case Parse, Bind, Describe, HiddenDescribe, Execute, Close:
		return true
	case Refused:
		return !r.Simple
	}
	return false
}

// Done is closed once the request leaves the pipeline: answered, skipped,
// swallowed, or the session ended. Call it before Push or under the
// session's lock.
func (r *Request[S, P]) Done() <-chan struct{} {
	if r.done == nil {
		r.done = make(chan struct{})
		if r.finished {
			close(r.done)
		}
	}
	return r.done
}

// CopyStarted is closed when the server answers the request with
// CopyInResponse (and stays open otherwise). Call it before Push or under
// the session's lock.
func (r *Request[S, P]) CopyStarted() <-chan struct{} {
	if r.copyStarted == nil {
		r.copyStarted = make(chan struct{})
		if r.copying {
			close(r.copyStarted)
		}
	}
	return r.copyStarted
}

func (r *Request[S, P]) finish() {
	if r.finished {
		return
	}
	r.finished = true
	if r.done != nil {
		close(r.done)
	}
}

func (r *Request[S, P]) String() string {
	switch r.Kind {
	case Describe, Close:
		return fmt.Sprintf("%s %s %q", r.Kind, r.Target, r.Name)
	case Parse, Bind, Execute, HiddenDescribe:
		return fmt.Sprintf("%s %q", r.Kind, r.Name)
	}
	return r.Kind.String()
}

// portalEntry is a portal with the transaction it belongs to: the number
// of ReadyForQuery answers due before its Bind, and the Bind's place in
// wire order.
type portalEntry[P comparable] struct {
	portal P
	epoch  uint64
	bound  uint64
}

type savepoint struct {
	name string
	seq  uint64
}

// Pipeline is one session's books.
type Pipeline[S, P comparable] struct {
	statements map[string]S
	portals    map[string]portalEntry[P]
	queue      []*Request[S, P]
	readySent  uint64 // requests sent that end with ReadyForQuery
	readySeen  uint64 // ReadyForQuery messages received
	pushed     uint64 // requests queued
	// savepoints are the transaction's, with the place in wire order
	// of the request that made each.
	savepoints []savepoint
	// batchOpen: extended-protocol requests were sent since the last
	// Sync. skipping: the server reported an error in that batch and
	// ignores everything up to the next Sync, which is not sent yet.
	batchOpen bool
	skipping  bool
	status    wire.TxStatus
}

// New is the books of a session that just logged in: idle, with nothing
// prepared.
func New[S, P comparable]() *Pipeline[S, P] {
	return &Pipeline[S, P]{statements: map[string]S{}, portals: map[string]portalEntry[P]{}, status: wire.TxIdle}
}

// Push records r as sent, in wire order, with what it does to the
// statements and portals as the server will take it. It reports false
// when nothing will answer r — the server ignores it (after an error in
// the batch, or a Sync in copy-in mode) — and then records nothing and
// finishes r. The caller sends r's message either way.
func (pl *Pipeline[S, P]) Push(r *Request[S, P]) bool {
	if r.Kind == Sync && r.During != nil && r.During.copying {
		r.finish()
		return false
	}
	if pl.skipping && r.Kind != Sync {
		r.finish()
		return false
	}
	switch {
	case r.Kind == Sync:
		pl.batchOpen, pl.skipping = false, false
	case r.Extended():
		pl.batchOpen = true
	}
	pl.pushed++
	r.seq = pl.pushed
	pl.record(r)
	pl.queue = append(pl.queue, r)
	if r.EndsWithReady() {
		pl.readySent++
	}
	return true
}

// record applies what a Parse, Bind or Close does to the namespaces. A
// named statement or portal that exists makes PostgreSQL reject the Parse
// or Bind, so the existing one is kept; the unnamed ones are replaced.
func (pl *Pipeline[S, P]) record(r *Request[S, P]) {
	var zeroS S
	switch r.Kind {
	case Parse:
		prev := pl.statements[r.Name]
		if r.Name == "" || prev == zeroS {
			pl.statements[r.Name] = r.Stmt
			r.created, r.prevStmt = true, prev
		}
	case Bind:
		prev, had := pl.portals[r.Name]
		if r.Name == "" || !had {
			pl.portals[r.Name] = portalEntry[P]{portal: r.Portal, epoch: pl.readySent, bound: r.seq}
			r.created, r.prevPortal, r.hadPortal = true, prev, had
		}
	case Close:
		if r.Target == wire.TargetStatement {
			r.prevStmt = pl.statements[r.Name]
			delete(pl.statements, r.Name)
			return
		}
		r.prevPortal, r.hadPortal = pl.portals[r.Name]
		delete(pl.portals, r.Name)
	}
}

// undo reverts what Push recorded for a request the server skipped, so the
// books stay the server's.
func (pl *Pipeline[S, P]) undo(r *Request[S, P]) {
	var zeroS S
	switch r.Kind {
	case Parse:
		if r.created && pl.statements[r.Name] == r.Stmt {
			if r.prevStmt != zeroS {
				pl.statements[r.Name] = r.prevStmt
			} else {
				delete(pl.statements, r.Name)
			}
		}
	case Bind:
		if r.created && pl.ownsPortal(r) {
			if r.hadPortal {
				pl.portals[r.Name] = r.prevPortal
			} else {
				delete(pl.portals, r.Name)
			}
		}
	case Close:
		if r.Target == wire.TargetStatement {
			if _, now := pl.statements[r.Name]; r.prevStmt != zeroS && !now {
				pl.statements[r.Name] = r.prevStmt
			}
			return
		}
		if _, now := pl.portals[r.Name]; r.hadPortal && !now {
			pl.portals[r.Name] = r.prevPortal
		}
	}
}

// failed forgets what a Parse or Bind the server rejected recorded: a named
// statement or portal does not exist, and PostgreSQL drops the unnamed
// statement before parsing; an unnamed portal that failed to bind is
// unusable whether or not the server dropped the previous one.
func (pl *Pipeline[S, P]) failed(r *Request[S, P]) {
	switch {
	case r.Kind == Parse && r.created && pl.statements[r.Name] == r.Stmt:
		delete(pl.statements, r.Name)
	case r.Kind == Bind && r.created && pl.ownsPortal(r):
		delete(pl.portals, r.Name)
	}
}

func (pl *Pipeline[S, P]) ownsPortal(r *Request[S, P]) bool {
	e, ok := pl.portals[r.Name]
	return ok && e.portal == r.Portal
}

// Action is what becomes of a server message.
type Action uint8

const (
	// Forward sends it to the client (rewritten by the proxy where it
	// must be).
	Forward Action = iota + 1
	// Drop keeps it from the client: the client already has the proxy's
	// error for the request, or the request is one the proxy added.
	Drop
	// Replace sends the request's Refusal instead of the server's error.
	Replace
	// Own hands it to the proxy's own batch (Internal), never the client.
	Own
)

func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case Drop:
		return "drop"
	case Replace:
		return "replace"
	case Own:
		return "own"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Event is what a server message means for the books.
type Event[S, P comparable] struct {
	// Req is the request the message answers; nil for a message that
	// answers none (ParameterStatus, a notification, a FATAL at
	// shutdown).
	Req    *Request[S, P]
	Action Action
	// Last: the message is Req's last; the caller calls Complete once it
	// has handled it.
	Last bool
	// Skipped are the requests the server now skips after an error (Req
	// among them when it is an extended-protocol request), or the Syncs
	// it ignores in copy-in mode: out of the pipeline, what they recorded
	// undone, finished.
	Skipped []*Request[S, P]
}

// Server books a server message other than ReadyForQuery (see Ready).
func (pl *Pipeline[S, P]) Server(typ wire.ServerType) Event[S, P] {
	switch typ {
	case wire.ServerParameterStatus, wire.ServerNotificationResponse:
		return Event[S, P]{Action: Forward}
	case wire.ServerNoticeResponse:
		if h := pl.Head(); h != nil && h.Kind == Internal {
			return Event[S, P]{Req: h, Action: Own}
		}
		return Event[S, P]{Action: Forward}
	}
	h := pl.Head()
	if h == nil {
		return Event[S, P]{Action: Forward}
	}
	if typ == wire.ServerErrorResponse {
		return pl.serverError(h)
	}
	ev := Event[S, P]{Req: h, Action: forwardOrDrop(h)}
	switch h.Kind {
	case Internal:
		ev.Action = Own
		return ev
	case HiddenDescribe:
		ev.Action = Drop
		ev.Last = typ == wire.ServerRowDescription || typ == wire.ServerNoData
		return ev
	case Describe:
		ev.Last = typ == wire.ServerRowDescription || typ == wire.ServerNoData
		return ev
	}
	switch typ {
	case wire.ServerCommandComplete, wire.ServerEmptyQueryResponse:
		// A Query's statements each complete; its ReadyForQuery ends it.
		ev.Last = h.Kind != Query
	case wire.ServerPortalSuspended, wire.ServerParseComplete, wire.ServerBindComplete, wire.ServerCloseComplete:
		ev.Last = true
	case wire.ServerCopyInResponse:
		ev.Skipped = pl.copyIn(h)
	}
	return ev
}

func forwardOrDrop[S, P comparable](r *Request[S, P]) Action {
	if r.Discard {
		return Drop
	}
	return Forward
}

// serverError books an ErrorResponse to h. In the extended protocol the
// server then skips everything up to the next Sync.
func (pl *Pipeline[S, P]) serverError(h *Request[S, P]) Event[S, P] {
	ev := Event[S, P]{Req: h, Action: forwardOrDrop(h)}
	switch {
	case h.Kind == Internal:
		ev.Action = Own
		return ev
	case !h.Discard && h.Refusal != nil:
		ev.Action = Replace
	}
	if h.Extended() {
		pl.failed(h)
		ev.Skipped = pl.skipToSync()
	}
	return ev
}

// skipToSync drops every request before the next Sync, as the server
// ignores them after an error; when the Sync is not sent yet, requests
// pushed until it are refused as they come.
func (pl *Pipeline[S, P]) skipToSync() []*Request[S, P] {
	var dropped []*Request[S, P]
	for len(pl.queue) > 0 && pl.queue[0].Kind != Sync {
		d := pl.queue[0]
		if d.EndsWithReady() {
			// A Query or FunctionCall sent into the failed batch: no
			// ReadyForQuery will answer it.
			pl.uncount(d)
		}
		dropped = append(dropped, d)
		pl.queue[0] = nil
		pl.queue = pl.queue[1:]
	}
	if len(pl.queue) == 0 {
		pl.skipping = true
	}
	for i := len(dropped) - 1; i >= 0; i-- {
		pl.undo(dropped[i])
	}
	for _, d := range dropped {
		d.finish()
	}
	return dropped
}

// uncount takes back the ReadyForQuery of q, which will never come: the
// count of those due, and the transactions of the portals bound after q,
// which counted it.
func (pl *Pipeline[S, P]) uncount(q *Request[S, P]) {
	pl.readySent--
	for name, e := range pl.portals {
		if e.bound > q.seq {
			e.epoch--
			pl.portals[name] = e
		}
	}
}

// copyIn books h's CopyInResponse: the server is in copy-in mode, where it
// ignores Sync, so Syncs the client sent before ending the COPY get no
// ReadyForQuery.
func (pl *Pipeline[S, P]) copyIn(h *Request[S, P]) []*Request[S, P] {
	if !h.copying {
		h.copying = true
		if h.copyStarted != nil {
			close(h.copyStarted)
		}
	}
	var dropped []*Request[S, P]
	kept := pl.queue[:0]
	for _, q := range pl.queue {
		if q.Kind == Sync && q.During == h {
			pl.uncount(q)
			dropped = append(dropped, q)
			continue
		}
		kept = append(kept, q)
	}
	clear(pl.queue[len(kept):])
	pl.queue = kept
	for _, q := range dropped {
		q.finish()
	}
	return dropped
}

// Ready books a ReadyForQuery: the transaction status, and at idle the end
// of the transaction's portals. It is the last message of the request at
// the head. One that answers no request is passed on and booked as
// nothing.
func (pl *Pipeline[S, P]) Ready(status wire.TxStatus) Event[S, P] {
	h := pl.Head()
	if h == nil {
		return Event[S, P]{Action: Forward}
	}
	pl.readySeen++
	if status == wire.TxIdle {
		pl.savepoints = nil
		// Protocol-level portals do not outlive their transaction.
		for name, e := range pl.portals {
			if e.epoch < pl.readySeen {
				delete(pl.portals, name)
			}
		}
	}
	pl.status = status
	ev := Event[S, P]{Req: h, Action: Forward, Last: true}
	if h.Kind == Internal {
		ev.Action = Own
	}
	return ev
}

// TransactionEnded books the end of a transaction by a statement r ran (a
// COMMIT or a ROLLBACK, confirmed by its CommandComplete). PostgreSQL drops
// the transaction's portals then, the one running the statement too; the
// ReadyForQuery that follows may not show it, as another transaction can
// begin in the same query string ("COMMIT; BEGIN"). Every portal bound
// before r dies.
func (pl *Pipeline[S, P]) TransactionEnded(r *Request[S, P]) {
	pl.savepoints = nil
	for name, e := range pl.portals {
		if e.bound < r.seq {
			delete(pl.portals, name)
		}
	}
}

// Savepoint books a SAVEPOINT name that r ran.
func (pl *Pipeline[S, P]) Savepoint(name string, r *Request[S, P]) {
	pl.savepoints = append(pl.savepoints, savepoint{name, r.seq})
}

// findSavepoint is the newest savepoint name, or -1.
func (pl *Pipeline[S, P]) findSavepoint(name string) int {
	for i := len(pl.savepoints) - 1; i >= 0; i-- {
		if pl.savepoints[i].name == name {
			return i
		}
	}
	return -1
}

// Released books a RELEASE SAVEPOINT name: it and the later ones are gone;
// their portals now belong to the enclosing transaction.
func (pl *Pipeline[S, P]) Released(name string) {
	if i := pl.findSavepoint(name); i >= 0 {
		pl.savepoints = pl.savepoints[:i]
	}
}

// RolledBackTo books a ROLLBACK TO SAVEPOINT name that r ran: PostgreSQL
// drops the portals made since the savepoint (in the subtransactions it
// ends); the savepoint itself stays.
func (pl *Pipeline[S, P]) RolledBackTo(name string, r *Request[S, P]) {
	i := pl.findSavepoint(name)
	if i < 0 {
		return
	}
	since := pl.savepoints[i].seq
	pl.savepoints = pl.savepoints[:i+1]
	for n, e := range pl.portals {
		if e.bound > since && e.bound < r.seq {
			delete(pl.portals, n)
		}
	}
}

// Complete takes r, answered in full, off the head of the pipeline and
// finishes it. It reports false when r is not the head.
func (pl *Pipeline[S, P]) Complete(r *Request[S, P]) bool {
	if len(pl.queue) == 0 || pl.queue[0] != r {
		return false
	}
	pl.queue[0] = nil
	pl.queue = pl.queue[1:]
	r.finish()
	return true
}

// DiscardUntilSync marks the requests the server answers before the next
// Sync — or up to r when r is a simple Query, whose ReadyForQuery ends the
// failure — so that nothing more of their answers reaches the client
// after the proxy failed r's result.
func (pl *Pipeline[S, P]) DiscardUntilSync(r *Request[S, P]) {
	for _, q := range pl.queue {
		if q.Kind == Sync {
			return
		}
		q.Discard = true
		if q == r && q.Kind == Query {
			return
		}
	}
}

// End empties the pipeline when the session ends: nothing will answer.
func (pl *Pipeline[S, P]) End() []*Request[S, P] {
	q := pl.queue
	pl.queue = nil
	for _, r := range q {
		r.finish()
	}
	return q
}

// Head is the request the next answer belongs to, or nil.
func (pl *Pipeline[S, P]) Head() *Request[S, P] {
	if len(pl.queue) == 0 {
		return nil
	}
	return pl.queue[0]
}

// Last is the request sent last that still awaits its answer, or nil.
func (pl *Pipeline[S, P]) Last() *Request[S, P] {
	if len(pl.queue) == 0 {
		return nil
	}
	return pl.queue[len(pl.queue)-1]
}

// Len is the number of requests awaiting answers.
func (pl *Pipeline[S, P]) Len() int { return len(pl.queue) }

// Idle reports that nothing is in flight and no batch is open: a request
// of the proxy's own would run on its own.
func (pl *Pipeline[S, P]) Idle() bool { return len(pl.queue) == 0 && !pl.batchOpen }

// BatchOpen reports extended-protocol requests sent since the last Sync.
func (pl *Pipeline[S, P]) BatchOpen() bool { return pl.batchOpen }

// Status is the transaction status as of the last ReadyForQuery.
func (pl *Pipeline[S, P]) Status() wire.TxStatus { return pl.status }

// SyncBefore is the Sync to wait for before trusting the books on
// statement name: the last Sync sent, when the latest Parse or Close of
// name in flight was sent before it. Should that earlier batch fail, the
// server skips them. Nil when no wait is needed: within one batch the
// requests stand or fall together.
func (pl *Pipeline[S, P]) SyncBefore(name string) *Request[S, P] {
	if pl.readySent == pl.readySeen {
		// No Sync in flight: everything sent is one batch.
		return nil
	}
	var sync *Request[S, P]
	for i := len(pl.queue) - 1; i >= 0; i-- {
		switch q := pl.queue[i]; {
		case q.Kind == Sync:
			if sync == nil {
				sync = q
			}
		case q.Kind == Parse && q.Name == name,
			q.Kind == Close && q.Target == wire.TargetStatement && q.Name == name:
			return sync
		}
	}
	return nil
}

// Statement is the prepared statement name as the server will hold it
// once what was sent runs (zero when none).
func (pl *Pipeline[S, P]) Statement(name string) S { return pl.statements[name] }

// Portal is the portal name likewise.
func (pl *Pipeline[S, P]) Portal(name string) P { return pl.portals[name].portal }

// SetStatement records a statement made by SQL (PREPARE), which shares the
// protocol's namespace.
func (pl *Pipeline[S, P]) SetStatement(name string, s S) { pl.statements[name] = s }

// DeleteStatement forgets statement name (DEALLOCATE).
func (pl *Pipeline[S, P]) DeleteStatement(name string) { delete(pl.statements, name) }

// DeleteNamedStatements forgets every statement but the unnamed one
// (DEALLOCATE ALL).
func (pl *Pipeline[S, P]) DeleteNamedStatements() {
	for name := range pl.statements {
		if name != "" {
			delete(pl.statements, name)
		}
	}
}

// Reset forgets every statement and portal (DISCARD ALL).
func (pl *Pipeline[S, P]) Reset() {
	clear(pl.statements)
	clear(pl.portals)
}

// Statements lists the prepared statements.
func (pl *Pipeline[S, P]) Statements() iter.Seq2[string, S] {
	return func(yield func(string, S) bool) {
		for name, s := range pl.statements {
			if !yield(name, s) {
				return
			}
		}
	}
}

// NumStatements is the number of prepared statements.
func (pl *Pipeline[S, P]) NumStatements() int { return len(pl.statements) }
