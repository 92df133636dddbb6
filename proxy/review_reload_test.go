package proxy_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// reviewLaterSchema adds a table whose bytea column a reloaded policy
// starts to encrypt.
const reviewLaterSchema = testSchema + `
CREATE TABLE public.later (id int, secret bytea);
GRANT ALL ON public.later TO PUBLIC;
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
	t.Logf("Bind after the reload, in the open batch: %q", got)
	var raw []byte
	if err := h.direct().QueryRow(ctx, "SELECT secret FROM later WHERE id = 3").Scan(&raw); err == nil && strings.Contains(string(raw), "REVIEW-PLAIN-BIND") {
		t.Fatalf("the old prepared statement wrote plaintext after the reload: %q", raw)
	}
}
