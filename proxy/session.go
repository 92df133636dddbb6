package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/scramauth"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	startupTimeout    = 60 * time.Second
)

// session is one client connection and its dedicated upstream connection.
// Two goroutines run it: the frontend loop reads client messages, plans
// and rewrites them and writes them upstream; the backend loop reads server
// messages, asks the books what each answers, and rewrites results for the
// client.
//
// Ownership: the fields after mu are shared and guarded by it, held
// briefly and never across I/O or a wait. uw.mu (the upstream writer) is
// taken before mu, never after, so that booking a request and writing it
// are one step (see send). The frontend loop alone touches its frontend
// value; the backend loop its backend value and each request's resultFlow. The fields before mu are set at startup and read
// only afterwards, but for closeMu/closed/done.
type session struct {
	srv *Server
	id  uint64
	log *slog.Logger

	client   net.Conn
	cr       *msgReader[wire.ClientType]
	cw       *msgWriter[wire.ServerType]
	upstream net.Conn
	ur       *msgReader[wire.ServerType]
	uw       *msgWriter[wire.ClientType]

	user     string // the login role, from the startup packet
	database string
	closeMu  sync.Mutex
	closed   bool
	done     chan struct{} // closed by close
	outcome  string        // why it ended, for metrics.SessionsEnded (closeMu; see endAs)
	admitted bool          // counted against server.max_connections (handle's goroutine only)

	mu    sync.Mutex
	state *sessionState
	cat   *catalog
	// catStale: DDL ran since cat was loaded; catFailed: reloading it
	// since failed (see catalogUnknownLocked).
	catStale  bool
	catFailed bool
	caughtUp  time.Time         // when catchUpCatalog last made the session wait, or a reload last failed
	params    map[string]string // ParameterStatus as last reported
	// pl books the requests in flight and the statements and portals the
	// server holds for the client.
	pl         *books
	catTxDirty bool // DDL ran, or the catalog was reloaded, inside the current transaction
	// ddlInTx: DDL of this session's completed in the current
	// transaction: other sessions must reload once it ends (commits).
	ddlInTx bool
	// txGen is the catalog generation the current transaction's
	// statements were planned against (see catalogUnknownLocked).
	txGen uint64
	// listening: the session listens on dbguard.CatalogChannel (until the
	// client's UNLISTEN or DISCARD ALL; see relisten).
	listening bool
	abortTx   bool // the proxy failed a result in the current request

	// started: startup is over. busy: the frontend is handling a client
	// message. ending: the proxy is ending the session (drain, idle
	// timeout); the frontend handles no more messages. The idle timer
	// runs while the session rests; idleGen tells a stale one (see
	// lifetime.go).
	started   bool
	busy      bool
	ending    bool
	idleGen   uint64
	idleTimer *time.Timer

	// prepSrc is where each SQL-level prepared statement came from
	// (frontend only; see sequence.go).
	prepSrc map[*sqlrewrite.Prepared]prepSource
	// lastSQL is the SQL of the Query, Parse or Bind being handled, which
	// a refusal is audited with (frontend only).
	lastSQL string
	// fingerprints are the audit fingerprints of SQL texts the session
	// ran or was refused lately (fpMu).
	fpMu         sync.Mutex
	fingerprints map[string]string
}

func newSession(srv *Server, conn net.Conn, id uint64) *session {
	return &session{
		srv:    srv,
		id:     id,
		log:    srv.log.With("session", id),
		client: conn,
		cr:     newMsgReader[wire.ClientType](conn, srv.policy().limits.MaxMessageBytes),
		cw:     newMsgWriter[wire.ServerType](conn),
		done:   make(chan struct{}),
		params: map[string]string{},
		pl:     newBooks(),
	}
}

// close tears both connections down; safe to call more than once and from
// any goroutine.
func (ss *session) close() {
	ss.closeMu.Lock()
	defer ss.closeMu.Unlock()
	if ss.closed {
		return
	}
	ss.closed = true
	close(ss.done)
	ss.client.Close()
	if ss.upstream != nil {
		ss.upstream.Close()
	}
}

func (ss *session) run() {
	defer ss.close()
	defer ss.stopIdleTimer()
	defer func() {
		if ss.admitted {
			ss.srv.release()
		}
	}()
	if err := ss.guarded(ss.startup); err != nil {
		ss.startupFailed(err)
		return
	}
	ss.log.Debug("session started", "database", ss.database, "role", ss.state.current.sessionAuth)
	ss.mu.Lock()
	ss.started = true
	ss.mu.Unlock()
	ss.checkIdle()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ss.guarded(ss.backendLoop)
		ss.endAs(endOutcome(err, metrics.SessionUpstreamFailed))
		if !isQuiet(err) {
			ss.log.Info("upstream side ended", "err", err)
		}
		ss.close()
	}()
	err := ss.guarded(ss.frontendLoop)
	ss.endAs(endOutcome(err, metrics.SessionClosed))
	if !isQuiet(err) {
		ss.log.Info("client side ended", "err", err)
	}
	ss.close()
	<-done
	ss.releaseWaiters()
}

// startupFailed records and logs a session that never started. A cancel
// request is no session and counts as none.
func (ss *session) startupFailed(err error) {
	if errors.Is(err, errCancelHandled) {
		return
	}
	switch {
	case errors.Is(err, errPanicked):
		ss.endAs(metrics.SessionError)
	case isDisconnect(err):
		ss.endAs(metrics.SessionClosed)
	}
	// The other ends before the session started are refusals: TLS
	// required, a failed login, a bad startup packet.
	ss.endAs(metrics.SessionRefused)
	if !isQuiet(err) {
		ss.log.Info("session ended during startup", "err", err)
	}
}

// endOutcome is the outcome of a session loop that ended with err: a
// disconnect is the peer's doing (the disconnect outcome given), anything
// else an error.
func endOutcome(err error, disconnect string) string {
	if err == nil || isDisconnect(err) {
		return disconnect
	}
	return metrics.SessionError
}

func (ss *session) stopIdleTimer() {
	ss.mu.Lock()
	ss.ending = true
	ss.stopIdleTimerLocked()
	ss.mu.Unlock()
}

var (
	errCancelHandled  = errors.New("cancel request handled")
	errPanicked       = errors.New("internal error")
	errTooManyClients = errors.New("client refused: server.max_connections reached")
)

// guarded runs one side of the session, turning a panic (a bug in
// analysis or in a codec) into the end of this session only. The log
// names where it happened but not the panic's value, which could hold
// SQL text or a value.
func (ss *session) guarded(fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		what := fmt.Sprintf("%T", r)
		if re, ok := r.(runtime.Error); ok {
			what = re.Error()
		}
		ss.log.Error("session closed after an internal error", "panic", what, "stack", string(debug.Stack()))
		ss.close()
		err = errPanicked
	}()
	return fn()
}

// isQuiet reports an end of session not worth logging: none, a
// disconnect, or one already logged.
func isQuiet(err error) bool {
	return err == nil || isDisconnect(err) || errors.Is(err, errPanicked)
}

func isDisconnect(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errSessionClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// fatal sends a FATAL error to the client before the connection closes.
func (ss *session) fatal(code, msg string) {
	ss.cw.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "pgcloak: " + msg})
	ss.cw.end()
}

// maxAuthMessageBytes is PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: the
// largest password or SASL message it reads.
const maxAuthMessageBytes = 65535

// maxDiscardedAuthBytes is how much of an oversized authentication
// message is read before the error that fails the login.
const maxDiscardedAuthBytes = 1 << 20

// startup negotiates TLS with the client, reads its startup packet,
// connects upstream, relays authentication, and prepares session state.
func (ss *session) startup() error {
	timeout := startupTimeout
	if ss.srv.full() {
		timeout = refusalTimeout
	}
	ss.client.SetDeadline(time.Now().Add(timeout))
	sm, err := ss.readStartup()
	if err != nil {
		return err
	}
	if !ss.srv.admit() {
		ss.endAs(endTooMany.outcome)
		ss.cw.send(endTooMany.errorResponse())
		ss.cw.end()
		return errTooManyClients
	}
	ss.admitted = true
	if ss.srv.cfg.Server.TLS.Mode == "require" {
		if _, ok := ss.client.(*tls.Conn); !ok {
			ss.fatal("28000", "TLS is required: connect with sslmode=require")
			return errors.New("client refused: TLS required")
		}
	}
	if r := sm.Parameters["replication"]; r != "" && r != "false" && r != "off" && r != "no" && r != "0" {
		ss.fatal("0A000", "replication connections are not supported through the proxy")
		return errors.New("client refused: replication connection")
	}
	ss.user = sm.Parameters["user"]
	ss.database = sm.Parameters["database"]
	if ss.database == "" {
		ss.database = sm.Parameters["user"]
	}
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	up, err := ss.srv.dialUpstream(ctx)
	if err != nil {
		ss.endAs(metrics.SessionUpstreamFailed)
		ss.fatal("08006", "cannot connect to PostgreSQL")
		return fmt.Errorf("connecting upstream: %w", err)
	}
	ss.closeMu.Lock()
	if ss.closed {
		ss.closeMu.Unlock()
		up.Close()
		return net.ErrClosed
	}
	ss.upstream = up
	ss.closeMu.Unlock()
	up.SetDeadline(time.Now().Add(startupTimeout))
	// Server messages can be large (a wide row); the limit guards the
	// client side, which is untrusted.
	ss.ur = newMsgReader[wire.ServerType](up, 1<<30)
	ss.uw = newMsgWriter[wire.ClientType](up)
	if err := ss.uw.send(sm); err != nil {
		return err
	}
	if err := ss.uw.flush(); err != nil {
		return err
	}
	// Until the client has authenticated, its messages are at most
	// PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH.
	maxBody := ss.cr.max
	ss.cr.max = min(maxBody, maxAuthMessageBytes)
	if err := ss.relayAuth(); err != nil {
		return err
	}
	ss.cr.max = maxBody
	if err := ss.afterAuth(); err != nil {
		return err
	}
	ss.client.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})
	return nil
}

// readStartup handles SSLRequest, GSSENCRequest and CancelRequest and
// returns the StartupMessage.
func (ss *session) readStartup() (*pgproto3.StartupMessage, error) {
	tlsDone := false
	for {
		body, err := ss.cr.startup()
		if err != nil {
			var me *malformedError
			if errors.As(err, &me) {
				ss.fatal("08P01", "invalid startup packet")
			}
			return nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == sslRequestCode && len(body) == 4:
			if tlsDone {
				ss.fatal("08P01", "SSLRequest sent twice")
				return nil, errors.New("duplicate SSLRequest")
			}
			tlsDone = true
			if err := ss.answerSSL(); err != nil {
				return nil, err
			}
		case code == gssEncRequestCode && len(body) == 4:
			if _, err := ss.client.Write([]byte{byte(encRefused)}); err != nil {
				return nil, err
			}
		case code == cancelRequestCode:
			var req pgproto3.CancelRequest
			if err := req.Decode(body); err != nil {
				return nil, err
			}
			ss.srv.forwardCancel(&req)
			return nil, errCancelHandled
		case code>>16 == 3:
			var sm pgproto3.StartupMessage
			if err := sm.Decode(body); err != nil {
				ss.fatal("08P01", "invalid startup packet")
				return nil, err
			}
			if sm.Parameters["user"] == "" {
				ss.fatal("28000", "no PostgreSQL user name specified in startup packet")
				return nil, errors.New("startup packet without user")
			}
			return &sm, nil
		default:
			ss.fatal("08P01", fmt.Sprintf("unsupported frontend protocol %d.%d", code>>16, code&0xffff))
			return nil, fmt.Errorf("unsupported protocol code %d", code)
		}
	}
}

func (ss *session) answerSSL() error {
	if ss.srv.serverTLS == nil {
		_, err := ss.client.Write([]byte{byte(encRefused)})
		return err
	}
	// Bytes pipelined after SSLRequest would be plaintext injected into
	// the TLS stream (CVE-2021-23222); refuse them.
	if ss.cr.buffered() {
		return errors.New("client sent data after SSLRequest")
	}
	if _, err := ss.client.Write([]byte{byte(encAccepted)}); err != nil {
		return err
	}
	tc := tls.Server(ss.client, ss.srv.serverTLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake with client: %w", err)
	}
	// close (Server.Close, from another goroutine) reads ss.client.
	ss.closeMu.Lock()
	ss.client = tc
	ss.closeMu.Unlock()
	ss.cr = newMsgReader[wire.ClientType](tc, ss.srv.policy().limits.MaxMessageBytes)
	ss.cw = newMsgWriter[wire.ServerType](tc)
	return nil
}

// relayAuth passes the authentication exchange through unchanged, except
// for SASL: with server.auth.method scram the proxy terminates it
// (terminateSCRAM); otherwise SCRAM channel binding is not offered to the
// client: the client's TLS channel ends at the proxy, so a binding to it
// could never verify upstream.
func (ss *session) relayAuth() error {
	for {
		typ, body, err := ss.ur.next()
		if err != nil {
			return err
		}
		switch typ {
		case wire.ServerErrorResponse:
			ss.cw.raw(typ, body)
			ss.cw.flush()
			return errors.New("authentication failed upstream")
		case wire.ServerNegotiateProtocolVersion, wire.ServerNoticeResponse:
			ss.cw.raw(typ, body)
			continue
		case wire.ServerAuthentication:
		default:
			ss.fatal("08P01", fmt.Sprintf("unexpected message %q from PostgreSQL during authentication", byte(typ)))
			return fmt.Errorf("unexpected upstream message %q during auth", byte(typ))
		}
		if len(body) < 4 {
			return errors.New("short authentication message")
		}
		method := authCode(body)
		switch method {
		case authOK:
			return ss.cw.raw(typ, body)
		case authSASL: // terminated, or relayed without channel binding
			var sasl pgproto3.AuthenticationSASL
			if err := sasl.Decode(body); err != nil {
				return err
			}
			if ss.srv.verifiers != nil && scramauth.Usable(sasl.AuthMechanisms, ss.upstreamCert()) {
				if err := ss.terminateSCRAM(sasl.AuthMechanisms); err != nil {
					return err
				}
				continue
			}
			mechs := sasl.AuthMechanisms[:0]
			for _, m := range sasl.AuthMechanisms {
				if !strings.HasSuffix(m, "-PLUS") {
					mechs = append(mechs, m)
				}
			}
			sasl.AuthMechanisms = mechs
			if err := ss.cw.send(&sasl); err != nil {
				return err
			}
		case authSASLFinal: // no client response follows
			if err := ss.cw.raw(typ, body); err != nil {
				return err
			}
			continue
		default:
			if err := ss.cw.raw(typ, body); err != nil {
				return err
			}
		}
		if err := ss.cw.flush(); err != nil {
			return err
		}
		if err := ss.relayClientAuth(); err != nil {
			return err
		}
	}
}

func (ss *session) relayClientAuth() error {
	typ, body, err := ss.cr.next()
	var tl *tooLargeError
	if errors.As(err, &tl) {
		// PostgreSQL fails the login as it fails a wrong password.
		ss.cr.discard(tl, maxDiscardedAuthBytes)
		ss.fatal("28P01", `password authentication failed for user "`+roleName(ss.user)+`"`)
		return err
	}
	if err != nil {
		return err
	}
	if typ != wire.ClientPassword {
		ss.fatal("08P01", fmt.Sprintf("expected an authentication response, got message type %q", byte(typ)))
		return fmt.Errorf("unexpected client message %q during auth", byte(typ))
	}
	if err := ss.uw.raw(typ, body); err != nil {
		return err
	}
	return ss.uw.flush()
}

// afterAuth forwards ParameterStatus and BackendKeyData, then, before the
// first ReadyForQuery reaches the client, learns the session's search_path
// and the database's catalog snapshot through the session's own connection.
func (ss *session) afterAuth() error {
	for {
		typ, body, err := ss.ur.next()
		if err != nil {
			return err
		}
		switch typ {
		case wire.ServerParameterStatus:
			ss.noteParameter(body)
		case wire.ServerErrorResponse:
			ss.cw.raw(typ, body)
			ss.cw.flush()
			return errors.New("session refused upstream")
		case wire.ServerReadyForQuery:
			// initSession reads further messages into the reader's buffer,
			// which body points into.
			rfq := append([]byte(nil), body...)
			if err := ss.initSession(); err != nil {
				ss.fatal("58000", "cannot read the catalog: "+err.Error())
				return err
			}
			if err := ss.cw.raw(typ, rfq); err != nil {
				return err
			}
			return ss.cw.flush()
		}
		if err := ss.cw.raw(typ, body); err != nil {
			return err
		}
	}
}

func (ss *session) noteParameter(body []byte) {
	var ps pgproto3.ParameterStatus
	if ps.Decode(body) != nil {
		return
	}
	ss.mu.Lock()
	ss.params[ps.Name] = ps.Value
	ss.mu.Unlock()
}

func (ss *session) initSession() error {
	idx := ss.srv.policy().index
	gen := ss.srv.catalogs.generation(ss.database)
	cat := ss.srv.catalogs.fresh(ss.database, idx)
	// The roles come from PostgreSQL: a role's default (ALTER ROLE … SET
	// role) may make the current user another than the login role.
	queries := []string{"SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('extra_float_digits'), CURRENT_USER, SESSION_USER, pg_catalog.current_setting('bytea_output')"}
	if cat == nil {
		// Under catalogSearchPath until the end of this query string
		// (one implicit transaction).
		queries = append(queries, setCatalogPath, catalogQuery(idx))
	}
	// Last, so the answers above keep their places.
	queries = append(queries, listenCatalog)
	iq, err := ss.setupQuery(queries)
	if err != nil {
		return err
	}
	if len(iq.results) != len(queries) || len(iq.results[0]) != 1 || len(iq.results[0][0]) != 5 {
		return errors.New("unexpected answer to the session setup query")
	}
	setup := iq.results[0][0]
	initial := settings{
		sessionAuth: setup[3],
		searchPath:  sqlrewrite.ParseSearchPath(setup[0]),
		floatDigits: setup[1],
		byteaOutput: setup[4],
	}
	if setup[2] != setup[3] {
		initial.role = setup[2]
	}
	if cat == nil {
		cat, err = ss.catalogFrom(idx, gen, iq.results[2], func() ([][]string, error) {
			mq, err := ss.setupQuery([]string{setCatalogPath, migrationsQuery})
			if err != nil {
				return nil, err
			}
			if len(mq.results) != 2 {
				return nil, errors.New("unexpected answer to the migrations query")
			}
			return mq.results[1], nil
		})
		countCatalogLoad(err)
		if err != nil {
			return err
		}
		if !cat.migrationsUnknown {
			ss.srv.catalogs.store(ss.database, cat)
		}
	}
	ss.cat, ss.txGen = cat, cat.gen
	ss.listening = true
	ss.state = newSessionState(initial)
	return nil
}

// setupQuery runs queries as one simple Query before the session starts,
// forwarding the ParameterStatus messages that arrive meanwhile. Nothing of
// the client's exists yet: a simple Query may drop the unnamed statement.
func (ss *session) setupQuery(queries []string) (*internalQuery, error) {
	iq := newInternalQuery()
	if err := ss.uw.send(&pgproto3.Query{String: strings.Join(queries, ";\n")}); err != nil {
		return nil, err
	}
	if err := ss.uw.flush(); err != nil {
		return nil, err
	}
	for !iq.finished() {
		typ, body, err := ss.ur.next()
		if err != nil {
			return nil, err
		}
		if typ == wire.ServerParameterStatus {
			ss.noteParameter(body)
			if err := ss.cw.raw(typ, body); err != nil {
				return nil, err
			}
			continue
		}
		iq.handle(typ, body)
	}
	if iq.err != nil {
		return nil, iq.err
	}
	return iq, nil
}

// expandSearchPath resolves "$user" to the current role, as PostgreSQL does
// when it looks a name up.
func expandSearchPath(path []string, role string) []string {
	out := make([]string, 0, len(path))
	for _, s := range path {
		if s == "$user" {
			s = role
		}
		if s == "pg_catalog" {
			continue
		}
		out = append(out, s)
	}
	return out
}

// floatPrecision is keymap.TextContext.FloatPrecision for an
// extra_float_digits setting.
func floatPrecision(extraFloatDigits string) int {
	n, err := strconv.Atoi(extraFloatDigits)
	if err != nil || n > 0 {
		return 0
	}
	return max(1, 15+n)
}

// textContext is how the session's text values are formatted. TimeZone
// and DateStyle come from PostgreSQL's ParameterStatus reports; a
// DateStyle the proxy cannot read (the server always reports it
// normalised, as "ISO, MDY") leaves PostgreSQL's default, ISO with MDY
// order.
func (ss *session) textContext() *keymap.TextContext {
	ss.mu.Lock()
	tz := ss.params["TimeZone"]
	dateStyle := ss.params["DateStyle"]
	version := ss.params["server_version"]
	digits := ss.state.current.floatDigits
	byteaOutput := ss.state.current.byteaOutput
	ss.mu.Unlock()
	tc := &keymap.TextContext{Location: ss.srv.location(tz), FloatPrecision: floatPrecision(digits), ServerMajor: keymap.ServerMajor(version),
		ByteaEscape: strings.EqualFold(strings.TrimSpace(byteaOutput), "escape")}
	if out, order, ok := keymap.ParseDateStyle(dateStyle); ok {
		tc.DateOutput, tc.DateOrder = out, order
	}
	return tc
}
