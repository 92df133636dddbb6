package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// reviewLaterSchema adds a table whose bytea column a reloaded policy
// starts to encrypt.
const reviewLaterSchema = testSchema + `
CREATE TABLE public.later (id int, secret bytea);
GRANT ALL ON public.later TO PUBLIC;
GRANT CREATE ON SCHEMA public TO PUBLIC;
`

// A statement planned after SetPolicy must be planned under the new policy,
// even when the session has an extended-protocol batch open (no Sync yet),
// which keeps the session from reloading its catalog snapshot: otherwise
// it writes plaintext into a column the new policy encrypts.
func TestReviewSetPolicyOpenBatchStillPlansUnderTheOldPolicy(t *testing.T) {
	h := newHarness(t, testPolicy, reviewLaterSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")
	// An open batch: a statement executed and flushed, no Sync.
	c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	wantTokens(t, "open batch", c.recvN(4), "ParseComplete", "BindComplete", "D:1", "C:SELECT 1")

	h.swapPolicy(strings.Replace(testPolicy,
		"    - {table: public.visits, column: note, key: clinical, type: text}",
		"    - {table: public.visits, column: note, key: clinical, type: text}\n    - {table: public.later, column: secret, key: clinical, type: text}", 1))

	c.send(&pgproto3.Parse{Query: "INSERT INTO later VALUES (1, 'REVIEW-PLAINTEXT')"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got := c.recvReady()
	wantTokens(t, "INSERT after the reload, in the open batch", got, "E:55000", "Z:I")
	var raw []byte
	err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 1").Scan(&raw)
	if err == nil && strings.Contains(string(raw), "REVIEW-PLAINTEXT") {
		t.Fatalf("after SetPolicy encrypts later.secret, the session wrote it in plaintext: %q", raw)
	}
	// After the batch, the session must work under the new policy.
	wantTokens(t, "after Sync", c.query("INSERT INTO later VALUES (2, 'REVIEW-SECRET-2')"), "C:INSERT 0 1", "Z:I")
	if err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 2").Scan(&raw); err != nil || strings.Contains(string(raw), "REVIEW-SECRET-2") {
		t.Fatalf("after Sync: %q %v", raw, err)
	}
}

// The same for a statement prepared before the reload and bound after it
// inside an open batch: the Bind must not use the old plan.
func TestReviewSetPolicyOpenBatchBindOfAnOldPreparedStatement(t *testing.T) {
	h := newHarness(t, testPolicy, reviewLaterSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")
	c.send(&pgproto3.Parse{Name: "ins", Query: "INSERT INTO later VALUES ($1, $2::text::bytea)"}, &pgproto3.Sync{})
	wantTokens(t, "prepare", c.recvReady(), "ParseComplete", "Z:I")
	c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	wantTokens(t, "open batch", c.recvN(4), "ParseComplete", "BindComplete", "D:1", "C:SELECT 1")
	h.swapPolicy(strings.Replace(testPolicy,
		"    - {table: public.visits, column: note, key: clinical, type: text}",
		"    - {table: public.visits, column: note, key: clinical, type: text}\n    - {table: public.later, column: secret, key: clinical, type: text}", 1))
	c.send(&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("3"), []byte("REVIEW-PLAIN-BIND")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got := c.recvReady()
	wantTokens(t, "Bind after the reload, in the open batch", got, "E:55000", "Z:I")
	var raw []byte
	if err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 3").Scan(&raw); err == nil && strings.Contains(string(raw), "REVIEW-PLAIN-BIND") {
		t.Fatalf("the old prepared statement wrote plaintext after the reload: %q", raw)
	}
}

func reviewEncryptLater() string {
	return strings.Replace(testPolicy,
		"    - {table: public.visits, column: note, key: clinical, type: text}",
		"    - {table: public.visits, column: note, key: clinical, type: text}\n    - {table: public.later, column: secret, key: clinical, type: text}", 1)
}

// SQL-level PREPARE under the old policy, EXECUTE after the reload.
func TestReviewSetPolicySQLPrepareExecute(t *testing.T) {
	h := newHarness(t, testPolicy, reviewLaterSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "prepare", c.query("PREPARE p(int, bytea) AS INSERT INTO later VALUES ($1, $2)"), "C:PREPARE", "Z:I")
	h.swapPolicy(reviewEncryptLater())
	got := c.query(`EXECUTE p(4, 'REVIEW-SQLPREP')`)
	wantTokens(t, "EXECUTE after the reload", got, "E:0A000", "Z:I")
	var raw []byte
	if err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 4").Scan(&raw); err == nil && strings.Contains(string(raw), "REVIEW-SQLPREP") {
		t.Fatalf("EXECUTE of a statement prepared under the old policy wrote plaintext: %q", raw)
	}
}

// A portal opened before the reload and fetched from after it: what does
// a role that lost its read grant get?
func TestReviewSetPolicyPortalAcrossRevocation(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	for _, s := range []string{"PORTAL-SSN-1", "PORTAL-SSN-2"} {
		if _, err := doctor.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('n', $1)", s); err != nil {
			t.Fatal(err)
		}
	}
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	c.send(&pgproto3.Parse{Query: "SELECT ssn FROM patients ORDER BY id"}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
	t.Logf("first fetch: %q", c.recvReady())
	h.swapPolicy(strings.Replace(testPolicy, "{role: doctor, read: [ssn, clinical, dates]", `{role: doctor, on_denied: "null", read: [clinical, dates]`, 1))
	c.send(&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
	t.Logf("fetch after the revocation: %q", c.recvReady())
}

// A client that pipelines simple queries: the catch-up wait that lets the
// session reload its catalog happens at most once per catalog TTL, so a
// policy reload soon after an earlier catch-up must still get its own, or
// the pipelined statement plans under the old policy (before the fix) or
// is refused (55000) for up to a TTL.
func TestReviewSetPolicyPipelinedSimpleQueriesAfterARecentCatchUp(t *testing.T) {
	h := newHarness(t, testPolicy, reviewLaterSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")
	other := h.connect("doctor")
	// A catch-up: DDL through the proxy in another session while this one
	// has a request in flight.
	c.send(&pgproto3.Query{String: "SELECT pg_sleep(1)"})
	time.Sleep(50 * time.Millisecond)
	if _, err := other.Exec(ctx, "CREATE VIEW review_v AS SELECT ssn FROM patients"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c.send(&pgproto3.Query{String: "SELECT 1 FROM patients LIMIT 0"})
	c.recvReady()
	c.recvReady()
	// Now the reload, with a request in flight again.
	c.send(&pgproto3.Query{String: "SELECT pg_sleep(0.3)"})
	time.Sleep(50 * time.Millisecond)
	h.swapPolicy(reviewEncryptLater())
	c.send(&pgproto3.Query{String: "INSERT INTO later VALUES (5, 'REVIEW-PIPELINED')"})
	c.recvReady()
	got := c.recvReady()
	t.Logf("pipelined INSERT after the reload: %q", got)
	var raw []byte
	if err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 5").Scan(&raw); err == nil && strings.Contains(string(raw), "REVIEW-PIPELINED") {
		t.Fatalf("pipelined INSERT wrote plaintext after the reload: %q", raw)
	}
	wantTokens(t, "pipelined INSERT after the reload", got, "C:INSERT 0 1", "Z:I")
}
