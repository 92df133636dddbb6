package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

const orderedPolicy = `policy:
  keys:
    - {name: dob, kind: ordered}
  columns:
    - {table: public.people, column: born, key: dob, type: date}
  roles:
    - {role: postgres, read: [dob], write: [dob]}
`

// dated is one row of people as the application sees it.
type dated struct {
	id   int
	born time.Time
}

// bornOrder reads people (or people_plain) sorted by born on conn.
func bornOrder(ctx context.Context, conn *pgx.Conn, table string) ([]dated, error) {
	rows, err := conn.Query(ctx, "SELECT id, born FROM "+table+" ORDER BY born")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (dated, error) {
		var d dated
		err := r.Scan(&d.id, &d.born)
		return d, err
	})
}

// TestRetireAfterReencryptLetsAnOrderedColumnSortAgain follows an ordered
// key through its lifecycle: after a rotation the proxy refuses to sort the
// column, keys retire refuses (naming the column and the rows under the old
// version) until reencrypt has run, and once the old version is retired the
// proxy sorts the column as PostgreSQL sorts its plaintext twin.
func TestRetireAfterReencryptLetsAnOrderedColumnSortAgain(t *testing.T) {
	const rows = 2000
	pg := testenv.Postgres(t)
	createPeople(t, pg, rows)
	cfg, st := localConfig(t, pg, orderedPolicy)
	ctx := context.Background()
	if err := runMigration(t, ctx, pg, cfg, st, actionEncrypt, "born", nil); err != nil {
		t.Fatal(err)
	}
	proxyAddr := startOnlineProxy(t, cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	app, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.Superuser, proxyAddr, pg.Database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close(context.Background()) })
	want, err := bornOrder(ctx, pg.Connect(t), "people_plain")
	if err != nil {
		t.Fatal(err)
	}

	if err := st.Rotate(ctx, "dob"); err != nil {
		t.Fatal(err)
	}
	awaitKeyCache(cfg)
	var pgErr *pgconn.PgError
	if _, err := bornOrder(ctx, app, "people"); !errors.As(err, &pgErr) || pgErr.Code != "55000" {
		t.Fatalf("ORDER BY born with two enabled versions: %v, want SQLSTATE 55000", err)
	}

	var out bytes.Buffer
	err = retireKey(ctx, cfg, st, "dob", &retireOptions{dsn: pg.DSN()}, &out)
	if err == nil {
		t.Fatal("keys retire before reencrypt succeeded")
	}
	for _, w := range []string{"public.people.born", fmt.Sprintf("%d value(s)", rows), "pgcloak reencrypt --table", "nothing retired"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("keys retire before reencrypt: %q, want it to say %q", err, w)
		}
	}
	if k, err := keyInfo(ctx, st, "dob"); err != nil || k.Enabled != 2 {
		t.Fatalf("after the refused retire: %+v, %v; want 2 enabled versions", k, err)
	}

	if err := runMigration(t, ctx, pg, cfg, st, actionReencrypt, "born", nil); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := retireKey(ctx, cfg, st, "dob", &retireOptions{dsn: pg.DSN()}, &out); err != nil {
		t.Fatalf("keys retire after reencrypt: %v", err)
	}
	if !strings.Contains(out.String(), "retired 1 version(s)") {
		t.Errorf("keys retire said %q, want it to name 1 retired version", out.String())
	}
	if k, err := keyInfo(ctx, st, "dob"); err != nil || k.Versions != 2 || k.Enabled != 1 {
		t.Fatalf("after retire: %+v, %v; want 2 versions, 1 enabled", k, err)
	}
	checkColumn(t, pg, cfg, st, "born", true)

	awaitKeyCache(cfg)
	got, err := bornOrder(ctx, app, "people")
	if err != nil {
		t.Fatalf("ORDER BY born after retire: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ORDER BY born through the proxy differs from people_plain's (%d rows, want %d)", len(got), len(want))
	}

	// And out of the ordered key again: decrypt gives the column back
	// its type and values.
	if err := runMigration(t, ctx, pg, cfg, st, actionDecrypt, "born", nil); err != nil {
		t.Fatalf("decrypt of the ordered column: %v", err)
	}
	checkColumn(t, pg, cfg, st, "born", false)
}

// TestRetireRefusesAColumnMidMigration: while encrypt is unfinished the
// column holds text forms, which no key version decrypts.
func TestRetireRefusesAColumnMidMigration(t *testing.T) {
	pg := testenv.Postgres(t)
	createPeople(t, pg, 3000)
	cfg, st := localConfig(t, pg, orderedPolicy)
	ctx := context.Background()
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	err := runMigration(t, cut, pg, cfg, st, actionEncrypt, "born", func(int) { cancel() })
	if err == nil {
		t.Fatal("interrupted encrypt finished")
	}
	err = retireKey(ctx, cfg, st, "dob", &retireOptions{dsn: pg.DSN()}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "public.people.born has an unfinished pgcloak encrypt") {
		t.Fatalf("keys retire mid-encrypt: %v, want it refused naming the column and the migration", err)
	}
}

// awaitKeyCache waits until proxies' key caches have expired.
func awaitKeyCache(cfg *policy.Config) {
	time.Sleep(cacheTTL(cfg) + 500*time.Millisecond)
}
