package proxy

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"
)

// This file ends sessions on the proxy's own initiative: a graceful
// shutdown (Server.Shutdown), server.idle_timeout and
// server.max_connections. A session is ended gracefully only at rest — idle
// outside a transaction, nothing in flight, the frontend not handling a
// message — so that no answer is cut short and no transaction is lost; the
// session loops check for that at the moments it can begin (checkIdle).

// ending is why the proxy ends a session: the FATAL error the client gets
// and the outcome metrics count.
type ending struct {
	code    string
	message string
	outcome string
}

// The endings word their errors as PostgreSQL does for the same cause, so
// that clients and poolers that recognise PostgreSQL's read the proxy's
// alike.
var (
	endDrained = ending{code: "57P01", message: "terminating connection due to administrator command", outcome: metrics.SessionDrained}
	endIdle    = ending{code: "57P05", message: "terminating connection due to idle-session timeout", outcome: metrics.SessionIdleTimeout}
	endTooMany = ending{code: "53300", message: "sorry, too many clients already", outcome: metrics.SessionRefused}
)

func (e ending) errorResponse() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: e.code, Message: e.message}
}

const (
	// refusalTimeout bounds reading the startup packet of a connection
	// that arrives at server.max_connections: one the proxy will likely
	// refuse must not hold a goroutine and a socket for the full
	// startupTimeout.
	refusalTimeout = 10 * time.Second
	// endWriteTimeout bounds writing the FATAL error to a client that
	// does not read: the session closes anyway.
	endWriteTimeout = 2 * time.Second
)

// restingLocked reports the session at rest: started, not being ended,
// the frontend not handling a message, nothing in flight and no
// transaction open. The caller holds ss.mu.
func (ss *session) restingLocked() bool {
	return ss.started && !ss.busy && !ss.ending && ss.pl.Idle() && ss.pl.Status() == wire.TxIdle
}

// checkIdle runs when the session may have come to rest: after a
// ReadyForQuery reached the client's buffer, after the frontend handled a
// message, after startup. At rest, a draining server ends it; otherwise
// the idle timeout starts counting.
func (ss *session) checkIdle() {
	ss.mu.Lock()
	if !ss.restingLocked() {
		ss.mu.Unlock()
		return
	}
	if ss.srv.Draining() {
		ss.ending = true
		ss.mu.Unlock()
		ss.endAtRest(endDrained)
		return
	}
	ss.armIdleTimerLocked()
	ss.mu.Unlock()
}

// armIdleTimerLocked starts server.idle_timeout for the rest that began
// now. A timer armed earlier is stale: idleGen tells its callback so even
// when Stop comes too late.
func (ss *session) armIdleTimerLocked() {
	d := ss.srv.policy().limits.IdleTimeoutDuration()
	if d <= 0 {
		return
	}
	ss.stopIdleTimerLocked()
	gen := ss.idleGen
	ss.idleTimer = time.AfterFunc(d, func() { ss.idleExpired(gen) })
}

func (ss *session) stopIdleTimerLocked() {
	ss.idleGen++
	if ss.idleTimer != nil {
		ss.idleTimer.Stop()
		ss.idleTimer = nil
	}
}

// idleExpired ends the session if it has rested since the timer of
// generation gen was armed.
func (ss *session) idleExpired(gen uint64) {
	ss.mu.Lock()
	if gen != ss.idleGen || !ss.restingLocked() {
		ss.mu.Unlock()
		return
	}
	ss.ending = true
	ss.mu.Unlock()
	ss.endAtRest(endIdle)
}

// beginMessage marks the frontend busy with a client message, which ends
// the rest; false when the session is being ended, and the message must
// be dropped.
func (ss *session) beginMessage() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ending {
		return false
	}
	ss.busy = true
	ss.stopIdleTimerLocked()
	return true
}

// endMessage marks the frontend done with a message.
func (ss *session) endMessage() {
	ss.mu.Lock()
	ss.busy = false
	ss.mu.Unlock()
	ss.checkIdle()
}

// endIfResting ends the session now if it is at rest (Shutdown's first
// pass); a session that is not will end itself when it comes to rest.
func (ss *session) endIfResting(e ending) {
	ss.mu.Lock()
	if !ss.restingLocked() {
		ss.mu.Unlock()
		return
	}
	ss.ending = true
	ss.mu.Unlock()
	ss.endAtRest(e)
}

// endAtRest sends the client e's FATAL error, tells PostgreSQL the session
// ends (Terminate, so it logs a clean disconnect), and closes both legs.
// The caller set ss.ending.
func (ss *session) endAtRest(e ending) {
	ss.log.Info("ending session", "reason", e.outcome)
	ss.endAs(e.outcome)
	ss.tellClient(e)
	ss.send(nil, &pgproto3.Terminate{})
	ss.uw.flush()
	ss.close()
}

// endNow ends the session whatever it is doing (a drain's deadline): the
// client gets e's FATAL error if it is past startup and the write gets
// through, the result in flight is cut short, and PostgreSQL rolls back
// an open transaction when its connection closes.
func (ss *session) endNow(e ending) {
	ss.mu.Lock()
	started, already := ss.started, ss.ending
	ss.ending = true
	ss.mu.Unlock()
	if started && !already {
		ss.log.Info("ending session", "reason", e.outcome, "forced", true)
		ss.endAs(e.outcome)
		ss.tellClient(e)
	}
	ss.close()
}

// tellClient writes e's FATAL error after whatever the client's buffer
// holds (a ReadyForQuery, at rest), within endWriteTimeout: a client that
// does not read, or a backend loop blocked writing to it, must not hold
// the end up.
func (ss *session) tellClient(e ending) {
	ss.clientConn().SetWriteDeadline(time.Now().Add(endWriteTimeout))
	ss.cw.send(e.errorResponse())
	ss.cw.end()
}

// clientConn is the client connection, which startup may replace by its
// TLS layer.
func (ss *session) clientConn() interface{ SetWriteDeadline(time.Time) error } {
	ss.closeMu.Lock()
	defer ss.closeMu.Unlock()
	return ss.client
}

// endAs records why the session ended; the first reason stands, as later
// ones are consequences of it (the other loop seeing the close).
func (ss *session) endAs(outcome string) {
	ss.closeMu.Lock()
	defer ss.closeMu.Unlock()
	if ss.outcome == "" {
		ss.outcome = outcome
	}
}

// endedAs is the recorded outcome ("" when none).
func (ss *session) endedAs() string {
	ss.closeMu.Lock()
	defer ss.closeMu.Unlock()
	return ss.outcome
}

// admit counts a session that sent its startup packet against
// server.max_connections; false when the limit is reached. Cancel requests
// never get here: PostgreSQL serves them at its limit too.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.policy().limits.MaxConnections; limit > 0 && s.clients >= limit {
		return false
	}
	s.clients++
	return true
}

func (s *Server) release() {
	s.mu.Lock()
	s.clients--
	s.mu.Unlock()
}

// full reports server.max_connections reached, as a new connection is
// accepted (admit decides).
func (s *Server) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.policy().limits.MaxConnections
	return limit > 0 && s.clients >= limit
}

// Sessions is the number of client sessions open (past their startup
// packet; cancel requests are not sessions).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients
}

// Draining reports that Shutdown has begun: the server accepts no more
// connections and ends its sessions as they come to rest.
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown stops the server gracefully, as PostgreSQL's smart shutdown
// does for idle sessions and its fast shutdown does at the end: it stops
// accepting at once, ends every session at rest (idle outside a
// transaction) with FATAL 57P01, and lets the others finish their
// transaction and end as they come to rest. When ctx ends first, the
// sessions left are ended at once (their transactions roll back) and
// Shutdown returns ctx's error once they are gone; otherwise nil. Close
// still ends everything at once, during a Shutdown too.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.startDraining() {
		return s.Close()
	}
	for _, ss := range s.openSessions() {
		ss.endIfResting(endDrained)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return s.Close()
	case <-ctx.Done():
	}
	s.log.Warn("drain timeout: ending the sessions left", "sessions", s.Sessions())
	for _, ss := range s.openSessions() {
		// In parallel: each may wait endWriteTimeout for its client.
		go ss.endNow(endDrained)
	}
	<-done
	s.Close()
	return ctx.Err()
}

// startDraining marks the server draining and closes the listener; false
// when it was closed already.
func (s *Server) startDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.draining.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
	return true
}

func (s *Server) openSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}
