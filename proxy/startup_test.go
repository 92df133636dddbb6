package proxy_test

// Startup, authentication and TLS tests: how clients log in through the
// proxy, with and without TLS on either leg, in front of a real PostgreSQL.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// proxyURL is a connection string through the proxy with explicit
// credentials and query parameters.
func proxyURL(h *harness, user, password, query string) string {
	cred := user
	if password != "" {
		cred += ":" + password
	}
	return fmt.Sprintf("postgres://%s@%s/%s?%s", cred, h.addr, h.pg.Database, query)
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
