package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// The encrypted tables: bench_enc (three encrypted columns, two of them
// deterministic, and at, a timestamptz under an ordered key) and bench_copy_enc (two encrypted columns, for COPY). Their
// plaintext twins bench_plain and bench_copy_plain have the same columns as
// text and are in no policy.
const benchPolicy = `
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: email, kind: deterministic}
    - {name: notes, kind: randomized}
    - {name: when, kind: ordered}
  columns:
    - {table: public.bench_enc, column: at, key: when, type: timestamptz}
    - {table: public.bench_enc, column: ssn, key: ssn, type: text}
    - {table: public.bench_enc, column: email, key: email, type: text}
    - {table: public.bench_enc, column: note, key: notes, type: text}
    - {table: public.bench_copy_enc, column: ssn, key: ssn, type: text}
    - {table: public.bench_copy_enc, column: note, key: notes, type: text}
    - {table: public.bench_mem_enc, column: note, key: notes, type: text}
  roles:
    - {role: postgres, read: [ssn, email, notes, when], write: [ssn, email, notes, when]}
`

// The COPY tables and bench_mem_enc (the memory workloads') have no index: a bulk load measures the row path, not
// index maintenance.
const benchSchema = `
CREATE TABLE bench_enc   (id int PRIMARY KEY, ssn bytea, email bytea, note bytea, at bytea);
CREATE INDEX ON bench_enc (ssn);
CREATE INDEX ON bench_enc (at);
CREATE TABLE bench_plain (id int PRIMARY KEY, ssn text,  email text,  note text, at timestamptz);
CREATE INDEX ON bench_plain (ssn);
CREATE INDEX ON bench_plain (at);
CREATE TABLE bench_copy_enc   (id int, ssn bytea, note bytea);
CREATE TABLE bench_copy_plain (id int, ssn text,  note text);
CREATE TABLE bench_mem_enc (id int, note bytea);
`

// The values of row id; pgbench scripts build ssnFor's value as
// '900-00-:id', so keep the two in step.
func ssnFor(id int64) string   { return "900-00-" + strconv.FormatInt(id, 10) }
func emailFor(id int64) string { return "patient" + strconv.FormatInt(id, 10) + "@example.org" }
func noteFor(id int64) string  { return "note for patient " + strconv.FormatInt(id, 10) }

// atFor is row id's timestamp: a minute apart, in id order.
func atFor(id int64) time.Time { return atBase.Add(time.Duration(id) * time.Minute) }

var atBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func findPgbench() (string, error) {
	if bin, err := testenv.FindBinDir(context.Background()); err == nil {
		if p := filepath.Join(bin, "pgbench"); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", errors.New("pgbench not found (install postgresql-contrib or the PostgreSQL server package)")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startProxy runs pgcloak in this process with a local keystore.
func startProxy(pg *testenv.LocalServer) (string, func(), error) {
	cfg, err := policy.Load([]byte(benchPolicy))
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "pgcloak-bench-")
	if err != nil {
		return "", nil, err
	}
	store, _, err := keymap.NewLocalStoreInDir(dir)
	if err != nil {
		return "", nil, err
	}
	if _, err := keymap.CreateMissing(context.Background(), store, cfg.Policy.Keys); err != nil {
		return "", nil, err
	}
	srv, err := proxy.NewServer(proxy.Config{
		Server:   policy.Server{Listen: "127.0.0.1:0", MaxMessageBytes: 64 << 20, TLS: policy.ServerTLS{Mode: "disable"}},
		Upstream: policy.Upstream{Address: net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)), TLS: policy.UpstreamTLS{Mode: "disable"}},
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keymap.NewKeyring(store, 5*time.Minute),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close(); os.RemoveAll(dir) }, nil
}

// createTables creates the encrypted-workload tables and preloads rows rows
// into bench_plain (directly) and bench_enc (through pgcloak, so they are
// encrypted).
func createTables(ctx context.Context, e *env) error {
	setup, err := pgx.Connect(ctx, e.dsn(e.direct))
	if err != nil {
		return err
	}
	defer setup.Close(context.Background())
	if _, err := setup.Exec(ctx, benchSchema); err != nil {
		return err
	}
	fmt.Printf("loading %d rows into bench_plain and bench_enc…\n", e.o.rows)
	if err := preload(ctx, e.dsn(e.direct), "bench_plain", e.o.rows); err != nil {
		return err
	}
	return preload(ctx, e.dsn(e.proxy), "bench_enc", e.o.rows)
}

func preload(ctx context.Context, dsn, table string, rows int) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	src := make([][]any, rows)
	for i := range src {
		id := int64(i + 1)
		src[i] = []any{int32(id), ssnFor(id), emailFor(id), noteFor(id), atFor(id)}
	}
	_, err = c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "ssn", "email", "note", "at"}, pgx.CopyFromRows(src))
	return err
}

// startPgBouncer runs PgBouncer, when installed, in session pooling mode
// (one server connection per client, as pgcloak) as a reference point for
// the cost of a proxy hop. It returns its address and pid.
func startPgBouncer(ctx context.Context, pg *testenv.LocalServer, maxClients int) (string, int, func(), error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", 0, nil, errors.New("pgbouncer is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := filepath.Join(pg.Dir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", 0, nil, err
	}
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(pgbouncerIni(pg, port, dir, maxClients)), 0o644); err != nil {
		return "", 0, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return "", 0, nil, err
	}
	args := []string{iniPath}
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root; -u makes it setuid in the
		// same process, so the pid stays the one to measure.
		args = append([]string{"-u", "postgres"}, args...)
		os.Chmod(dir, 0o777)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; i < 50; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return addr, cmd.Process.Pid, stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", 0, nil, errors.New("pgbouncer did not start listening")
}

func pgbouncerIni(pg *testenv.LocalServer, port int, dir string, maxClients int) string {
	return fmt.Sprintf(`[databases]
bench = host=%s port=%d dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = session
max_client_conn = %d
default_pool_size = %d
logfile = %s/pgbouncer.log
`, pg.Host, pg.Port, port, dir, maxClients+100, maxClients+10, dir)
}
