package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables that steer where the tests' PostgreSQL comes from.
const (
	EnvDSN     = "PGCLOAK_TEST_DSN"     // superuser DSN of an existing server
	EnvRequire = "PGCLOAK_TEST_REQUIRE" // "1": no PostgreSQL fails the test instead of skipping it
	EnvSource  = "PGCLOAK_TEST_SOURCE"  // env | docker | local: use only that source
)

// Values of PG.Source.
const (
	SourceEnv    = "env"
	SourceDocker = "docker"
	SourceLocal  = "local"
)

const (
	adminTimeout   = 30 * time.Second
	connectTimeout = 15 * time.Second
	// logPollTimeout bounds the wait for a statement to reach the log: backends write it
	// themselves, so it shows up after the statement ran, not necessarily before the
	// client saw the result.
	logPollTimeout = 5 * time.Second
)

// PG is one fresh database on the test binary's server, and how to reach it as superuser.
type PG struct {
	Host      string
	Port      int
	Database  string // the fresh database
	Superuser string // usable with trust or with Password
	Password  string // "" when trust
	// StatementLogPath is the server log with log_statement=all: local servers only.
	StatementLogPath string
	TLS              bool   // the server has ssl=on
	CACertFile       string // verifies the server certificate (local servers only)
	Source           string // SourceEnv, SourceDocker or SourceLocal
}

// Run is for TestMain: func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }. It runs
// the tests and stops the servers (PostgreSQL, Vault), if started, also on SIGINT and
// SIGTERM. A failure to stop one fails the run.
func Run(m *testing.M) (code int) {
	shared.enterRun()
	vaultShared.enterRun()
	release := stopOnSignal()
	defer release()
	defer func() {
		if !shutdownAll() && code == 0 {
			code = 1
		}
	}()
	return m.Run()
}

// shutdownAll stops every server of the test binary, reporting failures on stderr; it
// returns false if any failed.
func shutdownAll() bool {
	ok := true
	if err := vaultShared.shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping Vault: %v\n", err)
		ok = false
	}
	if err := shared.shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping PostgreSQL: %v\n", err)
		ok = false
	}
	return ok
}

// stopOnSignal stops the servers before the process dies of SIGINT or SIGTERM, which no
// deferred call would see, then dies of the same signal.
func stopOnSignal() (release func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			shutdownAll()
			signal.Stop(sigs)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(sig)
			}
			time.Sleep(time.Second)
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// Postgres returns a fresh, empty database on the test binary's server, dropped at
// t.Cleanup. The first call starts the server (see the package doc); it skips the test, or
// fails it under PGCLOAK_TEST_REQUIRE=1, when no source can provide one.
func Postgres(t testing.TB) *PG {
	t.Helper()
	srv := serverFor(t)
	if srv == nil {
		return nil
	}
	pg, err := srv.newDatabase(t.Name())
	if err != nil {
		t.Fatalf("testenv: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := srv.dropDatabase(pg.Database); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return pg
}

func serverFor(t testing.TB) *server {
	t.Helper()
	srv, reasons, err := shared.server()
	if err != nil {
		t.Fatalf("testenv: %v", err)
		return nil
	}
	if srv == nil {
		unavailable(t, "no PostgreSQL: %s", strings.Join(reasons, "; "))
	}
	return srv
}

// Unavailable skips t for want of something the test environment should
// provide (a TLS-enabled server, say), or fails it when the run requires
// the environment (PGCLOAK_TEST_REQUIRE=1).
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	unavailable(t, format, args...)
}

// unavailable skips t, or fails it when the run requires PostgreSQL.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("testenv: %s (%s is set)", msg, EnvRequire)
		return
	}
	t.Skipf("testenv: %s (set %s=1 to fail instead of skipping)", msg, EnvRequire)
}

func required() bool {
	on, _ := strconv.ParseBool(os.Getenv(EnvRequire))
	return on
}

// DSN is a superuser connection string to the fresh database, with sslmode=disable.
func (p *PG) DSN() string { return p.dsnFor(p.Database) }

func (p *PG) dsnFor(database string) string {
	u := &url.URL{Scheme: "postgres", Path: "/" + database}
	u.User = url.User(p.Superuser)
	if p.Password != "" {
		u.User = url.UserPassword(p.Superuser, p.Password)
	}
	q := url.Values{"sslmode": {"disable"}}
	if strings.HasPrefix(p.Host, "/") {
		// A unix socket directory (possible with PGCLOAK_TEST_DSN) cannot be a URL host.
		q.Set("host", p.Host)
		q.Set("port", strconv.Itoa(p.Port))
	} else {
		u.Host = p.Address()
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Address is host:port of the server.
func (p *PG) Address() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Connect opens a superuser connection to the fresh database, closed at t.Cleanup.
func (p *PG) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", p.Database, err)
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// ExecAdmin runs sql (one or more statements, simple protocol) as superuser in the fresh
// database on a connection of its own, failing t on error.
func (p *PG) ExecAdmin(t testing.TB, sql string) {
	t.Helper()
	if err := p.execAdmin(sql); err != nil {
		t.Fatalf("testenv: %s: %v", sql, err)
	}
}

func (p *PG) execAdmin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// StatementLog returns the server's statement log, which holds every statement of every
// database on the server. Without one (sources other than local) it skips t, or fails it
// under PGCLOAK_TEST_REQUIRE=1.
func (p *PG) StatementLog(t testing.TB) string {
	t.Helper()
	if p.StatementLogPath == "" {
		unavailable(t, "source %q keeps no statement log", p.Source)
		return ""
	}
	data, err := os.ReadFile(p.StatementLogPath)
	if err != nil {
		t.Fatalf("testenv: statement log: %v", err)
	}
	return string(data)
}

// AwaitStatement polls the statement log until it contains substr and returns the log,
// failing t after a few seconds. Run a statement with a unique marker and await it before
// asserting that something is absent from the log, so the absence means something.
func (p *PG) AwaitStatement(t testing.TB, substr string) string {
	t.Helper()
	deadline := time.Now().Add(logPollTimeout)
	for {
		log := p.StatementLog(t)
		if strings.Contains(log, substr) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %q not in the statement log after %s", substr, logPollTimeout)
			return log
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// binaryState is the one server of this test binary: started by the first Postgres call,
// stopped when Run returns.
type binaryState struct {
	mu      sync.Mutex
	inRun   bool
	tried   bool
	srv     *server
	reasons []string // why no server, when srv is nil
}

var shared binaryState

var errNoRun = errors.New("Postgres needs TestMain to call testenv.Run, which stops the server: " +
	"func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }")

func (b *binaryState) enterRun() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inRun = true
}

func (b *binaryState) server() (*server, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Without Run nobody would stop a local server or a container.
	if !b.inRun {
		return nil, nil, errNoRun
	}
	if !b.tried {
		b.tried = true
		b.srv, b.reasons = acquire(context.Background(), sourceConfigFromEnv())
	}
	return b.srv, b.reasons, nil
}

func (b *binaryState) shutdown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	srv := b.srv
	b.srv, b.tried, b.reasons = nil, true, []string{"the server was stopped"}
	if srv == nil {
		return nil
	}
	return srv.close()
}

// server is a running PostgreSQL, whichever source provided it.
type server struct {
	base  PG // Database empty
	admin *adminConn
	stop  func() error // nil when we did not start it
}

func newServer(ctx context.Context, base PG, adminCfg *pgx.ConnConfig, stop func() error) (*server, error) {
	s := &server{base: base, admin: &adminConn{cfg: adminCfg}, stop: stop}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	err := s.admin.do(ctx, func(conn *pgx.Conn) error {
		var super bool
		var ssl string
		err := conn.QueryRow(ctx, "SELECT rolsuper, current_setting('ssl') FROM pg_roles WHERE rolname = current_user").
			Scan(&super, &ssl)
		if err != nil {
			return err
		}
		if !super {
			return fmt.Errorf("role %s is not a superuser", base.Superuser)
		}
		s.base.TLS = ssl == "on"
		return nil
	})
	if err != nil {
		s.admin.close()
		return nil, err
	}
	return s, nil
}

// newDatabase creates an empty database from template0, which nobody can connect to, so
// CREATE DATABASE never fails on a busy template.
func (s *server) newDatabase(testName string) (*PG, error) {
	name := uniqueDBName(testName)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE template0"
	if err := s.admin.exec(ctx, sql); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	pg := s.base
	pg.Database = name
	return &pg, nil
}

// dropDatabase drops name WITH (FORCE), which ends sessions a test left open (a proxy's
// upstream connections, say) instead of failing on them.
func (s *server) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	sql := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
	if err := s.admin.exec(ctx, sql); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func (s *server) close() error {
	s.admin.close()
	if s.stop == nil {
		return nil
	}
	return s.stop()
}

// adminConn is one superuser connection to the server's maintenance database, shared by
// parallel tests for CREATE/DROP DATABASE and reopened if it breaks.
type adminConn struct {
	mu   sync.Mutex
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

func (a *adminConn) exec(ctx context.Context, sql string) error {
	return a.do(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql)
		return err
	})
}

func (a *adminConn) do(ctx context.Context, f func(*pgx.Conn) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil || a.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, a.cfg)
		if err != nil {
			return err
		}
		a.conn = conn
	}
	return f(a.conn)
}

func (a *adminConn) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.conn.Close(ctx)
	a.conn = nil
}

// uniqueDBName derives a database name from the test's name, for whoever reads the server
// log, plus 64 random bits, so test binaries sharing one server (PGCLOAK_TEST_DSN) never
// collide. It stays within PostgreSQL's 63-byte identifier limit.
func uniqueDBName(testName string) string {
	const maxReadable = 63 - len("t__") - 16
	var readable strings.Builder
	for _, r := range strings.ToLower(testName) {
		if readable.Len() == maxReadable {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			readable.WriteRune(r)
		} else {
			readable.WriteByte('_')
		}
	}
	var random [8]byte
	_, _ = rand.Read(random[:])
	return "t_" + readable.String() + "_" + hex.EncodeToString(random[:])
}
