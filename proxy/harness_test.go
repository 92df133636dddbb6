package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
