package proxy_test

// Catalog reload tests: after DDL and on its TTL the proxy reloads its
// catalog snapshot without disturbing the client's session, and copes when
// the reload fails.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/proxy"
)

// holdCatalogLock makes the proxy's catalog query time out (the session
// sets lock_timeout) until release is called.
func holdCatalogLock(t *testing.T, h *harness) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.direct().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE pg_catalog.pg_rewrite IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			tx.Rollback(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

// 1.4: a failed catalog reload marked the client's session state failed
// (a SET ROLE was then forgotten by the proxy only), and inside a
// transaction silently aborted it; after DDL the proxy went on with the
// old catalog.
func TestFailedCatalogReloadKeepsSessionState(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"A", "111", "secret-diagnosis"})
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")
	c.query("CREATE TEMP TABLE regress_tmp (a int)") // DDL: the catalog is stale
	release := holdCatalogLock(t, h)
	wantTokens(t, "set role", c.query("SET ROLE billing"), "C:SET", "Z:I")
	release()
	wantTokens(t, "current_user", c.query("SELECT current_user"), "Row:current_user/19", "D:billing", "C:SELECT 1", "Z:I")
	wantTokens(t, "as billing", c.query("SELECT diagnosis FROM patients"), "Row:diagnosis/25", "D:NULL", "C:SELECT 1", "Z:I")
}

func TestFailedCatalogReloadInTransactionRefusesRelations(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")

	// The reload fails; the client's transaction goes on, but nothing
	// that uses a relation runs on a catalog DDL may have changed.
	wantTokens(t, "ddl", c.query("BEGIN; CREATE TEMP TABLE regress_a (a int)"), "C:BEGIN", "C:CREATE TABLE", "Z:T")
	release := holdCatalogLock(t, h)
	wantTokens(t, "no relation", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	wantTokens(t, "relation", c.query("SELECT name FROM other.patients"), "E:58000", "Z:E")
	if !strings.Contains(c.lastErr.Message, "catalog could not be reloaded after DDL") {
		t.Fatalf("error %q", c.lastErr.Message)
	}
	release()
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")

	// Once the reload succeeds the transaction goes on unharmed.
	wantTokens(t, "ddl again", c.query("BEGIN; CREATE TEMP TABLE regress_b (a int)"), "C:BEGIN", "C:CREATE TABLE", "Z:T")
	release = holdCatalogLock(t, h)
	wantTokens(t, "no relation again", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	release()
	wantTokens(t, "insert", c.query("INSERT INTO regress_b VALUES (1)"), "C:INSERT 0 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	wantTokens(t, "committed", c.query("SELECT a FROM regress_b"), "Row:a/23", "D:1", "C:SELECT 1", "Z:I")
}

// 3.6: DDL after BEGIN in the same string was not taken for DDL inside a
// transaction: the snapshot reloaded inside it outlived a rollback.
func TestDDLAfterBeginInStringRolledBack(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema+"\nALTER TABLE public.patients OWNER TO doctor; GRANT CREATE ON SCHEMA public TO doctor;")
	insertPatients(t, h.connect("doctor"), [3]string{"R", "rename-ssn-1", "d"})
	c := protoConnect(t, h, "doctor")
	// (Renaming a policy table is refused; dropping it is DDL the proxy
	// lets through and must see rolled back.)
	wantTokens(t, "ddl", c.query("BEGIN; DROP TABLE public.patients"), "C:BEGIN", "C:DROP TABLE", "Z:T")
	wantTokens(t, "reload in tx", c.query("SELECT 1"), "Row:?column?/23", "D:1", "C:SELECT 1", "Z:T")
	wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	wantTokens(t, "after", c.query("SELECT ssn FROM patients"), "Row:ssn/25", "D:rename-ssn-1", "C:SELECT 1", "Z:I")
}

// A message that ends a COPY FROM STDIN by violating the protocol must
// reach the server even when the session's catalog is overdue for a
// reload: waiting for the COPY to finish first would wait forever.
func TestCatalogCatchUpSkipsCopy(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { c.CatalogTTL = 20 * time.Millisecond })
	for _, next := range []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Parse{Query: "SELECT 1"}} {
		c := protoConnect(t, h, "doctor")
		c.send(&pgproto3.Query{String: "COPY other.patients (name) FROM STDIN"})
		if tok, err := recvWithin(c, 5*time.Second); err != nil || tok != "CopyIn" {
			t.Fatalf("COPY: %q, %v", tok, err)
		}
		time.Sleep(100 * time.Millisecond) // the snapshot is overdue
		c.send(next)
		tok, err := recvWithin(c, 5*time.Second)
		if err != nil || !strings.HasPrefix(tok, "E:") {
			t.Fatalf("%T during COPY: %q, %v (the proxy hangs)", next, tok, err)
		}
		c.conn.Close()
	}
	stillServes(t, h)
}

// The catalog catch-up happens at most once per TTL: when the reload keeps
// failing (here, on a lock held elsewhere), pipelined requests do not each
// wait for the ones before them and try again.
func TestCatalogCatchUpOncePerTTL(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) { c.CatalogTTL = 50 * time.Millisecond })
	c := protoConnect(t, h, "doctor")
	c.query("SET lock_timeout = '200ms'")
	release := holdCatalogLock(t, h)
	defer release()
	time.Sleep(150 * time.Millisecond) // the snapshot is overdue
	before := strings.Count(h.logBuf.String(), "catalog reload failed")
	msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT pg_catalog.pg_sleep(0.05)"}}
	for range 10 {
		msgs = append(msgs, &pgproto3.Query{String: "SELECT 1"})
	}
	c.send(msgs...)
	for range 11 {
		recvReadyWithin(t, c, 10*time.Second)
	}
	if n := strings.Count(h.logBuf.String(), "catalog reload failed") - before; n > 3 {
		t.Errorf("%d reloads tried for 11 pipelined queries", n)
	}
}
