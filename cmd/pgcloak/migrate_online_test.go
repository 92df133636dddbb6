package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

const onlineConfig = `upstream:
  address: %s
keystore:
  provider: vault
  vault:
    address: %s
    ca_file: %s
    auth: token
    token_env: PGCLOAK_TEST_VAULT_TOKEN
    kv_mount: %s
    transit_mount: %s
    kek: %s
  cache_ttl: 300ms
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: dates, kind: randomized}
  columns:
    - {table: public.people, column: ssn, key: ssn, type: text}
    - {table: public.people, column: born, key: dates, type: date}
  roles:
    - {role: %s, read: [ssn, dates], write: [ssn, dates]}
`

// TestMigrationsOnlineWithVault runs encrypt, reencrypt (after a rotation)
// and decrypt on a 100,000-row table whose keys are in a real Vault, each
// interrupted in the middle and resumed, while an application writes and
// searches through the proxy. Every row ends correct, the application never
// sees a wrong answer, and no log line holds a plaintext.
func TestMigrationsOnlineWithVault(t *testing.T) {
	v := testenv.Vault(t)
	pg := testenv.Postgres(t)
	createPeople(t, pg, 100_000)
	t.Setenv("PGCLOAK_TEST_VAULT_TOKEN", v.Token)
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	body := fmt.Sprintf(onlineConfig, pg.Address(), v.Addr, v.CACertFile, v.KVMount, v.TransitMount, v.KEK, pg.Superuser)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := keymap.CreateMissing(ctx, st, cfg.Policy.Keys); err != nil {
		t.Fatal(err)
	}
	proxyAddr := startOnlineProxy(t, cfg, st, log)
	app := startApp(t, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.Superuser, proxyAddr, pg.Database))

	migrate := func(action colmigrate.Action, column string, interruptAt int) {
		t.Helper()
		o := &migrateOptions{table: "public.people", column: column, dsn: pg.DSN(), batch: 1000, settle: 2 * time.Second, progress: "log"}
		run := func(ctx context.Context, afterBatch func(int)) error {
			o.afterBatch = afterBatch
			m, err := newMigration(ctx, cfg, st, action, o, log, io.Discard)
			if err != nil {
				return err
			}
			defer m.Close()
			return runMigrate(ctx, m, action, o, io.Discard)
		}
		before := app.snapshot()
		if interruptAt > 0 {
			cut, cancel := context.WithCancel(ctx)
			batches := 0
			err := run(cut, func(int) {
				if batches++; batches == interruptAt {
					cancel()
				}
			})
			cancel()
			if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") {
				t.Fatalf("%s %s interrupted: %v", action, column, err)
			}
		}
		if err := run(ctx, nil); err != nil {
			t.Fatalf("%s %s: %v", action, column, err)
		}
		during := app.snapshot().since(before)
		// (Searches are by ssn, which is not searchable once decrypted.)
		if during.writes == 0 || (during.searches == 0 && column == "ssn") {
			t.Fatalf("%s %s: the application wrote %d times and searched %d times meanwhile", action, column, during.writes, during.searches)
		}
		t.Logf("%s %s: %d writes, %d searches, %d refused meanwhile", action, column, during.writes, during.searches, during.refused)
	}

	migrate(actionEncrypt, "ssn", 20)
	migrate(actionEncrypt, "born", 0)
	app.check()
	checkColumn(t, pg, cfg, st, "ssn", true)
	checkColumn(t, pg, cfg, st, "born", true)
	checkThroughProxy(t, app.dsn)

	// After a rotation the application's searches must find rows under
	// both versions while reencrypt runs.
	if err := st.Rotate(ctx, "ssn"); err != nil {
		t.Fatal(err)
	}
	migrate(actionReencrypt, "ssn", 30)
	app.check()
	if n := rowsNotUnderPrimary(t, pg, st, "ssn"); n != 0 {
		t.Fatalf("%d rows still under an older version after reencrypt", n)
	}
	checkColumn(t, pg, cfg, st, "ssn", true)
	checkThroughProxy(t, app.dsn)

	migrate(actionDecrypt, "ssn", 40)
	migrate(actionDecrypt, "born", 0)
	app.stop()
	app.check()
	checkColumn(t, pg, cfg, st, "ssn", false)
	checkColumn(t, pg, cfg, st, "born", false)

	for _, secret := range append(app.written(), "000012345", "000099999") {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a log line holds the plaintext %q", secret)
		}
	}
}

// TestReencryptSearchAcrossVersions: a proxy that cached the key before a
// rotation finds, in the middle of the reencrypt that follows, rows under
// the old and the new version by equality, with literals and parameters:
// reencrypt waits for proxies' key caches to expire before it moves rows.
func TestReencryptSearchAcrossVersions(t *testing.T) {
	pg, cfg, st := migrationFixture(t, 5000)
	cfg.Policy.Roles = []policy.Role{{Role: pg.Superuser, Read: []string{"ssn", "dates"}, Write: []string{"ssn", "dates"}}}
	ctx := context.Background()
	if err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "ssn", nil); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable",
		pg.Superuser, startOnlineProxy(t, cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil))), pg.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	search := func() {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			var ids []int32
			query := func() (err error) {
				rows, err := conn.Query(ctx, "SELECT id FROM people WHERE ssn = '000000010' OR ssn IN ($1, '000004500') ORDER BY id",
					mode, "000004000")
				if err == nil {
					ids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
				}
				return err
			}
			err := query()
			if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && strings.Contains(pe.Message, "prepare it again") {
				// The statement pgx prepared before the rotation holds
				// constants under the old version only: refused once,
				// then prepared again.
				err = query()
			}
			if err != nil || fmt.Sprint(ids) != "[10 4000 4500]" {
				t.Fatalf("%v: search found %v, %v; want [10 4000 4500]", mode, ids, err)
			}
		}
	}
	search() // the proxy now holds the keyset with one version

	if err := st.Rotate(ctx, "ssn"); err != nil {
		t.Fatal(err)
	}
	infos, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rotated time.Time
	for _, k := range infos {
		if k.Name == "ssn" {
			rotated = k.Rotated
		}
	}
	if time.Since(rotated) > time.Minute {
		t.Fatalf("keys list says ssn was rotated at %v", rotated)
	}
	cut, cancel := context.WithCancel(ctx)
	batches := 0
	var first time.Time
	err = runMigration(t, cut, pg, cfg, st, actionReencrypt, "ssn", func(int) {
		if batches++; batches == 1 {
			first = time.Now()
		}
		if batches == 2 {
			cancel()
		}
	})
	cancel()
	if err == nil {
		t.Fatal("reencrypt was not interrupted")
	}
	if ttl := cacheTTL(cfg); first.Before(rotated.Add(ttl)) {
		t.Fatalf("reencrypt changed rows %v after the rotation; proxies keep keys for %v", first.Sub(rotated), ttl)
	}
	// Rows 1..2000 (two batches) are under the new version, the rest
	// under the old one.
	if n := rowsNotUnderPrimary(t, pg, st, "ssn"); n < 2000 || n > 3000 {
		t.Fatalf("%d rows under the old version; want about 3000", n)
	}
	search()
}

// startOnlineProxy serves the policy on a free port with a short catalog
// and key cache, as a proxy a migration must keep correct.
func startOnlineProxy(t *testing.T, cfg *policy.Config, st *store, log *slog.Logger) string {
	t.Helper()
	srv, err := proxy.NewServer(proxy.Config{
		Server:     cfg.Server,
		Upstream:   cfg.Upstream,
		Policy:     policy.NewIndex(cfg.Policy),
		Keyring:    keymap.NewKeyring(st, cacheTTL(cfg)),
		Logger:     log,
		CatalogTTL: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// rowsNotUnderPrimary counts the ciphertexts of column not under its key's
// primary version (the Tink key id after pgcloak's five-byte header and
// Tink's version byte).
func rowsNotUnderPrimary(t *testing.T, pg *testenv.PG, st *store, column string) int {
	t.Helper()
	infos, err := st.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var primary uint32
	for _, k := range infos {
		if k.Name == column {
			primary = k.PrimaryID
		}
	}
	var n int
	if err := pg.Connect(t).QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM people WHERE %[1]s IS NOT NULL AND substring(%[1]s from 7 for 4) <> $1`, column),
		[]byte{byte(primary >> 24), byte(primary >> 16), byte(primary >> 8), byte(primary)}).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkThroughProxy reads people and people_plain through the proxy in
// one snapshot and compares them row by row.
func checkThroughProxy(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	read := func(table string) []string {
		rows, err := tx.Query(ctx, "SELECT id, ssn, born FROM "+table+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var id int32
			var ssn *string
			var born *time.Time
			err := r.Scan(&id, &ssn, &born)
			return fmt.Sprintf("%d %v %v", id, deref(ssn), deref(born)), err
		})
		if err != nil {
			t.Fatalf("reading %s through the proxy: %v", table, err)
		}
		return out
	}
	got, want := read("people"), read("people_plain")
	if len(got) != len(want) {
		t.Fatalf("people has %d rows, people_plain %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("through the proxy: %s, want %s", got[i], want[i])
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// onlineApp is an application working through the proxy during the
// migrations: one connection writes (each change to people and the same to
// people_plain in one transaction), another searches rows the writer never
// touches and checks the answers.
type onlineApp struct {
	t      *testing.T
	dsn    string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	writes, searches, refused atomic.Int64

	mu       sync.Mutex
	failures []string
	values   []string // plaintexts the writer stored
}

type appCounts struct{ writes, searches, refused int64 }

func (c appCounts) since(b appCounts) appCounts {
	return appCounts{c.writes - b.writes, c.searches - b.searches, c.refused - b.refused}
}

func startApp(t *testing.T, dsn string) *onlineApp {
	ctx, cancel := context.WithCancel(context.Background())
	a := &onlineApp{t: t, dsn: dsn, cancel: cancel}
	for _, loop := range []func(context.Context, *pgx.Conn){a.writeLoop, a.searchLoop} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer conn.Close(context.Background())
			loop(ctx, conn)
		}()
	}
	t.Cleanup(a.stop)
	return a
}

func (a *onlineApp) stop() { a.cancel(); a.wg.Wait() }

func (a *onlineApp) snapshot() appCounts {
	return appCounts{a.writes.Load(), a.searches.Load(), a.refused.Load()}
}

func (a *onlineApp) fail(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failures) < 10 {
		a.failures = append(a.failures, fmt.Sprintf(format, args...))
	}
}

// check fails the test with what the application saw go wrong.
func (a *onlineApp) check() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failures) > 0 {
		a.t.Fatalf("the application saw:\n%s", strings.Join(a.failures, "\n"))
	}
}

func (a *onlineApp) written() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.values...)
}

// refusal reports an error the proxy gives while a column is not
// writable or searchable through it (before encrypt, at the end of
// decrypt).
func refusal(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "0A000" && strings.Contains(pe.Message, "pgcloak")
}

// replanned reports the error PostgreSQL gives once for a prepared
// statement whose column changed type under it (encrypt's and decrypt's
// ALTER), as for any ALTER COLUMN TYPE; pgx then prepares it again.
func replanned(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "0A000" && pe.Message == "cached plan must not change result type"
}

// writeLoop changes even ids of the first 50,000 rows and inserts new
// rows, alternating the simple and the extended protocol.
func (a *onlineApp) writeLoop(ctx context.Context, conn *pgx.Conn) {
	rng := rand.New(rand.NewPCG(1, 2))
	nextID := 200_000
	for i := 0; ctx.Err() == nil; i++ {
		mode := pgx.QueryExecModeCacheStatement
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		var stmts []string
		var args []any
		value := fmt.Sprintf("W-%d-%d", i, rng.IntN(1_000_000))
		born := time.Date(1960+rng.IntN(50), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
		switch i % 3 {
		case 0:
			stmts = []string{"UPDATE people SET ssn = $1 WHERE id = $2", "UPDATE people_plain SET ssn = $1 WHERE id = $2"}
			args = []any{value, 2 * (1 + rng.IntN(25_000))}
		case 1:
			stmts = []string{"UPDATE people SET born = $1 WHERE id = $2", "UPDATE people_plain SET born = $1 WHERE id = $2"}
			args = []any{born, 2 * (1 + rng.IntN(25_000))}
		default:
			nextID++
			stmts = []string{"INSERT INTO people (id, name, ssn) VALUES ($1, 'new', $2)", "INSERT INTO people_plain (id, name, ssn) VALUES ($1, 'new', $2)"}
			args = []any{nextID, value}
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s, append([]any{mode}, args...)...); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
			a.writes.Add(1)
			a.mu.Lock()
			a.values = append(a.values, value)
			a.mu.Unlock()
		case refusal(err), replanned(err):
			a.refused.Add(1)
		case ctx.Err() != nil:
			return
		default:
			a.fail("write %q %v: %v", stmts[0], args, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// searchLoop looks up odd ids of the first 100,000 rows, which keep their
// original values, by ssn (equality and IN) and by id.
func (a *onlineApp) searchLoop(ctx context.Context, conn *pgx.Conn) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; ctx.Err() == nil; i++ {
		id := 2*rng.IntN(50_000) + 1
		if id%97 == 0 {
			continue
		}
		ssn := fmt.Sprintf("%09d", id)
		mode := pgx.QueryExecModeCacheStatement
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		var got int32
		var gotSSN string
		err := conn.QueryRow(ctx, "SELECT id FROM people WHERE ssn = $1 OR ssn IN ('no such', $2)", mode, ssn, "nor this").Scan(&got)
		switch {
		case err == nil && got == int32(id):
			a.searches.Add(1)
		case err == nil:
			a.fail("search for %d found %d", id, got)
		case refusal(err), replanned(err):
			a.refused.Add(1)
		case ctx.Err() != nil:
			return
		default:
			a.fail("search for %d: %v", id, err)
		}
		err = conn.QueryRow(ctx, "SELECT ssn FROM people WHERE id = $1", mode, id).Scan(&gotSSN)
		switch {
		case err == nil && gotSSN != ssn:
			a.fail("read of %d: %q", id, gotSSN)
		case err == nil:
		case replanned(err):
			a.refused.Add(1)
		case ctx.Err() == nil:
			a.fail("read of %d: %v", id, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
