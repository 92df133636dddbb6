package proxy_test

// Notice and notification tests: NoticeResponse and NotificationResponse
// reach the client through the proxy.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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
