// Package proxy is pgcloak's PostgreSQL wire-protocol proxy: the listener,
// TLS on both sides, startup and authentication passthrough, cancel
// forwarding, and the per-session message loop that applies sqlrewrite plans
// to client messages (encrypting literals, parameters and COPY data) and
// decrypts result columns by their origin on the way back.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"
	"github.com/pgcloak/pgcloak/scramauth"
)

// GrantSource answers which keys a role may use. The config file's grant
// table is one; grants read from Vault are another.
type GrantSource interface {
	For(role string) *policy.Grants
}

// Config is what a Server needs.
type Config struct {
	Server   policy.Server
	Upstream policy.Upstream
	Policy   *policy.Index
	Keyring  *keymap.Keyring
	Grants   GrantSource // nil: the policy's own grants
	Logger   *slog.Logger
	// Audit receives a record per statement on encrypted columns and per
	// refusal (nil: no audit trail).
	Audit *audit.Logger
	// CatalogTTL is how long a database's catalog snapshot is reused
	// before a new session reloads it (default 30s).
	CatalogTTL time.Duration
	// ConnectTimeout bounds opening a connection to PostgreSQL: the TCP
	// connect, the SSLRequest and the TLS handshake (default 10s).
	ConnectTimeout time.Duration
}

// policyState is what a policy reload swaps (Server.SetPolicy): sessions
// read it anew for each statement they plan, never keep it.
type policyState struct {
	index  *policy.Index
	grants GrantSource
	// limits are the server settings that apply without a restart:
	// message and statement sizes, max_connections and idle_timeout.
	limits policy.Server
	// at is when SetPolicy made it the policy in force.
	at time.Time
}

// Server accepts client connections and proxies each to PostgreSQL.
type Server struct {
	cfg       Config
	state     atomic.Pointer[policyState]
	log       *slog.Logger
	serverTLS *tls.Config // nil when TLS to clients is off
	// verifiers is set when the proxy terminates SCRAM; clientBinding is
	// then the channel binding of its certificate (nil without TLS).
	verifiers     *cachedVerifiers
	clientBinding *scramauth.ChannelBinding
	upTLS         *tls.Config // nil when TLS to PostgreSQL is off
	catalogs      *catalogCache
	locations     sync.Map // TimeZone name → *time.Location
	// migrationsWarned: the warning that a role cannot read
	// pgcloak.column_migrations was logged.
	migrationsWarned atomic.Bool
	// untrustedWarned: the warning that an untrusted
	// pgcloak.column_migrations is ignored was logged.
	untrustedWarned atomic.Bool

	draining atomic.Bool // Shutdown began

	mu sync.Mutex
	ln net.Listener
	// sessions are every connection being served, in startup too;
	// clients counts those admitted against server.max_connections.
	sessions map[*session]struct{}
	clients  int
	closed   bool
	wg       sync.WaitGroup
	nextID   atomic.Uint64
}

// NewServer validates cfg and prepares TLS.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Policy == nil || cfg.Keyring == nil {
		return nil, errors.New("proxy: Policy and Keyring are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CatalogTTL <= 0 {
		cfg.CatalogTTL = 30 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		catalogs: newCatalogCache(cfg.CatalogTTL),
		sessions: map[*session]struct{}{},
	}
	s.SetPolicy(cfg.Policy, cfg.Grants, cfg.Server)
	var err error
	if s.serverTLS, err = serverTLSConfig(cfg.Server.TLS); err != nil {
		return nil, err
	}
	if s.upTLS, err = upstreamTLSConfig(cfg.Upstream); err != nil {
		return nil, err
	}
	if err := s.setUpAuth(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetPolicy makes idx, grants (nil: the policy's own) and the size limits of
// server apply to every statement planned from now on, in every session:
// a session reloads its catalog snapshot, under the new policy, before it
// plans its next statement (see refreshCatalogIfStale), and a prepared
// statement whose plan the new policy changes is refused until it is
// prepared again. Of server, only the limits (message and statement sizes,
// max_connections, idle_timeout) apply here; the others need a restart.
func (s *Server) SetPolicy(idx *policy.Index, grants GrantSource, server policy.Server) {
	if grants == nil {
		grants = idx.Grants()
	}
	if server.MaxMessageBytes <= 0 {
		server.MaxMessageBytes = 64 << 20
	}
	s.state.Store(&policyState{index: idx, grants: grants, limits: server, at: time.Now()})
}

// policy is the policy in force.
func (s *Server) policy() *policyState { return s.state.Load() }

// setUpAuth prepares SCRAM termination when server.auth asks for it.
func (s *Server) setUpAuth() error {
	var err error
	if s.verifiers, err = newVerifierSource(s.cfg.Server.Auth, s.cfg.Upstream.Address, s.dialUpstream); err != nil || s.verifiers == nil {
		return err
	}
	if s.serverTLS != nil {
		leaf, err := x509.ParseCertificate(s.serverTLS.Certificates[0].Certificate[0])
		if err != nil {
			return fmt.Errorf("proxy: server certificate: %w", err)
		}
		if s.clientBinding = scramauth.ServerEndpoint(leaf); s.clientBinding == nil {
			s.log.Warn("the server certificate's signature algorithm has no tls-server-end-point channel binding: SCRAM-SHA-256-PLUS is not offered, and clients with channel_binding=require cannot log in",
				"algorithm", leaf.SignatureAlgorithm.String())
		}
	}
	return nil
}

func serverTLSConfig(c policy.ServerTLS) (*tls.Config, error) {
	if c.Mode == "disable" || c.CertFile == "" {
		if c.Mode == "require" {
			return nil, errors.New("proxy: server.tls.mode require needs cert_file and key_file")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: loading server certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func upstreamTLSConfig(u policy.Upstream) (*tls.Config, error) {
	switch u.TLS.Mode {
	case "", "disable":
		return nil, nil
	case "prefer", "require":
		// Encryption without authentication of the server, as libpq's
		// sslmode=require does.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil //nolint:gosec
	case "verify-full":
		host, _, err := net.SplitHostPort(u.Address)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream.address: %w", err)
		}
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if u.TLS.CAFile != "" {
			pem, err := os.ReadFile(u.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("proxy: upstream.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("proxy: upstream.tls.ca_file %s holds no certificate", u.TLS.CAFile)
			}
			cfg.RootCAs = pool
		}
		return cfg, nil
	default:
		return nil, fmt.Errorf("proxy: unknown upstream.tls.mode %q", u.TLS.Mode)
	}
}

// Serve accepts connections on ln until Close or Shutdown, and then
// returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.Draining() {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	s.log.Info("pgcloak listening", "addr", ln.Addr().String(), "upstream", s.cfg.Upstream.Address)
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.stopped() {
				return nil
			}
			// Back off on transient accept errors (fd exhaustion) instead
			// of spinning or dying.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track() {
			conn.Close()
			return nil
		}
		go s.handle(conn)
	}
}

// track counts a connection's goroutine in wg unless the server stopped:
// under mu, so that no Add follows the Wait of Close or Shutdown.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.Draining() {
		return false
	}
	s.wg.Add(1)
	return true
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Addr is the listening address (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// stopped reports Close or Shutdown called: the listener closed on purpose.
func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.Draining()
}

// Close stops accepting, closes every session and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for ss := range s.sessions {
		ss.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.verifiers != nil {
		s.verifiers.close()
	}
	return nil
}

func (s *Server) handle(conn net.Conn) {
	defer s.wg.Done()
	ss := newSession(s, conn, s.nextID.Add(1))
	s.mu.Lock()
	if s.closed || s.Draining() {
		// Stopped since Serve accepted it.
		s.mu.Unlock()
		conn.Close()
		return
	}
	if limit := s.policy().limits.MaxConnections; limit > 0 && len(s.sessions) >= maxOpenConnections(limit) {
		// Connections still in startup (no startup packet yet, or
		// authenticating) are not counted against max_connections, but
		// each holds a socket for up to startupTimeout: bounded as
		// PostgreSQL bounds its children, or silent connections exhaust
		// the process's file descriptors.
		s.mu.Unlock()
		metrics.SessionsEnded.WithLabelValues(endTooMany.outcome).Inc()
		conn.SetWriteDeadline(time.Now().Add(endWriteTimeout))
		w := newMsgWriter[wire.ServerType](conn)
		w.send(endTooMany.errorResponse())
		w.end()
		conn.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	metrics.SessionsTotal.Inc()
	metrics.SessionsActive.Inc()
	defer func() {
		metrics.SessionsActive.Dec()
		if outcome := ss.endedAs(); outcome != "" {
			metrics.SessionsEnded.WithLabelValues(outcome).Inc()
		}
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	ss.run()
}

// maxOpenConnections bounds the connections open at once, sessions and
// connections in startup (cancel requests among them), under
// server.max_connections limit.
func maxOpenConnections(limit int) int { return limit + max(limit, 32) }

// dialUpstream opens a connection to PostgreSQL, negotiating TLS as
// configured, within Config.ConnectTimeout (and ctx).
func (s *Server) dialUpstream(ctx context.Context) (net.Conn, error) {
	start := time.Now()
	conn, err := s.openUpstream(ctx)
	if err != nil {
		metrics.UpstreamConnectErrors.Inc()
		return nil, err
	}
	metrics.UpstreamConnectSeconds.Observe(time.Since(start).Seconds())
	return conn, nil
}

// CheckUpstream opens a connection to PostgreSQL as a session would (TCP,
// and TLS when configured) and closes it: whether sessions could start
// now. It sends no startup packet, so PostgreSQL logs nothing.
func (s *Server) CheckUpstream(ctx context.Context) error {
	conn, err := s.dialUpstream(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Listening reports whether the server accepts connections.
func (s *Server) Listening() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln != nil && !s.closed
}

func (s *Server) openUpstream(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Upstream.Address)
	if err != nil {
		return nil, err
	}
	if s.upTLS == nil {
		return conn, nil
	}
	// The SSLRequest's answer and the handshake are bounded too: a server
	// that accepts and then says nothing must not hold a session forever.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	tlsConn, err := s.upstreamTLS(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tlsConn.SetDeadline(time.Time{})
	return tlsConn, nil
}

func (s *Server) upstreamTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, err
	}
	switch encAnswer(answer[0]) {
	case encAccepted:
		tc := tls.Client(conn, s.upTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake with PostgreSQL: %w", err)
		}
		return tc, nil
	case encRefused:
		if s.cfg.Upstream.TLS.Mode == "prefer" {
			return conn, nil
		}
		return nil, errors.New("PostgreSQL refused TLS but upstream.tls.mode requires it")
	default:
		return nil, fmt.Errorf("unexpected answer %q to SSLRequest", answer[0])
	}
}

// forwardCancel passes a CancelRequest to PostgreSQL. Every session has its
// own upstream connection whose BackendKeyData the client received
// unchanged, so the request names the right backend as it stands.
func (s *Server) forwardCancel(req *pgproto3.CancelRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.dialUpstream(ctx)
	if err != nil {
		s.log.Warn("forwarding cancel request", "err", err)
		return
	}
	defer conn.Close()
	buf, err := req.Encode(nil)
	if err != nil {
		return
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write(buf)
	// PostgreSQL closes the connection after acting on the request.
	var b [1]byte
	conn.Read(b[:])
}

// location loads a PostgreSQL TimeZone setting as a Go location, caching
// it; a POSIX offset string (SET TIME ZONE 2 reports <+02>-02) becomes a
// fixed zone; names Go does not know fall back to UTC.
func (s *Server) location(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	if l, ok := s.locations.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		var ok bool
		if l, ok = posixFixedZone(name); !ok {
			l = time.UTC
		}
	}
	s.locations.Store(name, l)
	return l
}
