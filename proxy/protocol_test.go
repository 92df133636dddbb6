package proxy_test

// Protocol tests: startup and authentication, TLS on both legs, cancel,
// the simple and extended query protocols, pipelines, COPY, notices and
// notifications, all through the proxy in front of a real PostgreSQL.

import (
	"bytes"
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// ---------------------------------------------------------------------------
// helpers

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

// proxyURL is a connection string through the proxy with explicit
// credentials and query parameters.
func proxyURL(h *harness, user, password, query string) string {
	cred := user
	if password != "" {
		cred += ":" + password
	}
	return fmt.Sprintf("postgres://%s@%s/%s?%s", cred, h.addr, h.pg.Database, query)
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

const protoPassword = "pgcloak-proto-pw"

// createPasswordRoles creates testenv's password roles with protoPassword,
// pgcloak_md5's stored as md5 and the others as SCRAM. Roles are
// cluster-wide and other tests may have made them: the passwords are set
// again every time.
func createPasswordRoles(t testing.TB, pg *testenv.PG) {
	t.Helper()
	for _, r := range []struct{ role, enc string }{
		{testenv.RoleMD5, "md5"},
		{testenv.RolePassword, "scram-sha-256"},
		{testenv.RoleSCRAM, "scram-sha-256"},
	} {
		pg.ExecAdmin(t, fmt.Sprintf(`SET password_encryption = '%[2]s';
DO $$ BEGIN
  CREATE ROLE %[1]s LOGIN PASSWORD '%[3]s';
EXCEPTION WHEN duplicate_object THEN
  ALTER ROLE %[1]s LOGIN PASSWORD '%[3]s';
END $$`, r.role, r.enc, protoPassword))
	}
}

// requireUpstreamTLS skips when the test server has no TLS (a server from
// PGCLOAK_TEST_DSN, say); testenv's local server always has it.
func requireUpstreamTLS(t *testing.T, pg *testenv.PG) {
	t.Helper()
	if !pg.TLS {
		testenv.Unavailable(t, "the test PostgreSQL has ssl=off")
	}
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

// ---------------------------------------------------------------------------
// 1. startup and authentication

func TestProtoAuthMethods(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	createPasswordRoles(t, h.pg)
	ctx := ctxT(t)
	direct := h.direct()
	var md5Stored bool
	if err := direct.QueryRow(ctx, "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = $1", testenv.RoleMD5).Scan(&md5Stored); err != nil || !md5Stored {
		t.Fatalf("pgcloak_md5's password is not stored as md5 (%v): the md5 case would test SCRAM", err)
	}

	t.Run("trust", func(t *testing.T) {
		conn, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=disable"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var user string
		if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "doctor" {
			t.Fatalf("current_user = %q, %v", user, err)
		}
	})
	for _, role := range []string{testenv.RolePassword, testenv.RoleMD5, testenv.RoleSCRAM} {
		t.Run(role, func(t *testing.T) {
			conn, err := connectDSN(t, proxyURL(h, role, protoPassword, "sslmode=disable"), nil)
			if err != nil {
				t.Fatalf("login with the right password: %v", err)
			}
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != role {
				t.Fatalf("current_user = %q, %v", user, err)
			}
			_, err = connectDSN(t, proxyURL(h, role, "wrong-password", "sslmode=disable"), nil)
			if code := pgCode(err); code != "28P01" {
				t.Fatalf("wrong password: want 28P01, got %v", err)
			}
			// No password at all: the client cannot answer; the proxy must
			// not hang on the half-done exchange.
			_, err = connectDSN(t, proxyURL(h, role, "", "sslmode=disable"), nil)
			if err == nil {
				t.Fatal("login without a password succeeded")
			}
			// A failed login leaves the proxy serving others, and the
			// session that did log in still works.
			stillServes(t, h)
			if err := conn.Ping(ctx); err != nil {
				t.Fatalf("logged-in session broken by another's failed login: %v", err)
			}
		})
	}
	t.Run("unknown role", func(t *testing.T) {
		_, err := connectDSN(t, proxyURL(h, "no_such_role_xyz", "", "sslmode=disable"), nil)
		if code := pgCode(err); code != "28000" {
			t.Fatalf("unknown role: want 28000, got %v", err)
		}
		_, err = connectDSN(t, fmt.Sprintf("postgres://doctor@%s/no_such_db_xyz?sslmode=disable", h.addr), nil)
		if code := pgCode(err); code != "3D000" {
			t.Fatalf("unknown database: want 3D000, got %v", err)
		}
		stillServes(t, h)
	})
}

func TestProtoStartupParametersAndKeyData(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) {
		c.RuntimeParams["application_name"] = "proto-params"
		c.RuntimeParams["TimeZone"] = "Europe/Paris"
	})
	if err != nil {
		t.Fatal(err)
	}
	pc := conn.PgConn()
	// The first ReadyForQuery reaches the client intact (idle).
	if pc.TxStatus() != 'I' {
		t.Fatalf("TxStatus after connect = %q, want I", pc.TxStatus())
	}
	var directVersion string
	if err := h.direct().QueryRow(ctx, "SHOW server_version").Scan(&directVersion); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"server_version":   directVersion,
		"TimeZone":         "Europe/Paris",
		"application_name": "proto-params",
		"client_encoding":  "UTF8",
		"DateStyle":        "ISO, MDY",
	} {
		if got := pc.ParameterStatus(name); got != want {
			t.Errorf("ParameterStatus(%s) = %q, want %q", name, got, want)
		}
	}
	var pid uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pc.PID() == 0 || pc.PID() != pid {
		t.Fatalf("BackendKeyData PID %d, backend pid %d", pc.PID(), pid)
	}
	if len(pc.SecretKey()) != 4 || bytes.Equal(pc.SecretKey(), make([]byte, 4)) {
		t.Fatalf("secret key %x", pc.SecretKey())
	}
	// A ParameterStatus sent later (after SET) reaches the client too.
	if _, err := conn.Exec(ctx, "SET application_name = 'changed-later'"); err != nil {
		t.Fatal(err)
	}
	if got := pc.ParameterStatus("application_name"); got != "changed-later" {
		t.Fatalf("ParameterStatus after SET = %q", got)
	}
	// The proxy's own setup query is invisible: the session is idle and
	// no statement has run that the client did not send.
	if pc.TxStatus() != 'I' {
		t.Fatalf("TxStatus %q", pc.TxStatus())
	}
}

// ---------------------------------------------------------------------------
// 2. TLS

func TestProtoTLSClientLeg(t *testing.T) {
	cert, key := selfSignedCert(t)
	h := newHarness(t, testPolicy, testSchema, withServerTLS("allow", cert, key))
	ctx := ctxT(t)

	conn, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=require"), nil)
	if err != nil {
		t.Fatalf("sslmode=require: %v", err)
	}
	if !isTLS(conn) {
		t.Fatal("sslmode=require connection is not TLS")
	}
	if upstreamSSL(t, conn) {
		t.Fatal("pg_stat_ssl says the upstream leg is TLS with upstream.tls.mode=disable")
	}
	// Encrypted values round-trip over TLS.
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", "T", "tls-ssn", "tls-diag"); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "tls-ssn").Scan(&diag); err != nil || diag != "tls-diag" {
		t.Fatalf("diagnosis = %q, %v", diag, err)
	}
	// verify-full with the certificate as root works: the proxy presents it.
	conn2, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=verify-full&sslrootcert="+cert), nil)
	if err != nil {
		t.Fatalf("sslmode=verify-full against the proxy certificate: %v", err)
	}
	if !isTLS(conn2) {
		t.Fatal("not TLS")
	}
	// Plaintext is still allowed in mode allow.
	plain, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=disable"), nil)
	if err != nil || isTLS(plain) {
		t.Fatalf("plaintext client in mode allow: %v", err)
	}

	// Cancel over TLS: pgx encrypts the cancel connection as well.
	t.Run("cancel over TLS", func(t *testing.T) {
		c, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=require"), cancelByRequest)
		if err != nil {
			t.Fatal(err)
		}
		assertCancel(t, c)
	})

	t.Run("data pipelined after SSLRequest", func(t *testing.T) {
		// CVE-2021-23222: bytes sent right after SSLRequest, before the
		// handshake, must not be read as if they came over TLS.
		raw := protoDial(t, h)
		ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
		if _, err := raw.Write(append(ssl, q...)); err != nil {
			t.Fatal(err)
		}
		data := expectEOF(t, raw)
		if len(data) > 0 && data[0] == 'S' {
			t.Fatalf("proxy accepted TLS with plaintext injected after SSLRequest: %q", data)
		}
		stillServes(t, h)
	})
}

func TestProtoTLSRequiredRefusesPlaintext(t *testing.T) {
	cert, key := selfSignedCert(t)
	h := newHarness(t, testPolicy, testSchema, withServerTLS("require", cert, key))
	_, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=disable"), nil)
	pe := wantCode(t, err, "28000")
	if pe.Severity != "FATAL" || !strings.HasPrefix(pe.Message, "pgcloak: ") {
		t.Fatalf("refusal %s %q", pe.Severity, pe.Message)
	}
	conn, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=require"), nil)
	if err != nil || !isTLS(conn) {
		t.Fatalf("TLS client refused in mode require: %v", err)
	}
	// prefer upgrades to TLS and so is accepted.
	conn, err = connectDSN(t, proxyURL(h, "doctor", "", "sslmode=prefer"), nil)
	if err != nil || !isTLS(conn) {
		t.Fatalf("sslmode=prefer in mode require: %v", err)
	}
	// A server.tls.mode require without a certificate is a config error.
	_, err = proxy.NewServer(proxy.Config{
		Server:   policy.Server{TLS: policy.ServerTLS{Mode: "require"}},
		Upstream: policy.Upstream{Address: h.pg.Address()},
		Policy:   h.idx,
		Keyring:  keymap.NewKeyring(h.store, time.Minute),
	})
	if err == nil {
		t.Fatal("NewServer accepted server.tls.mode require without a certificate")
	}
}

func TestProtoTLSNoCertificate(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema) // mode allow, no certificate
	raw := protoDial(t, h)
	req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := raw.Write(req); err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 1)
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(raw, answer); err != nil || answer[0] != 'N' {
		t.Fatalf("SSLRequest answer %q, %v; want 'N'", answer, err)
	}
	// The same connection then goes on in plaintext.
	c := &protoClient{t: t, conn: raw, fe: pgproto3.NewFrontend(raw, raw)}
	c.send(protoStartup("doctor", h.pg.Database))
	for {
		if _, ok := c.recv().(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	wantTokens(t, "query after refused SSLRequest", c.query("SELECT 1 AS one"), "Row:one/23", "D:1", "C:SELECT 1", "Z:I")

	conn, err := connectDSN(t, proxyURL(h, "doctor", "", "sslmode=prefer"), nil)
	if err != nil {
		t.Fatalf("sslmode=prefer without a proxy certificate: %v", err)
	}
	if isTLS(conn) {
		t.Fatal("TLS negotiated without a certificate")
	}
	if err := conn.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_, err = connectDSN(t, proxyURL(h, "doctor", "", "sslmode=require"), nil)
	if err == nil {
		t.Fatal("sslmode=require succeeded against a proxy without a certificate")
	}
	stillServes(t, h)
}

func TestProtoGSSENCRequest(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	raw := protoDial(t, h)
	var pkt [8]byte
	binary.BigEndian.PutUint32(pkt[0:4], 8)
	binary.BigEndian.PutUint32(pkt[4:8], 80877104)
	if _, err := raw.Write(pkt[:]); err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 1)
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(raw, answer); err != nil || answer[0] != 'N' {
		t.Fatalf("GSSENCRequest answer %q, %v; want 'N'", answer, err)
	}
	// The client may then go on with a StartupMessage on the same socket.
	c := &protoClient{t: t, conn: raw, fe: pgproto3.NewFrontend(raw, raw)}
	c.send(protoStartup("doctor", h.pg.Database))
	for {
		msg := c.recv()
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("startup after GSSENCRequest: %s", e.Message)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	wantTokens(t, "query", c.query("SELECT 2 AS two"), "Row:two/23", "D:2", "C:SELECT 1", "Z:I")
	// pgx's gssencmode=prefer is not used (no GSS support compiled in), so
	// check the second-negotiation rule instead: SSLRequest twice is fatal.
	raw2 := protoDial(t, h)
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	raw2.Write(ssl)
	raw2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(raw2, answer); err != nil || answer[0] != 'N' {
		t.Fatalf("SSLRequest answer %q, %v", answer, err)
	}
	raw2.Write(ssl)
	if errs := backendErrors(expectEOF(t, raw2)); len(errs) != 1 || errs[0].Code != "08P01" {
		t.Fatalf("second SSLRequest: errors %v, want one 08P01", errs)
	}
}

func TestProtoTLSUpstream(t *testing.T) {
	for _, tc := range []struct {
		mode, ca string
		want     bool
	}{
		{"disable", "", false},
		{"prefer", "", true},
		{"require", "", true},
		{"verify-full", "ca", true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			pg0 := testenv.Postgres(t) // only to learn the server's TLS setup
			if tc.mode != "disable" {
				requireUpstreamTLS(t, pg0)
			}
			ca := ""
			if tc.ca != "" {
				if pg0.CACertFile == "" {
					testenv.Unavailable(t, "no CA file for the test server")
				}
				ca = pg0.CACertFile
			}
			h := newHarness(t, testPolicy, testSchema, withUpstreamTLS(tc.mode, ca))
			conn := h.connect("doctor")
			if got := upstreamSSL(t, conn); got != tc.want {
				t.Fatalf("upstream.tls.mode=%s: pg_stat_ssl.ssl = %v, want %v", tc.mode, got, tc.want)
			}
			ctx := ctxT(t)
			if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('U', $1)", "up-"+tc.mode); err != nil {
				t.Fatal(err)
			}
			var ssn string
			if err := conn.QueryRow(ctx, "SELECT ssn FROM patients").Scan(&ssn); err != nil || ssn != "up-"+tc.mode {
				t.Fatalf("ssn = %q, %v", ssn, err)
			}
			// Cancel travels over the upstream TLS leg as well.
			c, err := connectDSN(t, h.dsn("doctor"), cancelByRequest)
			if err != nil {
				t.Fatal(err)
			}
			assertCancel(t, c)
		})
	}
	t.Run("verify-full with the wrong CA", func(t *testing.T) {
		pg0 := testenv.Postgres(t)
		requireUpstreamTLS(t, pg0)
		otherCA, _ := selfSignedCert(t)
		h := newHarness(t, testPolicy, testSchema, withUpstreamTLS("verify-full", otherCA))
		_, err := connectDSN(t, h.dsn("doctor"), nil)
		if code := pgCode(err); code != "08006" {
			t.Fatalf("untrusted upstream certificate: want 08006, got %v", err)
		}
	})
}

func TestProtoSCRAMOverTLSBothLegs(t *testing.T) {
	pg0 := testenv.Postgres(t)
	requireUpstreamTLS(t, pg0)
	cert, key := selfSignedCert(t)
	h := newHarness(t, testPolicy, testSchema, withServerTLS("require", cert, key), withUpstreamTLS("require", ""))
	createPasswordRoles(t, h.pg)
	ctx := ctxT(t)
	conn, err := connectDSN(t, proxyURL(h, testenv.RoleSCRAM, protoPassword, "sslmode=require&channel_binding=disable"), nil)
	if err != nil {
		t.Fatalf("SCRAM over TLS with channel_binding=disable: %v", err)
	}
	if !isTLS(conn) || !upstreamSSL(t, conn) {
		t.Fatal("not TLS on both legs")
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != testenv.RoleSCRAM {
		t.Fatalf("current_user %q, %v", user, err)
	}
	// channel_binding=prefer: the client, seeing no -PLUS mechanism,
	// sends the GS2 flag "y" (it could bind), and PostgreSQL, which can
	// bind on its own TLS connection, takes that for a downgrade attack.
	// Nothing a proxy can change (the flag is covered by the proof).
	if _, err := connectDSN(t, proxyURL(h, testenv.RoleSCRAM, protoPassword, "sslmode=require&channel_binding=prefer"), nil); err != nil {
		t.Logf("channel_binding=prefer with TLS on both legs fails, as expected: %v", err)
	}
	// channel_binding=require cannot work through a proxy (README, Known
	// limits): the client must refuse rather than authenticate unbound.
	if _, err := connectDSN(t, proxyURL(h, testenv.RoleSCRAM, protoPassword, "sslmode=require&channel_binding=require"), nil); err == nil {
		t.Fatal("channel_binding=require succeeded through the proxy")
	}
	// md5 and password over TLS both legs as well.
	for _, role := range []string{testenv.RoleMD5, testenv.RolePassword} {
		if _, err := connectDSN(t, proxyURL(h, role, protoPassword, "sslmode=require"), nil); err != nil {
			t.Fatalf("%s over TLS: %v", role, err)
		}
	}
	stillServes2(t, h, "sslmode=require")

	// TLS on the client leg only: channel_binding=prefer works, because
	// the proxy does not offer SCRAM-SHA-256-PLUS, which the client could
	// not bind to the upstream channel.
	h2 := newHarness(t, testPolicy, testSchema, withServerTLS("require", cert, key))
	conn, err = connectDSN(t, proxyURL(h2, testenv.RoleSCRAM, protoPassword, "sslmode=require&channel_binding=prefer"), nil)
	if err != nil {
		t.Fatalf("SCRAM with channel_binding=prefer, TLS on the client leg: %v", err)
	}
	if !isTLS(conn) || upstreamSSL(t, conn) {
		t.Fatal("want TLS on the client leg only")
	}
}

// stillServes2 is stillServes with extra connection parameters.
func stillServes2(t *testing.T, h *harness, query string) {
	t.Helper()
	conn, err := connectDSN(t, proxyURL(h, "doctor", "", query), nil)
	if err != nil {
		t.Fatalf("proxy no longer accepts sessions: %v", err)
	}
	if err := conn.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// 3. cancel

// cancelByRequest makes pgx cancel a query whose context ends with a
// CancelRequest (its default would break the connection instead).
func cancelByRequest(c *pgx.ConnConfig) {
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 15 * time.Second}
	}
}

// assertCancel runs a long query, cancels it by context and checks the
// session survives.
func assertCancel(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// 57014 proves PostgreSQL cancelled the sleep (it would otherwise end
	// without error after 30s).
	_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
	if code := pgCode(err); code != "57014" {
		t.Fatalf("cancelled pg_sleep: want 57014, got %v", err)
	}
	if conn.IsClosed() {
		t.Fatal("connection closed by cancel")
	}
	var n int
	if err := conn.QueryRow(ctxT(t), "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("session after cancel: %d, %v", n, err)
	}
}

func TestProtoCancelRequest(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	conn, err := connectDSN(t, h.dsn("doctor"), cancelByRequest)
	if err != nil {
		t.Fatal(err)
	}
	assertCancel(t, conn)
	// Inside a transaction the cancel aborts it, and the state is right.
	ctx := ctxT(t)
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = conn.Exec(cctx, "SELECT pg_sleep(30)")
	cancel()
	wantCode(t, err, "57014")
	if st := conn.PgConn().TxStatus(); st != 'E' {
		t.Fatalf("TxStatus after cancel in a transaction = %q, want E", st)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// Encrypted work after a cancel still decrypts.
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('C', $1, $2)", "c-ssn", "c-diag"); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "c-ssn").Scan(&diag); err != nil || diag != "c-diag" {
		t.Fatalf("after cancel: %q %v", diag, err)
	}
	// A CancelRequest with a wrong key cancels nothing.
	other := h.connect("doctor")
	done := make(chan error, 1)
	go func() {
		_, err := other.Exec(context.Background(), "SELECT pg_sleep(1.5)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	raw := protoDial(t, h)
	var pkt [16]byte
	binary.BigEndian.PutUint32(pkt[0:4], 16)
	binary.BigEndian.PutUint32(pkt[4:8], 80877102)
	binary.BigEndian.PutUint32(pkt[8:12], other.PgConn().PID())
	binary.BigEndian.PutUint32(pkt[12:16], binary.BigEndian.Uint32(other.PgConn().SecretKey())^0xdeadbeef)
	raw.Write(pkt[:])
	expectEOF(t, raw)
	if err := <-done; err != nil {
		t.Fatalf("a CancelRequest with the wrong secret cancelled the query: %v", err)
	}
}

// ---------------------------------------------------------------------------
// 4. simple query protocol and transactions

func TestProtoSimpleQueryMultiStatement(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()
	results, err := pc.Exec(ctx, `INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('A', 'm-1', 'd-1', '1990-01-02');
SELECT name, ssn, diagnosis, dob FROM patients;
SELECT 7 AS seven, 'x' AS ex;
UPDATE patients SET diagnosis = 'd-2' WHERE ssn = 'm-1'`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results, want 4", len(results))
	}
	if tag := results[0].CommandTag.String(); tag != "INSERT 0 1" {
		t.Fatalf("tag %q", tag)
	}
	r := results[1]
	if len(r.Rows) != 1 || string(r.Rows[0][1]) != "m-1" || string(r.Rows[0][2]) != "d-1" || string(r.Rows[0][3]) != "1990-01-02" {
		t.Fatalf("rows %q", r.Rows)
	}
	if r.FieldDescriptions[1].DataTypeOID != 25 || r.FieldDescriptions[3].DataTypeOID != 1082 {
		t.Fatalf("encrypted columns described as %d and %d, want text and date", r.FieldDescriptions[1].DataTypeOID, r.FieldDescriptions[3].DataTypeOID)
	}
	if len(results[2].Rows) != 1 || string(results[2].Rows[0][0]) != "7" || string(results[2].Rows[0][1]) != "x" {
		t.Fatalf("plain result %q", results[2].Rows)
	}
	if tag := results[3].CommandTag.String(); tag != "UPDATE 1" {
		t.Fatalf("tag %q", tag)
	}

	c := protoConnect(t, h, "doctor")
	// Empty query strings.
	wantTokens(t, "empty query", c.query(""), "EmptyQuery", "Z:I")
	wantTokens(t, "only semicolons", c.query(" ; ;"), "EmptyQuery", "Z:I")
	wantTokens(t, "comment only", c.query("-- nothing"), "EmptyQuery", "Z:I")
	// Results of each statement, in order, decrypted.
	wantTokens(t, "two selects", c.query("SELECT ssn FROM patients; SELECT diagnosis, dob FROM patients"),
		"Row:ssn/25", "D:m-1", "C:SELECT 1", "Row:diagnosis/25,dob/1082", "D:d-2,1990-01-02", "C:SELECT 1", "Z:I")

	// An error mid-string: PostgreSQL runs the string in one implicit
	// transaction, so the statements before the error are rolled back and
	// those after it do not run.
	got := c.query("INSERT INTO patients (name, ssn) VALUES ('B', 'm-2'); SELECT 1/0; INSERT INTO patients (name, ssn) VALUES ('C', 'm-3')")
	wantTokens(t, "error mid-string", got, "C:INSERT 0 1", "E:22012", "Z:I")
	// A refusal mid-string: same rule, nothing before it runs either.
	got = c.query("INSERT INTO patients (name, ssn) VALUES ('B', 'm-2'); SELECT 1 FROM patients WHERE ssn LIKE 'm%'")
	if len(got) != 2 || got[0] != "E:0A000" || got[1] != "Z:I" {
		t.Fatalf("refusal mid-string: %q", got)
	}
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows after failed strings, want 1 (%v)", n, err)
	}
	// Explicit transaction control inside one string.
	wantTokens(t, "BEGIN in a string", c.query("BEGIN; INSERT INTO patients (name, ssn) VALUES ('D', 'm-4'); SELECT ssn FROM patients WHERE ssn = 'm-4'"),
		"C:BEGIN", "C:INSERT 0 1", "Row:ssn/25", "D:m-4", "C:SELECT 1", "Z:T")
	wantTokens(t, "error in open transaction", c.query("SELECT 1/0"), "E:22012", "Z:E")
	wantTokens(t, "in failed transaction", c.query("SELECT 1"), "E:25P02", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	// COMMIT in the middle of a string commits what came before even if a
	// later statement fails.
	wantTokens(t, "commit mid-string", c.query("BEGIN; INSERT INTO patients (name, ssn) VALUES ('E', 'm-5'); COMMIT; SELECT 1/0"),
		"C:BEGIN", "C:INSERT 0 1", "C:COMMIT", "E:22012", "Z:I")
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows, want 2 (%v)", n, err)
	}
}

func TestProtoTransactions(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()
	step := func(sql string, wantErr string, wantTx byte) {
		t.Helper()
		_, err := pc.Exec(ctx, sql).ReadAll()
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%s: %v", sql, err)
		case wantErr != "" && pgCode(err) != wantErr:
			t.Fatalf("%s: want %s, got %v", sql, wantErr, err)
		}
		if st := pc.TxStatus(); st != wantTx {
			t.Fatalf("after %s: TxStatus %q, want %q", sql, st, wantTx)
		}
	}
	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('rolled back', 't-0', 'x')", "", 'T')
	step("SELECT 1/0", "22012", 'E')
	step("SELECT 1", "25P02", 'E')
	step("INSERT INTO patients (name, ssn) VALUES ('no', 't-x')", "25P02", 'E')
	// A refusal in a failed transaction is still an error; state stays E.
	step("SELECT 1 FROM patients ORDER BY ssn", "0A000", 'E')
	step("ROLLBACK", "", 'I')

	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('kept', 't-1', 'd-1')", "", 'T')
	step("SAVEPOINT s1", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('undone', 't-2', 'd-2')", "", 'T')
	step("INSERT INTO patients (name, ssn) VALUES ('dup', 't-1')", "23505", 'E') // unique violation on ciphertext
	step("SELECT 1", "25P02", 'E')
	step("ROLLBACK TO SAVEPOINT s1", "", 'T')
	step("SAVEPOINT s2", "", 'T')
	step("SELECT 1 FROM patients WHERE diagnosis = 'd-1'", "0A000", 'E') // equality on a randomized column
	step("ROLLBACK TO s2", "", 'T')
	step("RELEASE SAVEPOINT s2", "", 'T')
	step("INSERT INTO patients (name, ssn, diagnosis) VALUES ('also kept', 't-3', 'd-3')", "", 'T')
	step("COMMIT", "", 'I')
	// COMMIT of a failed transaction rolls back and says so.
	step("BEGIN", "", 'T')
	step("INSERT INTO patients (name, ssn) VALUES ('lost', 't-4')", "", 'T')
	step("SELECT 1/0", "22012", 'E')
	results, err := pc.Exec(ctx, "COMMIT").ReadAll()
	if err != nil || len(results) != 1 || results[0].CommandTag.String() != "ROLLBACK" || pc.TxStatus() != 'I' {
		t.Fatalf("COMMIT of failed tx: %v %v %q", results, err, pc.TxStatus())
	}

	rows, err := conn.Query(ctx, "SELECT name, ssn, diagnosis FROM patients ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name, ssn string
		var diag *string
		if err := rows.Scan(&name, &ssn, &diag); err != nil {
			t.Fatal(err)
		}
		d := "NULL"
		if diag != nil {
			d = *diag
		}
		got = append(got, name+"/"+ssn+"/"+d)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	wantTokens(t, "committed rows", got, "kept/t-1/d-1", "also kept/t-3/d-3")

	// pgx's own transaction API on top.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "changed", "t-1"); err != nil {
		t.Fatal(err)
	}
	nested, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nested.Exec(ctx, "UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "nested", "t-1"); err != nil {
		t.Fatal(err)
	}
	if err := nested.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "t-1").Scan(&diag); err != nil || diag != "changed" {
		t.Fatalf("diagnosis %q, %v", diag, err)
	}
}

// ---------------------------------------------------------------------------
// 5. extended protocol

// insertPatients inserts rows through the proxy as doctor.
func insertPatients(t *testing.T, conn *pgx.Conn, rows ...[3]string) {
	t.Helper()
	for _, r := range rows {
		if _, err := conn.Exec(ctxT(t), "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProtoExtendedPgconn(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()

	sd, err := pc.Prepare(ctx, "ins", "INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4) RETURNING id, ssn, dob", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Parameters of encrypted columns are described with their logical
	// types, not bytea.
	if fmt.Sprint(sd.ParamOIDs) != "[25 25 25 1082]" {
		t.Fatalf("ParamOIDs %v, want [25 25 25 1082]", sd.ParamOIDs)
	}
	if len(sd.Fields) != 3 || sd.Fields[1].DataTypeOID != 25 || sd.Fields[2].DataTypeOID != 1082 {
		t.Fatalf("fields %+v", sd.Fields)
	}
	for i, p := range [][]string{{"P1", "e-1", "flu", "1980-05-06"}, {"P2", "e-2", "cold", "1975-12-31"}} {
		vals := [][]byte{[]byte(p[0]), []byte(p[1]), []byte(p[2]), []byte(p[3])}
		res := pc.ExecPrepared(ctx, "ins", vals, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if len(res.Rows) != 1 || string(res.Rows[0][1]) != p[1] || string(res.Rows[0][2]) != p[3] {
			t.Fatalf("RETURNING row %d: %q", i, res.Rows)
		}
	}
	// Binary result format for a date column: 4-byte days since 2000-01-01.
	res := pc.ExecParams(ctx, "SELECT dob FROM patients WHERE ssn = $1", [][]byte{[]byte("e-1")}, nil, nil, []int16{1}).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := int32(time.Date(1980, 5, 6, 0, 0, 0, 0, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Hours() / 24)
	if len(res.Rows) != 1 || len(res.Rows[0][0]) != 4 || int32(binary.BigEndian.Uint32(res.Rows[0][0])) != want {
		t.Fatalf("binary dob %x, want %d days", res.Rows, want)
	}
	// Binary parameter for the deterministic column (text binary = bytes).
	res = pc.ExecParams(ctx, "SELECT name FROM patients WHERE ssn = $1", [][]byte{[]byte("e-2")}, []uint32{25}, []int16{1}, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "P2" {
		t.Fatalf("binary param lookup: %q %v", res.Rows, res.Err)
	}
	// NULL parameter.
	res = pc.ExecParams(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", [][]byte{[]byte("P3"), []byte("e-3"), nil}, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	// An invalid value for the logical type: PostgreSQL's 22007, session
	// fine.
	res = pc.ExecPrepared(ctx, "ins", [][]byte{[]byte("X"), []byte("e-x"), []byte("d"), []byte("not a date")}, nil, nil).Read()
	wantCode(t, res.Err, "22007")
	if pc.TxStatus() != 'I' {
		t.Fatalf("TxStatus %q", pc.TxStatus())
	}
	// Deallocate (Close statement), then re-Prepare the same name with
	// another query: the proxy must use the new plan.
	if err := pc.Deallocate(ctx, "ins"); err != nil {
		t.Fatal(err)
	}
	sd, err = pc.Prepare(ctx, "ins", "SELECT diagnosis, name FROM patients WHERE ssn = $1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sd.ParamOIDs) != "[25]" || sd.Fields[0].DataTypeOID != 25 {
		t.Fatalf("re-prepared: params %v fields %+v", sd.ParamOIDs, sd.Fields)
	}
	res = pc.ExecPrepared(ctx, "ins", [][]byte{[]byte("e-2")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "cold" || string(res.Rows[0][1]) != "P2" {
		t.Fatalf("re-prepared statement: %q %v", res.Rows, res.Err)
	}
	// The same through the many exec modes of pgx.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		var diag, name string
		var dob *time.Time
		if err := conn.QueryRow(ctx, "SELECT diagnosis, name, dob FROM patients WHERE ssn = $1", mode, "e-1").Scan(&diag, &name, &dob); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if diag != "flu" || name != "P1" || dob == nil || dob.Format("2006-01-02") != "1980-05-06" {
			t.Fatalf("mode %v: %q %q %v", mode, diag, name, dob)
		}
	}
}

func TestProtoExtendedRaw(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"R1", "r-1", "one"}, [3]string{"R2", "r-2", "two"}, [3]string{"R3", "r-3", "three"})
	c := protoConnect(t, h, "doctor")

	// Named statement: Describe shows logical types for parameters and
	// results.
	c.send(
		&pgproto3.Parse{Name: "s1", Query: "SELECT name, ssn, diagnosis FROM patients WHERE id >= $1 ORDER BY id"},
		&pgproto3.Parse{Name: "s2", Query: "SELECT name, diagnosis FROM patients WHERE ssn = $1"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s2"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "parse+describe", c.recvReady(),
		"ParseComplete", "ParseComplete",
		"Params:23", "Row:name/25,ssn/25,diagnosis/25",
		"Params:25", "Row:name/25,diagnosis/25",
		"Z:I")

	// Named portal, Execute with a row limit: PortalSuspended, then the
	// rest. The portal is never described by the client: the proxy must
	// still decrypt its rows.
	c.send(
		&pgproto3.Bind{PreparedStatement: "s1", DestinationPortal: "p1", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Execute{Portal: "p1", MaxRows: 2},
		&pgproto3.Flush{},
	)
	wantTokens(t, "first fetch", c.recvN(4), "BindComplete", "D:R1,r-1,one", "D:R2,r-2,two", "PortalSuspended")
	c.send(&pgproto3.Execute{Portal: "p1", MaxRows: 2}, &pgproto3.Flush{})
	wantTokens(t, "second fetch", c.recvN(2), "D:R3,r-3,three", "C:SELECT 1")
	c.send(&pgproto3.Execute{Portal: "p1", MaxRows: 2}, &pgproto3.Close{ObjectType: 'P', Name: "p1"}, &pgproto3.Sync{})
	wantTokens(t, "exhausted portal", c.recvReady(), "C:SELECT 0", "CloseComplete", "Z:I")

	// The portal is gone after Close.
	c.send(&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{})
	wantTokens(t, "closed portal", c.recvReady(), "E:34000", "Z:I")

	// Two portals of two statements interleaved in one transaction.
	c.send(
		&pgproto3.Query{String: "BEGIN"},
	)
	wantTokens(t, "begin", c.recvReady(), "C:BEGIN", "Z:T")
	c.send(
		&pgproto3.Bind{PreparedStatement: "s1", DestinationPortal: "a", Parameters: [][]byte{[]byte("2")}},
		&pgproto3.Bind{PreparedStatement: "s2", DestinationPortal: "b", Parameters: [][]byte{[]byte("r-1")}},
		&pgproto3.Describe{ObjectType: 'P', Name: "b"},
		&pgproto3.Execute{Portal: "a", MaxRows: 1},
		&pgproto3.Execute{Portal: "b"},
		&pgproto3.Execute{Portal: "a"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "interleaved portals", c.recvReady(),
		"BindComplete", "BindComplete", "Row:name/25,diagnosis/25",
		"D:R2,r-2,two", "PortalSuspended",
		"D:R1,one", "C:SELECT 1",
		"D:R3,r-3,three", "C:SELECT 1",
		"Z:T")
	// Binary result format on a portal the client did describe.
	c.send(
		&pgproto3.Bind{PreparedStatement: "s2", DestinationPortal: "bin", Parameters: [][]byte{[]byte("r-2")}, ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P', Name: "bin"},
		&pgproto3.Execute{Portal: "bin"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "binary portal", c.recvReady(), "BindComplete", "Row:name/25,diagnosis/25", "D:R2,two", "C:SELECT 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	// Portals die with their transaction.
	c.send(&pgproto3.Execute{Portal: "a"}, &pgproto3.Sync{})
	wantTokens(t, "portal after commit", c.recvReady(), "E:34000", "Z:I")

	// Unnamed statement and portal, replaced within one batch.
	c.send(
		&pgproto3.Parse{Query: "SELECT diagnosis FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("r-3")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT ssn, 'plain' AS p FROM patients WHERE name = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("R2")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "unnamed", c.recvReady(),
		"ParseComplete", "BindComplete", "D:three", "C:SELECT 1",
		"ParseComplete", "BindComplete", "Row:ssn/25,p/25", "D:r-2,plain", "C:SELECT 1",
		"Z:I")

	// Flush delivers results before Sync.
	c.send(
		&pgproto3.Parse{Name: "f", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) RETURNING ssn, diagnosis"},
		&pgproto3.Bind{PreparedStatement: "f", Parameters: [][]byte{[]byte("R4"), []byte("r-4"), []byte("four")}},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "flush", c.recvN(4), "ParseComplete", "BindComplete", "D:r-4,four", "C:INSERT 0 1")
	c.send(&pgproto3.Sync{})
	wantTokens(t, "sync", c.recvReady(), "Z:I")

	// Close a statement, then Parse the same name with another query whose
	// result has different encrypted columns.
	c.send(
		&pgproto3.Close{ObjectType: 'S', Name: "f"},
		&pgproto3.Parse{Name: "f", Query: "SELECT diagnosis, ssn FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{PreparedStatement: "f", Parameters: [][]byte{[]byte("r-4")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "re-parse after close", c.recvReady(), "CloseComplete", "ParseComplete", "BindComplete", "D:four,r-4", "C:SELECT 1", "Z:I")
	// Parse of an existing name fails (42P05) and the old statement,
	// with its plan, is what remains.
	c.send(
		&pgproto3.Parse{Name: "f", Query: "SELECT name FROM patients WHERE id = $1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "duplicate parse", c.recvReady(), "E:42P05", "Z:I")
	c.send(
		&pgproto3.Bind{PreparedStatement: "f", Parameters: [][]byte{[]byte("r-1")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "old statement kept", c.recvReady(), "BindComplete", "D:one,r-1", "C:SELECT 1", "Z:I")
	// Close of names that do not exist is not an error.
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "nope"}, &pgproto3.Close{ObjectType: 'P', Name: "nope"}, &pgproto3.Sync{})
	wantTokens(t, "close unknown", c.recvReady(), "CloseComplete", "CloseComplete", "Z:I")
	// Describe of a statement without result.
	c.send(&pgproto3.Parse{Name: "u", Query: "UPDATE patients SET diagnosis = $1 WHERE ssn = $2"},
		&pgproto3.Describe{ObjectType: 'S', Name: "u"}, &pgproto3.Sync{})
	wantTokens(t, "describe update", c.recvReady(), "ParseComplete", "Params:25,25", "NoData", "Z:I")
	// Types the client declared come back as declared (pgjdbc's
	// executeBatch declares varchar and checks them; issue 8, finding 1);
	// one left to the server is the column's logical type.
	c.send(&pgproto3.Parse{Name: "v", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", ParameterOIDs: []uint32{1043, 1043, 0}},
		&pgproto3.Describe{ObjectType: 'S', Name: "v"},
		&pgproto3.Bind{PreparedStatement: "v", Parameters: [][]byte{[]byte("V"), []byte("v-ssn"), []byte("v-diag")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "declared types kept", c.recvReady(), "ParseComplete", "Params:1043,1043,25", "NoData", "BindComplete", "C:INSERT 0 1", "Z:I")
	wantTokens(t, "written", c.query("SELECT ssn, diagnosis FROM patients WHERE name = 'V'"), "Row:ssn/25,diagnosis/25", "D:v-ssn,v-diag", "C:SELECT 1", "Z:I")
	c.query("DELETE FROM patients WHERE name = 'V'")
	// Format codes PostgreSQL refuses are refused as it does, also when the
	// proxy rebuilds the Bind (issue 8, finding 10).
	c.send(&pgproto3.Bind{PreparedStatement: "u", ParameterFormatCodes: []int16{0, 0, 0}, Parameters: [][]byte{[]byte("x"), []byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "three format codes for two parameters", c.recvReady(), "E:08P01", "Z:I")
	c.send(&pgproto3.Bind{PreparedStatement: "u", ParameterFormatCodes: []int16{2}, Parameters: [][]byte{[]byte("x"), []byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "format code 2", c.recvReady(), "E:22023", "Z:I")
	// The same as PostgreSQL's answers for a plain statement.
	c.send(&pgproto3.Parse{Name: "plain2", Query: "SELECT $1::text, $2::text"},
		&pgproto3.Bind{PreparedStatement: "plain2", ParameterFormatCodes: []int16{0, 0, 0}, Parameters: [][]byte{[]byte("x"), []byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "PostgreSQL: three format codes", c.recvReady(), "ParseComplete", "E:08P01", "Z:I")
	c.send(&pgproto3.Bind{PreparedStatement: "plain2", ParameterFormatCodes: []int16{2}, Parameters: [][]byte{[]byte("x"), []byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "PostgreSQL: format code 2", c.recvReady(), "E:22023", "Z:I")
	// Bind with the wrong number of parameters: PostgreSQL's 08P01, not fatal.
	c.send(&pgproto3.Bind{PreparedStatement: "u", Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "wrong parameter count", c.recvReady(), "E:08P01", "Z:I")
	// Binding an unknown statement.
	c.send(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantTokens(t, "bind unknown statement", c.recvReady(), "E:26000", "Z:I")
	wantTokens(t, "still fine", c.query("SELECT count(*) FROM patients"), "Row:count/20", "D:4", "C:SELECT 1", "Z:I")
}

func TestProtoPipelineErrors(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")

	// An error in the middle of a pipeline: the rest up to Sync is
	// skipped, the implicit transaction rolls back (including the insert
	// before the error), and the next segment runs.
	c.send(
		&pgproto3.Parse{Name: "ins", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)"},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("A"), []byte("p-1"), []byte("a")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("B"), []byte("p-2"), []byte("b")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("C"), []byte("p-3"), []byte("c")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT name, diagnosis FROM patients"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "pipeline with error", c.recvReady(), "ParseComplete", "BindComplete", "C:INSERT 0 1", "ParseComplete", "BindComplete", "E:22012", "Z:I")
	wantTokens(t, "next segment", c.recvReady(), "BindComplete", "C:INSERT 0 1", "ParseComplete", "BindComplete", "D:C,c", "C:SELECT 1", "Z:I")

	// A refusal in the middle of a pipeline behaves the same way.
	c.send(
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("D"), []byte("p-4"), []byte("d")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT name FROM patients WHERE diagnosis = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("c")}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("E"), []byte("p-5"), []byte("e")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	got := c.recvReady()
	wantTokens(t, "pipeline with refusal", got, "BindComplete", "C:INSERT 0 1", "E:0A000", "Z:I")
	if !strings.Contains(c.lastErr.Message, "public.patients.diagnosis") {
		t.Fatalf("refusal %q", c.lastErr.Message)
	}

	// The server's error reaches the client before the client sends Sync
	// (it flushed), then the rest of the batch arrives: the proxy must
	// keep skipping those messages as the server does, and stay in step.
	c.send(
		&pgproto3.Parse{Name: "bad", Query: "SELECT no_such_column FROM patients"},
		&pgproto3.Flush{},
	)
	wantTokens(t, "parse error before sync", c.recvN(1), "E:42703")
	c.send(
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("F"), []byte("p-6"), []byte("f")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Parse{Name: "late", Query: "SELECT ssn FROM patients"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "skipped until sync", c.recvReady(), "Z:I")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "select in tx", c.query("SELECT ssn FROM patients ORDER BY id"), "Row:ssn/25", "D:p-3", "C:SELECT 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	// The statement parsed while skipping does not exist.
	c.send(&pgproto3.Describe{ObjectType: 'S', Name: "late"}, &pgproto3.Sync{})
	wantTokens(t, "statement parsed while skipping", c.recvReady(), "E:26000", "Z:I")

	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows, want 1 (%v)", n, err)
	}
}

func TestProtoPipelineLargeAfterError(t *testing.T) {
	// A pipeline larger than the proxy's buffers, failing early: the
	// server's error can come back while the proxy is still forwarding the
	// rest of the batch, which the server then skips.
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	big := strings.Repeat("x", 4000)
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: "ins", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)"},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
	}
	for i := 0; i < 300; i++ {
		msgs = append(msgs,
			&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("L"), []byte(fmt.Sprintf("l-%d", i)), []byte(big)}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{})
	}
	msgs = append(msgs, &pgproto3.Sync{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range msgs {
			c.fe.Send(m)
		}
		c.fe.Flush()
	}()
	wantTokens(t, "large failing pipeline", c.recvReady(), "ParseComplete", "ParseComplete", "BindComplete", "E:22012", "Z:I")
	<-done
	for i := 0; i < 3; i++ {
		wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
		wantTokens(t, "count", c.query("SELECT count(*) FROM patients"), "Row:count/20", "D:0", "C:SELECT 1", "Z:T")
		wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	}
}

func TestProtoPgxBatchAndPipeline(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "DELETE FROM patients"); err != nil {
				t.Fatal(err)
			}
			b := &pgx.Batch{}
			b.Queue("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)", "B1", "b-1", "one", time.Date(1991, 2, 3, 0, 0, 0, 0, time.UTC))
			b.Queue("SELECT ssn, diagnosis, dob FROM patients WHERE ssn = $1", "b-1")
			b.Queue("INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) RETURNING diagnosis", "B2", "b-2", "two")
			b.Queue("SELECT count(*) FROM patients WHERE ssn IN ($1, $2)", "b-1", "b-2")
			b.Queue("UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "one!", "b-1")
			b.Queue("SELECT diagnosis FROM patients WHERE ssn = $1", "b-1")
			br := conn.SendBatch(ctx, b)
			if _, err := br.Exec(); err != nil {
				t.Fatal(err)
			}
			var ssn, diag string
			var dob time.Time
			if err := br.QueryRow().Scan(&ssn, &diag, &dob); err != nil || ssn != "b-1" || diag != "one" || !dob.Equal(time.Date(1991, 2, 3, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("select in batch: %q %q %v %v", ssn, diag, dob, err)
			}
			if err := br.QueryRow().Scan(&diag); err != nil || diag != "two" {
				t.Fatalf("returning in batch: %q %v", diag, err)
			}
			var n int
			if err := br.QueryRow().Scan(&n); err != nil || n != 2 {
				t.Fatalf("count in batch: %d %v", n, err)
			}
			if tag, err := br.Exec(); err != nil || tag.String() != "UPDATE 1" {
				t.Fatalf("update in batch: %v %v", tag, err)
			}
			if err := br.QueryRow().Scan(&diag); err != nil || diag != "one!" {
				t.Fatalf("select after update: %q %v", diag, err)
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A failing batch: the statements after the error do not run, the
	// whole batch rolls back (one implicit transaction), the conn is fine.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F1", "f-1")
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F2", "b-1") // duplicate ssn
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F3", "f-3")
	err := conn.SendBatch(ctx, b).Close()
	wantCode(t, err, "23505")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn IN ($1, $2)", "f-1", "f-3").Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed batch left %d rows (%v)", n, err)
	}

	// pgconn's pipeline API directly.
	pc := conn.PgConn()
	p := pc.StartPipeline(ctx)
	p.SendPrepare("pp", "SELECT name, diagnosis FROM patients WHERE ssn = $1", nil)
	p.SendQueryPrepared("pp", [][]byte{[]byte("b-2")}, nil, nil)
	p.SendQueryParams("INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", [][]byte{[]byte("P"), []byte("pp-1"), []byte("piped")}, nil, nil, nil)
	p.SendPipelineSync()
	p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	p.SendQueryPrepared("pp", [][]byte{[]byte("pp-1")}, nil, nil)
	p.SendPipelineSync()
	p.SendQueryPrepared("pp", [][]byte{[]byte("pp-1")}, nil, nil)
	p.SendPipelineSync()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	var log []string
	for {
		r, err := p.GetResults()
		if err != nil {
			log = append(log, "err:"+pgCode(err))
			continue
		}
		if r == nil {
			break
		}
		switch r := r.(type) {
		case *pgconn.StatementDescription:
			log = append(log, fmt.Sprintf("described:%v", r.ParamOIDs))
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				log = append(log, "err:"+pgCode(res.Err))
				continue
			}
			var vals []string
			for _, row := range res.Rows {
				for _, v := range row {
					vals = append(vals, string(v))
				}
			}
			log = append(log, res.CommandTag.String()+"["+strings.Join(vals, ",")+"]")
		case *pgconn.PipelineSync:
			log = append(log, "sync")
			if len(log) > 20 {
				t.Fatalf("runaway pipeline: %q", log)
			}
		}
		if strings.Count(strings.Join(log, " "), "sync") == 3 {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("pipeline close: %v (log %q)", err, log)
	}
	wantTokens(t, "pgconn pipeline", log,
		"described:[25]", "SELECT 1[B2,two]", "INSERT 0 1[]", "sync",
		"err:22012", "sync",
		"SELECT 1[P,piped]", "sync")
	if pc.TxStatus() != 'I' {
		t.Fatalf("TxStatus %q", pc.TxStatus())
	}
}

// ---------------------------------------------------------------------------
// 6. COPY

// rawPatients reads the stored (ciphertext) columns of patients directly.
func rawPatients(t *testing.T, h *harness) map[string][3][]byte {
	t.Helper()
	rows, err := h.direct().Query(ctxT(t), "SELECT name, ssn, diagnosis, dob FROM patients")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][3][]byte{}
	for rows.Next() {
		var name string
		var ssn, diag, dob []byte
		if err := rows.Scan(&name, &ssn, &diag, &dob); err != nil {
			t.Fatal(err)
		}
		out[name] = [3][]byte{ssn, diag, dob}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

// assertCiphertext checks that stored values hold none of the plaintexts
// and that non-NULL plaintexts are stored non-NULL.
func assertCiphertext(t *testing.T, h *harness, want map[string][3]string) {
	t.Helper()
	got := rawPatients(t, h)
	if len(got) != len(want) {
		t.Fatalf("%d stored rows, want %d", len(got), len(want))
	}
	for name, vals := range want {
		stored, ok := got[name]
		if !ok {
			t.Fatalf("row %s missing", name)
		}
		for i, v := range vals {
			switch {
			case v == "" && stored[i] != nil:
				t.Fatalf("%s column %d: NULL stored as %x", name, i, stored[i])
			case v != "" && stored[i] == nil:
				t.Fatalf("%s column %d: stored NULL", name, i)
			case v != "" && (len(v) >= 4 && bytes.Contains(stored[i], []byte(v)) || len(stored[i]) < 16):
				t.Fatalf("%s column %d: %q stored as %x, not ciphertext", name, i, v, stored[i])
			}
		}
	}
}

func TestProtoCopyTextCSV(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	pc := conn.PgConn()

	text := "Ann\t100-00-0001\tflu\t1990-01-02\nBob\t100-00-0002\t\\N\t\\N\nCid\t100-00-0003\ttab\\there\t2001-12-31\n"
	tag, err := pc.CopyFrom(ctx, strings.NewReader(text), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN")
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("COPY FROM text: %v %v", tag, err)
	}
	csv := "name,ssn,diagnosis,dob\nDee,100-00-0004,\"comma, quoted\",1985-07-08\nEli,100-00-0005,,\n"
	tag, err = pc.CopyFrom(ctx, strings.NewReader(csv), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT csv, HEADER true)")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY FROM csv: %v %v", tag, err)
	}
	assertCiphertext(t, h, map[string][3]string{
		"Ann": {"100-00-0001", "flu", "1990-01-02"},
		"Bob": {"100-00-0002", "", ""},
		"Cid": {"100-00-0003", "tab\there", "2001-12-31"},
		"Dee": {"100-00-0004", "comma, quoted", "1985-07-08"},
		"Eli": {"100-00-0005", "", ""},
	})
	// Queries see the plaintext, and the deterministic column is
	// searchable.
	var diag string
	if err := conn.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "100-00-0004").Scan(&diag); err != nil || diag != "comma, quoted" {
		t.Fatalf("diagnosis %q %v", diag, err)
	}

	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT 1) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	wantText := text + "Dee\t100-00-0004\tcomma, quoted\t1985-07-08\nEli\t100-00-0005\t\\N\t\\N\n"
	if out.String() != wantText {
		t.Fatalf("COPY TO text:\n%q\nwant\n%q", out.String(), wantText)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT csv, HEADER true)"); err != nil {
		t.Fatal(err)
	}
	wantCSV := "name,ssn,diagnosis,dob\nAnn,100-00-0001,flu,1990-01-02\nBob,100-00-0002,,\nCid,100-00-0003,tab\there,2001-12-31\nDee,100-00-0004,\"comma, quoted\",1985-07-08\nEli,100-00-0005,,\n"
	if out.String() != wantCSV {
		t.Fatalf("COPY TO csv:\n%q\nwant\n%q", out.String(), wantCSV)
	}

	// A role without the keys gets its on_denied view in COPY TO as well.
	out.Reset()
	if _, err := h.connect("billing").PgConn().CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Ann\t100-00-0001\t\\N\n") || strings.Contains(out.String(), "flu") {
		t.Fatalf("billing COPY TO: %q", out.String())
	}

	// Bad values: nothing of the COPY is inserted and the session goes on.
	// (PostgreSQL's codes: 22007 a date it cannot read, 22008 one out of
	// range.)
	for _, bad := range []struct{ sql, data, code string }{
		{"COPY patients (name, ssn, dob) FROM STDIN", "Ok\t200-1\t2000-01-01\nBad\t200-2\tnot-a-date\n", "22007"},
		{"COPY patients (name, ssn, dob) FROM STDIN (FORMAT csv)", "Ok,200-3,2000-01-01\nBad,200-4,2000-13-45\n", "22008"},
	} {
		_, err := pc.CopyFrom(ctx, strings.NewReader(bad.data), bad.sql)
		pe := wantCode(t, err, bad.code)
		if strings.Contains(pe.Message, "not-a-date") || strings.Contains(pe.Message, "2000-13-45") {
			t.Fatalf("error echoes the value: %q", pe.Message)
		}
		if pc.TxStatus() != 'I' {
			t.Fatalf("TxStatus %q", pc.TxStatus())
		}
	}
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 5 {
		t.Fatalf("%d rows after failed COPYs, want 5 (%v)", n, err)
	}
	// A failed COPY inside a transaction aborts it.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("X\t300-1\tnope\n"), "COPY patients (name, ssn, dob) FROM STDIN")
	wantCode(t, err, "22007")
	if pc.TxStatus() != 'E' {
		t.Fatalf("TxStatus after failed COPY in tx: %q", pc.TxStatus())
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// The client's own CopyFail is reported as PostgreSQL reports it.
	_, err = pc.CopyFrom(ctx, &failingReader{data: []byte("Y\t300-2\n")}, "COPY patients (name, ssn) FROM STDIN")
	if code := pgCode(err); code != "57014" {
		t.Fatalf("client CopyFail: want 57014, got %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 5 {
		t.Fatalf("%d rows, want 5 (%v)", n, err)
	}
}

// failingReader yields data then fails, which makes pgconn send CopyFail.
type failingReader struct {
	data []byte
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		return copy(p, r.data), nil
	}
	return 0, errors.New("client gave up")
}

// parseBinaryCopy splits PGCOPY binary data into rows of fields (nil for
// NULL).
func parseBinaryCopy(t *testing.T, data []byte) [][][]byte {
	t.Helper()
	sig := []byte("PGCOPY\n\xff\r\n\x00")
	if !bytes.HasPrefix(data, sig) || len(data) < len(sig)+8 {
		t.Fatalf("not binary COPY data: %q", data)
	}
	data = data[len(sig)+4:]
	ext := binary.BigEndian.Uint32(data)
	data = data[4+ext:]
	var rows [][][]byte
	for {
		if len(data) < 2 {
			t.Fatalf("truncated binary COPY")
		}
		n := int16(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n == -1 {
			if len(data) != 0 {
				t.Fatalf("%d bytes after the trailer", len(data))
			}
			return rows
		}
		row := make([][]byte, n)
		for i := range row {
			l := int32(binary.BigEndian.Uint32(data))
			data = data[4:]
			if l >= 0 {
				row[i] = data[:l]
				data = data[l:]
			}
		}
		rows = append(rows, row)
	}
}

func TestProtoCopyBinary(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	d1 := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	d2 := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"name", "ssn", "diagnosis", "dob"}, pgx.CopyFromRows([][]any{
		{"Bin1", "400-1", "binary one", d1},
		{"Bin2", "400-2", nil, d2},
		{"Bin3", "400-3", "ünïcødé", nil},
	}))
	if err != nil || n != 3 {
		t.Fatalf("pgx CopyFrom (binary): %d %v", n, err)
	}
	assertCiphertext(t, h, map[string][3]string{
		"Bin1": {"400-1", "binary one", "1970-01-01"},
		"Bin2": {"400-2", "", "2024-02-29"},
		"Bin3": {"400-3", "ünïcødé", ""},
	})
	// Canonical encryption: a value copied in binary is found by a text
	// parameter on the deterministic column.
	var dob time.Time
	var diag *string
	if err := conn.QueryRow(ctx, "SELECT dob, diagnosis FROM patients WHERE ssn = $1", "400-2").Scan(&dob, &diag); err != nil || !dob.Equal(d2) || diag != nil {
		t.Fatalf("row copied in binary: %v %v %v", dob, diag, err)
	}
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	rows := parseBinaryCopy(t, out.Bytes())
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	days := func(b []byte) int32 { return int32(binary.BigEndian.Uint32(b)) }
	if string(rows[0][1]) != "400-1" || string(rows[0][2]) != "binary one" || len(rows[0][3]) != 4 || days(rows[0][3]) != -10957 {
		t.Fatalf("binary COPY TO row 1: %q", rows[0])
	}
	if rows[1][2] != nil || days(rows[1][3]) != 8825 || string(rows[2][2]) != "ünïcødé" || rows[2][3] != nil {
		t.Fatalf("binary COPY TO rows: %q", rows)
	}
	// Binary COPY FROM raw, then round trip what COPY TO gave back.
	if _, err := conn.Exec(ctx, "DELETE FROM patients"); err != nil {
		t.Fatal(err)
	}
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(out.Bytes()), "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT binary)")
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("binary COPY FROM of COPY TO output: %v %v", tag, err)
	}
	var again bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &again, "COPY patients (name, ssn, diagnosis, dob) TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), out.Bytes()) {
		t.Fatalf("binary round trip differs")
	}
	// A bad binary value: a date field of 3 bytes.
	var bad bytes.Buffer
	bad.WriteString("PGCOPY\n\xff\r\n\x00")
	bad.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	bad.Write([]byte{0, 2, 0, 0, 0, 3})
	bad.WriteString("Bad")
	bad.Write([]byte{0, 0, 0, 3, 1, 2, 3})
	bad.Write([]byte{0xff, 0xff})
	_, err = conn.PgConn().CopyFrom(ctx, &bad, "COPY patients (name, dob) FROM STDIN (FORMAT binary)")
	// PostgreSQL's date_recv runs out of data: a protocol violation.
	wantCode(t, err, "08P01")
	var cnt int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&cnt); err != nil || cnt != 3 {
		t.Fatalf("%d rows, want 3 (%v)", cnt, err)
	}
}

func TestProtoCopyPlainTablePassesThrough(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	pc := h.connect("doctor").PgConn()
	data := "1\tplain\t000-11-2222\n2\t\\N\tx\\\\y\n"
	if tag, err := pc.CopyFrom(ctx, strings.NewReader(data), "COPY other.patients FROM STDIN"); err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY plain: %v %v", tag, err)
	}
	// Stored as sent: the same-named column in another schema is not
	// encrypted.
	var ssn string
	if err := h.direct().QueryRow(ctx, "SELECT ssn FROM other.patients WHERE id = 1").Scan(&ssn); err != nil || ssn != "000-11-2222" {
		t.Fatalf("other.patients.ssn stored as %q (%v)", ssn, err)
	}
	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY other.patients TO STDOUT"); err != nil || out.String() != data {
		t.Fatalf("COPY TO plain: %q %v", out.String(), err)
	}
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY other.patients TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	if _, err := h.direct().PgConn().CopyTo(ctx, &direct, "COPY other.patients TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), direct.Bytes()) {
		t.Fatal("binary COPY TO of a plain table differs from PostgreSQL's own")
	}
	// PostgreSQL's own error for bad data in a plain table.
	_, err := pc.CopyFrom(ctx, strings.NewReader("notanint\tx\ty\n"), "COPY other.patients FROM STDIN")
	wantCode(t, err, "22P02")
	// COPY of a query over plain data.
	out.Reset()
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT id, name FROM other.patients WHERE id = 1 UNION ALL SELECT 9, 'q') TO STDOUT (FORMAT csv)"); err != nil || out.String() != "1,plain\n9,q\n" {
		t.Fatalf("COPY (query): %q %v", out.String(), err)
	}
}

// ---------------------------------------------------------------------------
// 7. notices and notifications

func TestProtoNoticeAndNotify(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	var mu sync.Mutex
	var notices []string
	conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) {
		c.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Severity+":"+n.Message)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// (A DO block would be server-side code, which doctor may not run.)
	h.pg.ExecAdmin(t, `CREATE FUNCTION public.greet() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$`)
	if _, err := conn.Exec(ctx, "SELECT greet()"); err != nil {
		t.Fatal(err)
	}
	// Notices in the middle of an encrypted result, one per row.
	h.pg.ExecAdmin(t, `CREATE FUNCTION public.noisy(i int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'row %', i; RETURN true; END $$`)
	insertPatients(t, conn, [3]string{"N", "n-1", "noted"}, [3]string{"M", "n-2", "marked"})
	rows, err := conn.Query(ctx, "SELECT diagnosis FROM patients WHERE noisy(id) ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	diags, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(diags, ",") != "noted,marked" {
		t.Fatalf("rows with notices: %q %v", diags, err)
	}
	var diag string
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS no_such_table_xyz"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(notices, "|")
	mu.Unlock()
	if got != `NOTICE:hello 42|WARNING:careful|NOTICE:row 1|NOTICE:row 2|NOTICE:table "no_such_table_xyz" does not exist, skipping` {
		t.Fatalf("notices %q", got)
	}

	listener := h.connect("doctor")
	if _, err := listener.Exec(ctx, "LISTEN pgcloak_chan"); err != nil {
		t.Fatal(err)
	}
	notifier := h.connect("billing")
	if _, err := notifier.Exec(ctx, "NOTIFY pgcloak_chan, 'first'"); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, "SELECT pg_notify('pgcloak_chan', $1)", "second"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second"} {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if n.Channel != "pgcloak_chan" || n.Payload != want || n.PID != notifier.PgConn().PID() {
			t.Fatalf("notification %+v, want %q from pid %d", n, want, notifier.PgConn().PID())
		}
	}
	// A notification delivered while the listener runs a query (it comes
	// with that query's answer) is not lost and does not disturb it.
	if _, err := notifier.Exec(ctx, "NOTIFY pgcloak_chan, 'third'"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := listener.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE ssn = $1", "n-1").Scan(&diag); err != nil || diag != "noted" {
		t.Fatalf("%q %v", diag, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n, err := listener.WaitForNotification(wctx); err != nil || n.Payload != "third" {
		t.Fatalf("third notification: %+v %v", n, err)
	}
}

func TestProtoDDLInPipelineStaysAtomic(t *testing.T) {
	// DDL in an extended-protocol batch makes the proxy's catalog stale;
	// reloading it with a query of its own in the middle of the batch
	// would commit the batch's implicit transaction early.
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	h.pg.ExecAdmin(t, "GRANT CREATE ON SCHEMA public TO doctor")
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Query: "CREATE TABLE public.made_in_batch (x int)"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "ddl", c.recvN(3), "ParseComplete", "BindComplete", "C:CREATE TABLE")
	c.send(
		&pgproto3.Parse{Query: "SELECT ssn FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("x")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "rest of batch", c.recvN(5), "ParseComplete", "BindComplete", "C:SELECT 0", "ParseComplete", "BindComplete")
	wantTokens(t, "error", c.recvN(1), "E:22012")
	// More extended messages before Sync: skipped by the server; the
	// proxy must not wait for answers to anything it sends meanwhile.
	c.send(
		&pgproto3.Parse{Query: "SELECT ssn FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("y")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "sync", c.recvReady(), "Z:I")
	var exists bool
	if err := h.direct().QueryRow(ctx, "SELECT to_regclass('public.made_in_batch') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("table created in a failed batch exists=%v (%v): the batch was committed early", exists, err)
	}
	wantTokens(t, "after", c.query("SELECT count(*) FROM patients"), "Row:count/20", "D:0", "C:SELECT 1", "Z:I")
}

// assertNotLogged checks that PostgreSQL's statement log, once it holds
// marker, does not hold secret.
func assertNotLogged(t *testing.T, h *harness, c *protoClient, marker, secret string) {
	t.Helper()
	if h.pg.StatementLogPath == "" {
		return
	}
	wantTokens(t, "marker", c.query("SELECT '"+marker+"' AS marker"), "Row:marker/25", "D:"+marker, "C:SELECT 1", "Z:I")
	if log := h.pg.AwaitStatement(t, marker); strings.Contains(log, secret) {
		t.Fatalf("PostgreSQL received the plaintext %q", secret)
	}
}

func TestProtoFailedParseForgetsPlan(t *testing.T) {
	// A Parse the proxy accepts but PostgreSQL rejects leaves no statement;
	// a later Parse of the same name must be planned afresh, or its
	// parameters would not be encrypted.
	h := newHarness(t, testPolicy, testSchema)
	secret := fmt.Sprintf("fp-secret-%d", time.Now().UnixNano())
	insertPatients(t, h.connect("doctor"), [3]string{"FP", secret, "x"})
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Name: "s", Query: "SELECT name FROM patients WHERE id = $1 AND no_such_function(id)"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "failed parse", c.recvReady(), "E:42883", "Z:I")
	c.send(
		&pgproto3.Parse{Name: "s", Query: "SELECT name FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "re-parse", c.recvReady(), "ParseComplete", "BindComplete", "D:FP", "C:SELECT 1", "Z:I")

	// A Parse skipped after an error in its batch, then parsed for real.
	c.send(
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Parse{Name: "k", Query: "SELECT name FROM patients WHERE id = $1"},
		&pgproto3.Sync{},
		&pgproto3.Parse{Name: "k", Query: "SELECT name FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{PreparedStatement: "k", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "skipped parse", c.recvReady(), "ParseComplete", "BindComplete", "E:22012", "Z:I")
	wantTokens(t, "parse after skipped parse", c.recvReady(), "ParseComplete", "BindComplete", "D:FP", "C:SELECT 1", "Z:I")

	// A Close skipped after an error: the statement still exists, so the
	// next Parse of its name fails and the old plan stays in force.
	c.send(
		&pgproto3.Parse{Name: "z", Query: "SELECT name FROM patients WHERE ssn = $1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "parse z", c.recvReady(), "ParseComplete", "Z:I")
	c.send(
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "z"},
		&pgproto3.Sync{},
		&pgproto3.Parse{Name: "z", Query: "SELECT name FROM patients WHERE id::text = $1"},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "z", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "skipped close", c.recvReady(), "ParseComplete", "BindComplete", "E:22012", "Z:I")
	wantTokens(t, "parse of a name still in use", c.recvReady(), "E:42P05", "Z:I")
	wantTokens(t, "old statement", c.recvReady(), "BindComplete", "D:FP", "C:SELECT 1", "Z:I")
	assertNotLogged(t, h, c, fmt.Sprintf("fp-marker-%d", time.Now().UnixNano()), secret)
}

func TestProtoSQLPrepareSharesNamespace(t *testing.T) {
	// SQL PREPARE and protocol Parse share PostgreSQL's namespace of
	// prepared statements: binding a statement made by SQL PREPARE over
	// the protocol must still encrypt its parameters (or be refused).
	h := newHarness(t, testPolicy, testSchema)
	secret := fmt.Sprintf("sp-secret-%d", time.Now().UnixNano())
	insertPatients(t, h.connect("doctor"), [3]string{"SP", secret, "x"})
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "prepare", c.query("PREPARE byssn(text) AS SELECT name FROM patients WHERE ssn = $1"), "C:PREPARE", "Z:I")
	wantTokens(t, "execute", c.query("EXECUTE byssn('"+secret+"')"), "Row:name/25", "D:SP", "C:SELECT 1", "Z:I")
	c.send(
		&pgproto3.Bind{PreparedStatement: "byssn", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	got := c.recvReady()
	if strings.Join(got, " ") != "BindComplete D:SP C:SELECT 1 Z:I" && (len(got) != 2 || got[0] != "E:0A000") {
		t.Fatalf("protocol Bind of a SQL-prepared statement: %q (want the row, or a refusal)", got)
	}
	// DEALLOCATE by SQL frees the name for a protocol Parse, which must
	// then be planned afresh.
	c.send(
		&pgproto3.Parse{Name: "p2", Query: "SELECT name FROM patients WHERE id = $1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "parse p2", c.recvReady(), "ParseComplete", "Z:I")
	wantTokens(t, "deallocate", c.query("DEALLOCATE p2"), "C:DEALLOCATE", "Z:I")
	c.send(
		&pgproto3.Parse{Name: "p2", Query: "SELECT name FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{PreparedStatement: "p2", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "parse after DEALLOCATE", c.recvReady(), "ParseComplete", "BindComplete", "D:SP", "C:SELECT 1", "Z:I")
	// DEALLOCATE ALL too.
	wantTokens(t, "deallocate all", c.query("DEALLOCATE ALL"), "C:DEALLOCATE ALL", "Z:I")
	c.send(
		&pgproto3.Parse{Name: "p2", Query: "SELECT diagnosis FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{PreparedStatement: "p2", Parameters: [][]byte{[]byte(secret)}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "parse after DEALLOCATE ALL", c.recvReady(), "ParseComplete", "BindComplete", "D:x", "C:SELECT 1", "Z:I")
	assertNotLogged(t, h, c, fmt.Sprintf("sp-marker-%d", time.Now().UnixNano()), secret)
}

func TestProtoUndecryptableValue(t *testing.T) {
	// A stored value that does not decrypt fails the result with the
	// proxy's error; the answer the client gets must still be shaped as
	// PostgreSQL's would be after an error (nothing more until
	// ReadyForQuery), or drivers lose track of the protocol.
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	insertPatients(t, conn, [3]string{"G", "u-1", "good"}, [3]string{"B", "u-2", "bad"})
	h.pg.ExecAdmin(t, `UPDATE patients SET diagnosis = '\x0102'::bytea WHERE name = 'B'`)

	c := protoConnect(t, h, "doctor")
	wantTokens(t, "simple", c.query("SELECT name, diagnosis FROM patients ORDER BY id"), "Row:name/25,diagnosis/25", "D:G,good", "E:XX001", "Z:I")
	if strings.Contains(c.lastErr.Message, `\x0102`) || !strings.Contains(c.lastErr.Message, "public.patients.diagnosis") {
		t.Fatalf("error message %q", c.lastErr.Message)
	}
	c.send(
		&pgproto3.Parse{Query: "SELECT name, diagnosis FROM patients ORDER BY id"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "later", Query: "SELECT 2"}, &pgproto3.Describe{ObjectType: 'S', Name: "later"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "extended", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25,diagnosis/25", "D:G,good", "E:XX001", "Z:I")
	wantTokens(t, "after", c.query("SELECT name FROM patients WHERE diagnosis IS NULL"), "Row:name/25", "C:SELECT 0", "Z:I")

	// pgx batches in every mode: the error, and a connection that lives on.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("SELECT name, diagnosis FROM patients ORDER BY id")
		b.Queue("SELECT ssn FROM patients WHERE ssn = $1", "u-1")
		err = conn.SendBatch(ctx, b).Close()
		wantCode(t, err, "XX001")
		if conn.IsClosed() {
			t.Fatalf("mode %v: the undecryptable value closed the pgx connection", mode)
		}
		b = &pgx.Batch{}
		b.Queue("SELECT name, diagnosis FROM patients ORDER BY id")
		b.Queue("SELECT ssn FROM patients WHERE ssn = $1", "u-1")
		br := conn.SendBatch(ctx, b)
		rows, err := br.Query()
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		wantCode(t, err, "XX001")
		br.Close()
		var ssn string
		if err := conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE ssn = $1", mode, "u-1").Scan(&ssn); err != nil || ssn != "u-1" {
			t.Fatalf("mode %v: session after the error: %q %v", mode, ssn, err)
		}
	}
}

func TestProtoResultErrorAbortsTransaction(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	insertPatients(t, conn, [3]string{"B", "u-2", "bad"})
	h.pg.ExecAdmin(t, `UPDATE patients SET diagnosis = '\x0102'::bytea WHERE name = 'B'`)
	c := protoConnect(t, h, "doctor")
	// Outside a transaction the client sees the error and an idle session.
	wantTokens(t, "simple", c.query("SELECT diagnosis FROM patients"), "Row:diagnosis/25", "E:XX001", "Z:I")
	c.send(
		&pgproto3.Parse{Query: "SELECT diagnosis FROM patients"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "extended", c.recvReady(), "ParseComplete", "BindComplete", "E:XX001", "Z:I")
	// Inside one, the transaction is failed on the server too (25P02 for
	// what follows), as after any error.
	wantTokens(t, "in a transaction", c.query("BEGIN; SELECT diagnosis FROM patients"), "C:BEGIN", "Row:diagnosis/25", "E:XX001", "Z:E")
	wantTokens(t, "aborted", c.query("INSERT INTO other.patients VALUES (1, 'x', 'y')"), "E:25P02", "Z:E")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM other.patients").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows committed in the failed transaction (%v)", n, err)
	}
}

func TestProtoCopyExtendedProtocol(t *testing.T) {
	// COPY started with Parse/Bind/Execute: its data must be encrypted as
	// for a simple-query COPY.
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Query: "COPY patients (name, ssn, diagnosis, dob) FROM STDIN (FORMAT csv)"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "copy in", c.recvN(3), "ParseComplete", "BindComplete", "CopyIn")
	c.send(
		&pgproto3.CopyData{Data: []byte("Ext,ext-ssn-1,ext diagnosis,1999-09-09\n")},
		&pgproto3.CopyData{Data: []byte("Ext2,ext-ssn-2,,\n")},
		&pgproto3.CopyDone{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "copy done", c.recvReady(), "C:COPY 2", "Z:I")
	assertCiphertext(t, h, map[string][3]string{
		"Ext":  {"ext-ssn-1", "ext diagnosis", "1999-09-09"},
		"Ext2": {"ext-ssn-2", "", ""},
	})
	c.send(
		&pgproto3.Parse{Query: "COPY patients (ssn, diagnosis, dob) TO STDOUT"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "copy out", c.recvReady(), "ParseComplete", "BindComplete", "CopyOut",
		"d:ext-ssn-1\text diagnosis\t1999-09-09\n", "d:ext-ssn-2\t\\N\t\\N\n", "CopyDone", "C:COPY 2", "Z:I")
	// A bad value: the COPY fails with PostgreSQL's 22007, nothing is stored.
	c.send(
		&pgproto3.Parse{Query: "COPY patients (name, dob) FROM STDIN"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.CopyData{Data: []byte("Bad\tnever\n")},
		&pgproto3.CopyDone{},
		&pgproto3.Sync{},
	)
	got := c.recvReady()
	wantTokens(t, "bad copy", got, "ParseComplete", "BindComplete", "CopyIn", "E:22007", "Z:I")

	// libpq's way (PQexecParams): Sync right after Execute, which the
	// server ignores in copy-in mode, then CopyDone and another Sync.
	for _, tc := range []struct{ table, row string }{
		{"patients (name, ssn, diagnosis)", "Lib\tlibpq-ssn\tlibpq diagnosis\n"},
		{"other.patients (name, ssn, id)", "Lib\tlibpq-ssn\t3\n"},
	} {
		c.send(
			&pgproto3.Parse{Query: "COPY " + tc.table + " FROM STDIN"},
			&pgproto3.Bind{},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		)
		wantTokens(t, "copy in, libpq style", c.recvN(4), "ParseComplete", "BindComplete", "NoData", "CopyIn")
		c.send(
			&pgproto3.CopyData{Data: []byte(tc.row)},
			&pgproto3.Sync{}, // also ignored
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
		)
		wantTokens(t, "copy done, libpq style", c.recvReady(), "C:COPY 1", "Z:I")
		// The proxy is still in step with the server.
		wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
		wantTokens(t, "select", c.query("SELECT ssn FROM patients WHERE name = 'Lib'"), "Row:ssn/25", "D:libpq-ssn", "C:SELECT 1", "Z:T")
		wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	}
	// A simple-query COPY with a stray Sync in the data.
	c.send(&pgproto3.Query{String: "COPY patients (name, ssn) FROM STDIN"})
	wantTokens(t, "simple copy", c.recvN(1), "CopyIn")
	c.send(&pgproto3.CopyData{Data: []byte("Str\tstray-ssn\n")}, &pgproto3.Sync{}, &pgproto3.CopyDone{})
	wantTokens(t, "simple copy done", c.recvReady(), "C:COPY 1", "Z:I")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	assertCiphertext(t, h, map[string][3]string{
		"Ext":  {"ext-ssn-1", "ext diagnosis", "1999-09-09"},
		"Ext2": {"ext-ssn-2", "", ""},
		"Lib":  {"libpq-ssn", "libpq diagnosis", ""},
		"Str":  {"stray-ssn", "", ""},
	})
}

// A value COPY cannot encrypt is named by row and column, once (issue 8,
// finding 10).
func TestCopyErrorNamesRowOnce(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("a\tb\tc\t2001-01-01\nx\ty\tz\tnot-a-date\n"),
		"COPY patients (name, ssn, diagnosis, dob) FROM STDIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("COPY of a bad date: %v", err)
	}
	if !strings.Contains(pe.Message, "COPY row 2, column 4: ") || strings.Count(pe.Message, "COPY row") != 1 {
		t.Fatalf("message %q: want the row and column named once", pe.Message)
	}
}

// A value out of its type's range gets PostgreSQL's SQLSTATE for it (issue
// 8, finding 5), compared with PostgreSQL's own answer for the same input.
func TestOutOfRangeValuesGetPostgreSQLsCode(t *testing.T) {
	h := newHarness(t, sqPolicy, sqSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")
	direct := h.direct()
	cases := []struct{ insert, cast string }{
		{"INSERT INTO accounts (num) VALUES ('99999999999999999999')", "SELECT '99999999999999999999'::int8"},
		{"INSERT INTO patients (name, dob) VALUES ('r', '2024-01-32')", "SELECT '2024-01-32'::date"},
		{"INSERT INTO patients (name, dob) VALUES ('r', '5874898-01-01')", "SELECT '5874898-01-01'::date"},
		{"INSERT INTO patients (name, dob) VALUES ('r', 'not a date')", "SELECT 'not a date'::date"},
	}
	for _, c := range cases {
		_, want := direct.Exec(ctx, c.cast)
		var wantPE *pgconn.PgError
		if !errors.As(want, &wantPE) {
			t.Fatalf("%s: PostgreSQL accepted it: %v", c.cast, want)
		}
		_, err := conn.Exec(ctx, c.insert, pgx.QueryExecModeSimpleProtocol)
		wantCode(t, err, wantPE.Code)
	}
}
