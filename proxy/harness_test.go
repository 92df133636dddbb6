package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// testPolicy is the policy most proxy tests run under.
const testPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
    - {name: dates, kind: randomized}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
    - {table: public.patients, column: dob, key: dates, type: date}
    - {table: public.visits, column: patient_ssn, key: ssn, type: text}
    - {table: public.visits, column: note, key: clinical, type: text}
  roles:
    - {role: doctor, read: [ssn, clinical, dates], write: [ssn, clinical, dates]}
    - {role: billing, read: [ssn], on_denied: "null"}
    - {role: auditor, read: [], on_denied: mask}
    - {role: archivist, read: [], on_denied: ciphertext}
    - {role: strict, read: [ssn], on_denied: error}
`

// testSchema creates the tables of testPolicy and its roles.
const testSchema = `
CREATE TABLE public.patients (
  id        serial PRIMARY KEY,
  name      text NOT NULL,
  ssn       bytea UNIQUE,
  diagnosis bytea,
  dob       bytea
);
CREATE TABLE public.visits (
  id          serial PRIMARY KEY,
  patient_ssn bytea,
  note        bytea,
  visited_on  date
);
CREATE SCHEMA other;
CREATE TABLE other.patients (id int, name text, ssn text);
GRANT USAGE ON SCHEMA other TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA public, other TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
`

var rolesOnce sync.Map // server address → created

// createRoles makes the test roles once per server (roles are cluster-wide).
func createRoles(t testing.TB, pg *testenv.PG) {
	t.Helper()
	if _, done := rolesOnce.LoadOrStore(pg.Address(), true); done {
		return
	}
	for _, r := range []string{"doctor", "billing", "auditor", "archivist", "strict", "nokeys"} {
		pg.ExecAdmin(t, fmt.Sprintf(`DO $$ BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`, r))
	}
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE clinicians NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.ExecAdmin(t, `GRANT clinicians TO doctor, billing, auditor, archivist, strict, nokeys`)
	pg.ExecAdmin(t, `GRANT billing, auditor TO doctor`)
	// The attacker of the attack tests: an ordinary login role, member of
	// nothing.
	pg.ExecAdmin(t, `DO $$ BEGIN CREATE ROLE mallory LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
}

// harness is a proxy in front of a fresh test database.
type harness struct {
	t      testing.TB
	pg     *testenv.PG
	srv    *proxy.Server
	addr   string
	store  keymap.Store
	idx    *policy.Index
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harnessOption func(*proxy.Config)

// newHarness starts a proxy for policyYAML in front of a fresh database set
// up with schema (run as superuser directly, not through the proxy).
func newHarness(t testing.TB, policyYAML, schema string, opts ...harnessOption) *harness {
	t.Helper()
	pg := testenv.Postgres(t)
	createRoles(t, pg)
	if schema != "" {
		pg.ExecAdmin(t, schema)
	}
	store, _, err := keymap.NewLocalStoreInDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return startProxy(t, pg, store, policyYAML, opts...)
}

// newHarnessOn starts another proxy in front of base's database, with
// base's keys and a catalog cache of its own.
func newHarnessOn(t testing.TB, base *harness, policyYAML string, opts ...harnessOption) *harness {
	t.Helper()
	return startProxy(t, base.pg, base.store, policyYAML, opts...)
}

// startProxy starts a proxy for policyYAML in front of pg, creating the
// policy's keys in store when missing.
func startProxy(t testing.TB, pg *testenv.PG, store keymap.Store, policyYAML string, opts ...harnessOption) *harness {
	t.Helper()
	cfg, err := policy.Load([]byte(policyYAML))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	if _, err := keymap.CreateMissing(context.Background(), store, cfg.Policy.Keys); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, pg: pg, store: store, idx: policy.NewIndex(cfg.Policy), logBuf: &syncBuffer{}}
	pcfg := proxy.Config{
		Server:   policy.Server{Listen: "127.0.0.1:0", MaxMessageBytes: 1 << 20, TLS: policy.ServerTLS{Mode: "allow"}},
		Upstream: policy.Upstream{Address: pg.Address(), TLS: policy.UpstreamTLS{Mode: "disable"}},
		Policy:   h.idx,
		Keyring:  keymap.NewKeyring(store, time.Minute),
		Logger:   slog.New(slog.NewTextHandler(io.MultiWriter(h.logBuf, testLogWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&pcfg)
	}
	srv, err := proxy.NewServer(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.srv, h.addr = srv, ln.Addr().String()
	return h
}

// testLogWriter sends proxy logs to the test log (shown on failure).
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// dsn is a connection string through the proxy as role.
func (h *harness) dsn(role string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", role, h.addr, h.pg.Database)
}

// connect opens a pgx connection through the proxy as role.
func (h *harness) connect(role string) *pgx.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn(role))
	if err != nil {
		h.t.Fatalf("connect through proxy as %s: %v", role, err)
	}
	h.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// direct opens a superuser connection straight to PostgreSQL.
func (h *harness) direct() *pgx.Conn { return h.pg.Connect(h.t) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// protoClient is a raw protocol client: a TCP connection to the proxy with
// pgproto3 framing, for what pgx does not let a test send.
type protoClient struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
	// lastErr is the last ErrorResponse received.
	lastErr *pgproto3.ErrorResponse
	// notices are the NoticeResponse messages seen.
	notices []string
}

// protoDial opens a TCP connection to the proxy, closed at cleanup.
func protoDial(t testing.TB, h *harness) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// protoStartup is the StartupMessage a raw client sends.
func protoStartup(role, database string) *pgproto3.StartupMessage {
	return &pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": role, "database": database, "application_name": "pgcloak-proto-test"},
	}
}

// protoConnect opens a raw client session as role (trust authentication)
// and reads up to the first ReadyForQuery.
func protoConnect(t testing.TB, h *harness, role string) *protoClient {
	t.Helper()
	conn := protoDial(t, h)
	c := &protoClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	c.send(protoStartup(role, h.pg.Database))
	for {
		msg := c.recv()
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
		case *pgproto3.ReadyForQuery:
			if m.TxStatus != 'I' {
				t.Fatalf("first ReadyForQuery has status %q", m.TxStatus)
			}
			return c
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup as %s: %s %s", role, m.Code, m.Message)
		default:
			t.Fatalf("startup as %s: unexpected %T", role, msg)
		}
	}
}

func (c *protoClient) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv reads one message, failing the test after 20s.
func (c *protoClient) recv() pgproto3.BackendMessage {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	return msg
}

// token summarises a backend message for comparisons; ParameterStatus and
// NoticeResponse give "" (callers skip them).
func (c *protoClient) token(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ParseComplete:
		return "ParseComplete"
	case *pgproto3.BindComplete:
		return "BindComplete"
	case *pgproto3.CloseComplete:
		return "CloseComplete"
	case *pgproto3.NoData:
		return "NoData"
	case *pgproto3.PortalSuspended:
		return "PortalSuspended"
	case *pgproto3.EmptyQueryResponse:
		return "EmptyQuery"
	case *pgproto3.ParameterDescription:
		parts := make([]string, len(m.ParameterOIDs))
		for i, o := range m.ParameterOIDs {
			parts[i] = fmt.Sprint(o)
		}
		return "Params:" + strings.Join(parts, ",")
	case *pgproto3.RowDescription:
		parts := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			parts[i] = fmt.Sprintf("%s/%d", f.Name, f.DataTypeOID)
		}
		return "Row:" + strings.Join(parts, ",")
	case *pgproto3.DataRow:
		parts := make([]string, len(m.Values))
		for i, v := range m.Values {
			if v == nil {
				parts[i] = "NULL"
			} else {
				parts[i] = string(v)
			}
		}
		return "D:" + strings.Join(parts, ",")
	case *pgproto3.CommandComplete:
		return "C:" + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		cp := *m
		c.lastErr = &cp
		return "E:" + m.Code
	case *pgproto3.ReadyForQuery:
		return "Z:" + string(m.TxStatus)
	case *pgproto3.CopyInResponse:
		return "CopyIn"
	case *pgproto3.CopyOutResponse:
		return "CopyOut"
	case *pgproto3.CopyData:
		return "d:" + string(m.Data)
	case *pgproto3.CopyDone:
		return "CopyDone"
	case *pgproto3.NotificationResponse:
		return "A:" + m.Channel + ":" + m.Payload
	case *pgproto3.NoticeResponse:
		c.notices = append(c.notices, m.Message)
		return ""
	case *pgproto3.ParameterStatus:
		return ""
	default:
		return fmt.Sprintf("%T", msg)
	}
}

// recvN reads n messages (not counting ParameterStatus and notices).
func (c *protoClient) recvN(n int) []string {
	c.t.Helper()
	var out []string
	for len(out) < n {
		if tok := c.token(c.recv()); tok != "" {
			out = append(out, tok)
		}
	}
	return out
}

// recvReady reads messages up to and including ReadyForQuery.
func (c *protoClient) recvReady() []string {
	c.t.Helper()
	var out []string
	for {
		tok := c.token(c.recv())
		if tok == "" {
			continue
		}
		out = append(out, tok)
		if strings.HasPrefix(tok, "Z:") {
			return out
		}
	}
}

// query runs a simple Query and returns the answer's tokens.
func (c *protoClient) query(sql string) []string {
	c.t.Helper()
	c.send(&pgproto3.Query{String: sql})
	return c.recvReady()
}

func wantTokens(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// expectEOF reads from conn until it is closed, returning whatever arrived;
// it fails if the connection stays open for 10s.
func expectEOF(t testing.TB, conn net.Conn) []byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 10s (received %q)", data)
	}
	return data
}

// backendErrors decodes the ErrorResponse messages in raw server bytes.
func backendErrors(data []byte) []*pgproto3.ErrorResponse {
	var out []*pgproto3.ErrorResponse
	for len(data) >= 5 {
		n := int(binary.BigEndian.Uint32(data[1:5]))
		if n < 4 || len(data) < 1+n {
			break
		}
		if data[0] == 'E' {
			var er pgproto3.ErrorResponse
			if er.Decode(data[5:1+n]) == nil {
				out = append(out, &er)
			}
		}
		data = data[1+n:]
	}
	return out
}

// stillServes checks that a fresh session through the proxy works.
func stillServes(t testing.TB, h *harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn("doctor"))
	if err != nil {
		t.Fatalf("proxy no longer accepts sessions: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn = $1", "no-such-ssn").Scan(&n); err != nil || n != 0 {
		t.Fatalf("proxy no longer serves queries: n=%d err=%v", n, err)
	}
}

// connectCfg opens a pgx connection from a DSN, closed at cleanup.
func connectDSN(t testing.TB, dsn string, tweak func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, nil
}

func withServerTLS(mode, certFile, keyFile string) harnessOption {
	return func(c *proxy.Config) {
		c.Server.TLS = policy.ServerTLS{Mode: mode, CertFile: certFile, KeyFile: keyFile}
	}
}

func withUpstreamTLS(mode, caFile string) harnessOption {
	return func(c *proxy.Config) {
		c.Upstream.TLS = policy.UpstreamTLS{Mode: mode, CAFile: caFile}
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and
// localhost and its key, returning their paths.
func selfSignedCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pgcloak proxy test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// upstreamSSL reports pg_stat_ssl's view of the session's upstream leg.
func upstreamSSL(t *testing.T, conn *pgx.Conn) bool {
	t.Helper()
	var ssl bool
	if err := conn.QueryRow(ctxT(t), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return ssl
}

func isTLS(conn *pgx.Conn) bool {
	_, ok := conn.PgConn().Conn().(*tls.Conn)
	return ok
}

// insertPatients inserts rows through the proxy as doctor.
func insertPatients(t *testing.T, conn *pgx.Conn, rows ...[3]string) {
	t.Helper()
	for _, r := range rows {
		if _, err := conn.Exec(ctxT(t), "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
}

// recvWithin reads one token, or returns the read error (a timeout means
// the proxy hangs).
func recvWithin(c *protoClient, d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	msg, err := c.fe.Receive()
	if err != nil {
		return "", err
	}
	return c.token(msg), nil
}

// recvReadyWithin reads tokens up to ReadyForQuery, failing when the proxy
// stays silent for d.
func recvReadyWithin(t *testing.T, c *protoClient, d time.Duration) []string {
	t.Helper()
	var got []string
	for {
		tok, err := recvWithin(c, d)
		if err != nil {
			t.Fatalf("after %q: %v (the proxy hangs)", got, err)
		}
		if tok == "" {
			continue
		}
		got = append(got, tok)
		if strings.HasPrefix(tok, "Z:") {
			return got
		}
	}
}

// recvReadyAfter sends msg and reads its answer, failing if the proxy
// hangs.
func recvReadyAfter(t *testing.T, c *protoClient, msg pgproto3.FrontendMessage) []string {
	t.Helper()
	c.send(msg)
	return recvReadyWithin(t, c, 5*time.Second)
}
