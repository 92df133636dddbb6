package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// Issue 9: SCRAM terminated at the proxy, with TLS on both legs, against
// a PostgreSQL that asks every role but the superuser for a SCRAM
// password, as a managed PostgreSQL does.

const scramPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
  roles:
    - {role: alice, read: [ssn], write: [ssn]}
    - {role: carol, read: [ssn], write: [ssn]}
`

const (
	alicePassword = "alice's pass, wörd"
	authPassword  = "auth-role-password"
	carolPassword = "carol-md5"
)

// scramPG starts a PostgreSQL of the test's own: ssl=on, SCRAM for every
// role on TCP (md5 for carol), trust for the superuser only.
func scramPG(t *testing.T) *testenv.PG {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ls, err := testenv.StartLocalServer(ctx, testenv.LocalServerOptions{
		TLS: true,
		HBA: []string{
			"host all postgres 127.0.0.1/32 trust",
			"host all carol 127.0.0.1/32 md5",
			"host all all 127.0.0.1/32 scram-sha-256",
		},
		ExtraConf: map[string]string{"password_encryption": "scram-sha-256"},
	})
	if err != nil {
		testenv.Unavailable(t, "a PostgreSQL of the test's own: %v", err)
	}
	t.Cleanup(func() { ls.Stop() })
	pg := &testenv.PG{Host: ls.Host, Port: ls.Port, Database: "postgres", Superuser: ls.Superuser,
		TLS: true, CACertFile: ls.CACertFile, Source: testenv.SourceLocal}
	pg.ExecAdmin(t, `
CREATE ROLE alice LOGIN PASSWORD '`+strings.ReplaceAll(alicePassword, "'", "''")+`';
CREATE ROLE pgcloak_auth LOGIN PASSWORD '`+authPassword+`';
SET password_encryption = 'md5';
CREATE ROLE carol LOGIN PASSWORD '`+carolPassword+`';
RESET password_encryption;
CREATE TABLE public.patients (id serial PRIMARY KEY, ssn bytea);
GRANT ALL ON public.patients TO PUBLIC;
GRANT ALL ON SEQUENCE public.patients_id_seq TO PUBLIC;
`+dbguard.AuthFunctionDDL("pgcloak_auth"))
	return pg
}

func withAuth(a policy.ServerAuth) harnessOption {
	return func(c *proxy.Config) { c.Server.Auth = a }
}

// scramProxy is a proxy terminating SCRAM, with TLS required of clients
// and verified towards PostgreSQL.
func scramProxy(t *testing.T, pg *testenv.PG, ttl string) (h *harness, certFile string) {
	t.Helper()
	t.Setenv("PGCLOAK_TEST_AUTH_PASSWORD", authPassword)
	cert, key := selfSignedCert(t)
	store, _, err := keymap.NewLocalStoreInDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h = startProxy(t, pg, store, scramPolicy,
		withServerTLS("require", cert, key),
		withUpstreamTLS("verify-full", pg.CACertFile),
		withAuth(policy.ServerAuth{Method: policy.AuthSCRAM, CacheTTL: ttl,
			Query: policy.AuthQuery{User: "pgcloak_auth", PasswordEnv: "PGCLOAK_TEST_AUTH_PASSWORD", Database: pg.Database}}))
	return h, cert
}

func TestSCRAMTerminatedAtTheProxy(t *testing.T) {
	pg := scramPG(t)
	h, cert := scramProxy(t, pg, "1s")
	ctx := ctxT(t)
	url := func(user, password, query string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?%s", user, strings.ReplaceAll(password, " ", "%20"), h.addr, pg.Database, query)
	}
	writer, err := connectDSN(t, url("alice", alicePassword, "sslmode=require"), nil)
	if err != nil {
		t.Fatalf("alice through pgcloak: %v", err)
	}
	if _, err := writer.Exec(ctx, "INSERT INTO patients (ssn) VALUES ($1)", "123-45-6789"); err != nil {
		t.Fatal(err)
	}

	for _, sslmode := range []string{"sslmode=require", "sslmode=verify-full&sslrootcert=" + cert} {
		for _, cb := range []string{"disable", "prefer", "require"} {
			t.Run("pgx "+strings.SplitN(sslmode, "&", 2)[0]+" channel_binding="+cb, func(t *testing.T) {
				conn, err := connectDSN(t, url("alice", alicePassword, sslmode+"&channel_binding="+cb), nil)
				if err != nil {
					t.Fatal(err)
				}
				var user, ssn string
				if err := conn.QueryRow(ctx, "SELECT session_user, ssn FROM patients").Scan(&user, &ssn); err != nil || user != "alice" || ssn != "123-45-6789" {
					t.Fatalf("session_user %q, ssn %q, %v", user, ssn, err)
				}
				if !isTLS(conn) || !upstreamSSL(t, conn) {
					t.Fatal("not TLS on both legs")
				}
			})
		}
	}

	t.Run("psql", func(t *testing.T) {
		psql := psqlPath(t)
		host, port, _ := net.SplitHostPort(h.addr)
		for _, sslmode := range []string{"sslmode=require", "sslmode=verify-full sslrootcert=" + cert} {
			for _, cb := range []string{"disable", "prefer", "require"} {
				conninfo := fmt.Sprintf("host=%s port=%s dbname=%s user=alice %s channel_binding=%s", host, port, pg.Database, sslmode, cb)
				out, err := runPsql(t, psql, conninfo, alicePassword, "SELECT session_user, ssn, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) FROM patients")
				if err != nil || out != "alice|123-45-6789|t" {
					t.Errorf("psql %s: %q, %v", conninfo, out, err)
				}
			}
		}
		_, err := runPsql(t, psql, fmt.Sprintf("host=%s port=%s dbname=%s user=alice sslmode=disable", host, port, pg.Database), alicePassword, "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "TLS is required") {
			t.Errorf("a plaintext client: %v", err)
		}
	})

	t.Run("pgjdbc", func(t *testing.T) {
		dir, err := filepath.Abs(filepath.Join("..", "clients"))
		if err != nil {
			t.Fatal(err)
		}
		matrix := cmJDBC(t, dir)
		argv := append(slices.Clone(matrix[:len(matrix)-1]), filepath.Join(dir, "jdbc", "Login.java"))
		host, port, _ := net.SplitHostPort(h.addr)
		for _, c := range []struct{ query, password, want string }{
			{"sslmode=require", alicePassword, "alice|123-45-6789|t"},
			{"sslmode=verify-full&sslrootcert=" + cert, alicePassword, "alice|123-45-6789|t"},
			{"sslmode=require", "wrong", "error 28P01"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(),
				"LOGIN_URL=jdbc:postgresql://"+net.JoinHostPort(host, port)+"/"+pg.Database+"?"+c.query,
				"LOGIN_USER=alice", "LOGIN_PASSWORD="+c.password,
				"LOGIN_SQL=SELECT session_user, ssn, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) FROM patients")
			out, _ := cmd.CombinedOutput()
			cancel()
			if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, c.want) {
				t.Errorf("pgjdbc %s: %s, want %s", c.query, got, c.want)
			}
		}
	})

	t.Run("wrong password and unknown role fail alike", func(t *testing.T) {
		for _, c := range []struct{ user, password string }{{"alice", "wrong"}, {"alice", ""}, {"nobody_here", "wrong"}, {"pgcloak_auth", "wrong"}} {
			_, err := connectDSN(t, url(c.user, c.password, "sslmode=require"), nil)
			want := fmt.Sprintf("pgcloak: password authentication failed for user %q", c.user)
			if pgCode(err) != "28P01" || !strings.Contains(err.Error(), want) {
				t.Errorf("%s with %q: %v, want 28P01 %s", c.user, c.password, err, want)
			}
		}
	})

	t.Run("md5 upstream is relayed", func(t *testing.T) {
		conn, err := connectDSN(t, url("carol", carolPassword, "sslmode=require"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ssn string
		if err := conn.QueryRow(ctx, "SELECT ssn FROM patients").Scan(&ssn); err != nil || ssn != "123-45-6789" {
			t.Fatalf("%q, %v", ssn, err)
		}
		if _, err := connectDSN(t, url("carol", "wrong", "sslmode=require"), nil); pgCode(err) != "28P01" {
			t.Fatalf("wrong md5 password: %v", err)
		}
	})

	t.Run("a password change takes effect within the cache TTL", func(t *testing.T) {
		pg.ExecAdmin(t, "ALTER ROLE alice PASSWORD 'changed-pass'")
		// The old password: PostgreSQL asks with the new salt, which the
		// proxy notices at once.
		if _, err := connectDSN(t, url("alice", alicePassword, "sslmode=require"), nil); pgCode(err) != "28P01" {
			t.Fatalf("old password after the change: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			conn, err := connectDSN(t, url("alice", "changed-pass", "sslmode=require"), nil)
			if err == nil {
				conn.Close(ctx)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("new password still refused after 5s with a 1s TTL: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("verifiers from a file", func(t *testing.T) {
		var verifier string
		if err := h.direct().QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'").Scan(&verifier); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "verifiers")
		if err := os.WriteFile(file, []byte(`"alice" "`+verifier+`"`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cert2, key2 := selfSignedCert(t)
		hf := startProxy(t, pg, h.store, scramPolicy, withServerTLS("require", cert2, key2), withUpstreamTLS("require", ""),
			withAuth(policy.ServerAuth{Method: policy.AuthSCRAM, CacheTTL: "1m", VerifiersFile: file}))
		furl := fmt.Sprintf("postgres://alice:changed-pass@%s/%s?sslmode=require&channel_binding=require", hf.addr, pg.Database)
		conn, err := connectDSN(t, furl, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ssn string
		if err := conn.QueryRow(ctx, "SELECT ssn FROM patients").Scan(&ssn); err != nil || ssn != "123-45-6789" {
			t.Fatalf("%q, %v", ssn, err)
		}
		// pgcloak_auth is not in the file: refused like a wrong password,
		// though PostgreSQL would take its password.
		_, err = connectDSN(t, fmt.Sprintf("postgres://pgcloak_auth:%s@%s/%s?sslmode=require", authPassword, hf.addr, pg.Database), nil)
		if pgCode(err) != "28P01" || !strings.Contains(err.Error(), `password authentication failed for user "pgcloak_auth"`) {
			t.Fatalf("a role missing from the file: %v", err)
		}
	})

	t.Run("an auth query that cannot log in refuses logins at once", func(t *testing.T) {
		t.Setenv("PGCLOAK_TEST_WRONG_AUTH_PASSWORD", "not the auth role's password")
		cert2, key2 := selfSignedCert(t)
		hq := startProxy(t, pg, h.store, scramPolicy, withServerTLS("require", cert2, key2), withUpstreamTLS("require", ""),
			withAuth(policy.ServerAuth{Method: policy.AuthSCRAM, CacheTTL: "1m",
				Query: policy.AuthQuery{User: "pgcloak_auth", PasswordEnv: "PGCLOAK_TEST_WRONG_AUTH_PASSWORD", Database: pg.Database}}))
		start := time.Now()
		_, err := connectDSN(t, fmt.Sprintf("postgres://alice:changed-pass@%s/%s?sslmode=require", hq.addr, pg.Database), nil)
		if pgCode(err) != "28000" || !strings.Contains(err.Error(), "cannot look up") || time.Since(start) > 10*time.Second {
			t.Fatalf("%v after %s", err, time.Since(start))
		}
		if strings.Contains(hq.logBuf.String(), "not the auth role's password") {
			t.Fatal("the auth role's password is in the log")
		}
	})

	t.Run("an unknown role is shown PostgreSQL's own mock salt", func(t *testing.T) {
		for _, role := range []string{"nobody_here", "alice"} {
			direct := serverFirst(t, pg.Address(), false, role, pg.Database)
			proxied := serverFirst(t, h.addr, true, role, pg.Database)
			if saltOf(direct) != saltOf(proxied) || saltOf(direct) == "" {
				t.Errorf("%s: PostgreSQL says %q, pgcloak %q", role, direct, proxied)
			}
		}
	})

	t.Run("an oversized SASL message fails the login as PostgreSQL fails it", func(t *testing.T) {
		for _, addr := range []struct {
			addr  string
			tlsOn bool
		}{{pg.Address(), false}, {h.addr, true}} {
			fe := saslStart(t, addr.addr, addr.tlsOn, "alice", pg.Database)
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: bytes.Repeat([]byte("x"), 70000)})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			msg, err := fe.Receive()
			if e, ok := msg.(*pgproto3.ErrorResponse); !ok || e.Code != "28P01" || !strings.Contains(e.Message, `password authentication failed for user "alice"`) {
				t.Errorf("%s: %#v, %v; want 28P01", addr.addr, msg, err)
			}
		}
	})

	t.Run("an auth function its owner could have written is not called", func(t *testing.T) {
		pg.ExecAdmin(t, `CREATE ROLE mallory LOGIN CREATEDB PASSWORD 'mallory-pw'`)
		pg.ExecAdmin(t, `CREATE DATABASE evil OWNER mallory`)
		evil := *pg
		evil.Database = "evil"
		evil.ExecAdmin(t, `SET ROLE mallory;
CREATE SCHEMA pgcloak_scram;
GRANT USAGE ON SCHEMA pgcloak_scram TO PUBLIC;
CREATE FUNCTION pgcloak_scram.verifier(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' PASSWORD ''pwned'''; RETURN NULL; END $$;
GRANT EXECUTE ON FUNCTION pgcloak_scram.verifier(text) TO PUBLIC`)
		cert2, key2 := selfSignedCert(t)
		he := startProxy(t, pg, h.store, scramPolicy, withServerTLS("require", cert2, key2), withUpstreamTLS("require", ""),
			withAuth(policy.ServerAuth{Method: policy.AuthSCRAM, CacheTTL: "1m",
				Query: policy.AuthQuery{User: "pgcloak_auth", PasswordEnv: "PGCLOAK_TEST_AUTH_PASSWORD", Database: "evil"}}))
		_, err := connectDSN(t, fmt.Sprintf("postgres://alice:x@%s/evil?sslmode=require", he.addr), nil)
		if pgCode(err) != "28000" || !strings.Contains(err.Error(), "cannot look up") {
			t.Fatalf("%v", err)
		}
		if !strings.Contains(he.logBuf.String(), "not a SECURITY DEFINER function that a superuser owns") {
			t.Error("the log does not say why the auth function was not used")
		}
		// Its body never ran as the auth role.
		conn, err := connectDSN(t, fmt.Sprintf("postgres://pgcloak_auth:%s@%s/%s?sslmode=require", authPassword, pg.Address(), pg.Database), nil)
		if err != nil {
			t.Fatalf("the auth role's password changed: %v", err)
		}
		conn.Close(ctx)
		// A client naming that database is still checked against the
		// configured database's function.
		conn, err = connectDSN(t, fmt.Sprintf("postgres://alice:changed-pass@%s/evil?sslmode=require", h.addr), nil)
		if err != nil {
			t.Fatalf("alice into another database: %v", err)
		}
		conn.Close(ctx)
	})

	t.Run("roles created or changed in PostgreSQL log in at the next attempt", func(t *testing.T) {
		// A failed login caches no verifier for latecomer; PostgreSQL's salt
		// changes once the role exists, and the proxy looks again.
		if _, err := connectDSN(t, url("latecomer", "pw-late", "sslmode=require"), nil); pgCode(err) != "28P01" {
			t.Fatalf("before the role exists: %v", err)
		}
		pg.ExecAdmin(t, `CREATE ROLE latecomer LOGIN PASSWORD 'pw-late'`)
		conn, err := connectDSN(t, url("latecomer", "pw-late", "sslmode=require"), nil)
		if err != nil {
			t.Fatalf("right after CREATE ROLE: %v", err)
		}
		conn.Close(ctx)
		// NOLOGIN: PostgreSQL's own answer, after the password.
		pg.ExecAdmin(t, `ALTER ROLE latecomer NOLOGIN`)
		_, err = connectDSN(t, url("latecomer", "pw-late", "sslmode=require"), nil)
		if pgCode(err) != "28000" || !strings.Contains(err.Error(), `role "latecomer" is not permitted to log in`) {
			t.Fatalf("NOLOGIN role: %v", err)
		}
		// Names as PostgreSQL reads and prints them.
		long := strings.Repeat("n", 70)
		for _, c := range []struct{ user, shown string }{{`we"ird`, `we"ird`}, {long, long[:63]}} {
			_, err := connectDSN(t, fmt.Sprintf("host=%s port=%s dbname=%s user='%s' password=x sslmode=require", strings.Split(h.addr, ":")[0], strings.Split(h.addr, ":")[1], pg.Database, c.user), nil)
			if want := `password authentication failed for user "` + c.shown + `"`; pgCode(err) != "28P01" || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: %v, want %s", c.user, err, want)
			}
		}
	})

	t.Run("the auth function is checked before every lookup", func(t *testing.T) {
		pg.ExecAdmin(t, `CREATE ROLE installer SUPERUSER; CREATE ROLE checked1 LOGIN PASSWORD 'pw1'; CREATE ROLE checked2 LOGIN PASSWORD 'pw2'; CREATE ROLE checked3 LOGIN PASSWORD 'pw3'`)
		pg.ExecAdmin(t, `SET ROLE installer; `+dbguard.AuthFunctionDDL("pgcloak_auth"))
		conn, err := connectDSN(t, url("checked1", "pw1", "sslmode=require"), nil)
		if err != nil {
			t.Fatalf("with the function installed by a superuser: %v", err)
		}
		conn.Close(ctx)
		// Its owner loses superuser: the function is no longer trusted.
		pg.ExecAdmin(t, `ALTER ROLE installer NOSUPERUSER`)
		if _, err := connectDSN(t, url("checked2", "pw2", "sslmode=require"), nil); pgCode(err) != "28000" {
			t.Fatalf("with the function's owner demoted: %v", err)
		}
		// Reinstalled by a superuser; then a role gets CREATE on the schema.
		pg.ExecAdmin(t, dbguard.AuthFunctionDDL("pgcloak_auth"))
		pg.ExecAdmin(t, `GRANT CREATE ON SCHEMA pgcloak_scram TO mallory`)
		if _, err := connectDSN(t, url("checked2", "pw2", "sslmode=require"), nil); pgCode(err) != "28000" {
			t.Fatalf("with CREATE on the schema granted to another role: %v", err)
		}
		// Installing again takes the grant back.
		pg.ExecAdmin(t, dbguard.AuthFunctionDDL("pgcloak_auth"))
		conn, err = connectDSN(t, url("checked3", "pw3", "sslmode=require"), nil)
		if err != nil {
			t.Fatalf("after reinstalling: %v", err)
		}
		conn.Close(ctx)
	})

	t.Run("no secret in the log", func(t *testing.T) {
		var verifier string
		if err := h.direct().QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'").Scan(&verifier); err != nil {
			t.Fatal(err)
		}
		keys := verifier[strings.LastIndex(verifier, "$")+1:]
		log := h.logBuf.String()
		for _, secret := range []string{alicePassword, "changed-pass", authPassword, keys[:20], keys[len(keys)-20:]} {
			if strings.Contains(log, secret) {
				t.Errorf("the proxy log holds %q", secret)
			}
		}
	})
}

// runPsql runs one statement with psql (unaligned, tuples only) and
// returns its output, or an error with psql's stderr.
func runPsql(t *testing.T, bin, conninfo, password, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-X", "-A", "-t", "-d", conninfo, "-c", sql)
	cmd.Env = []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=10", "LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// saslStart connects to addr (over TLS when tlsOn) as user and reads the
// AuthenticationSASL that must come.
func saslStart(t *testing.T, addr string, tlsOn bool, user, database string) *pgproto3.Frontend {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if tlsOn {
		req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		var answer [1]byte
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != 'S' {
			t.Fatalf("SSLRequest: %q, %v", answer, err)
		}
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": user, "database": database}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("%s: want AuthenticationSASL, got %T", user, msg)
	}
	return fe
}

// serverFirst logs in to addr as user far enough to read the
// server-first-message of SCRAM-SHA-256, over TLS when tlsOn.
func serverFirst(t *testing.T, addr string, tlsOn bool, user, database string) string {
	t.Helper()
	fe := saslStart(t, addr, tlsOn, user, database)
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijklmnopqrstuvwx")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("%s: want AuthenticationSASLContinue, got %T", user, msg)
	}
	return string(cont.Data)
}

// saltOf is the s= and i= attributes of a server-first-message.
func saltOf(serverFirst string) string {
	var out []string
	for _, f := range strings.Split(serverFirst, ",") {
		if strings.HasPrefix(f, "s=") || strings.HasPrefix(f, "i=") {
			out = append(out, f)
		}
	}
	return strings.Join(out, ",")
}
