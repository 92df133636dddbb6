package proxy_test

// Tests from the review of the session's books (proxy/internal/pipeline):
// ways for the proxy's record of statements and portals to drift from the
// server's.

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// A transaction that ends and a new one that begins within one string (or
// one batch): the server drops the portals of the first, though the
// ReadyForQuery reports a transaction in progress. The proxy kept the
// portal, so a new portal of the same name was taken for the old one.
func TestReviewPortalDiesWithCommitInsideString(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"PC", "commit-ssn-1", "diag-1"})
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "plain"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "plain portal", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25", "Z:T")
	wantTokens(t, "commit; begin", c.query("COMMIT; BEGIN"), "C:COMMIT", "C:BEGIN", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "enc"},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "new portal of the same name", c.recvReady(), "ParseComplete", "BindComplete", "D:commit-ssn-1", "C:SELECT 1", "Z:T")
}

// The same through the extended protocol: COMMIT and BEGIN executed in one
// batch.
func TestReviewPortalDiesWithCommitInsideBatch(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"PB", "commit-ssn-2", "diag-2"})
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "plain"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Parse{Name: "c", Query: "COMMIT"},
		&pgproto3.Bind{DestinationPortal: "pc", PreparedStatement: "c"},
		&pgproto3.Execute{Portal: "pc"},
		&pgproto3.Parse{Name: "b", Query: "BEGIN"},
		&pgproto3.Bind{DestinationPortal: "pb", PreparedStatement: "b"},
		&pgproto3.Execute{Portal: "pb"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "plain portal, commit, begin", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25",
		"ParseComplete", "BindComplete", "C:COMMIT", "ParseComplete", "BindComplete", "C:BEGIN", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "enc"},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "new portal of the same name", c.recvReady(), "ParseComplete", "BindComplete", "D:commit-ssn-2", "C:SELECT 1", "Z:T")
}

// ROLLBACK TO SAVEPOINT drops the portals made since the savepoint.
func TestReviewPortalDiesWithRollbackToSavepoint(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	insertPatients(t, h.connect("doctor"), [3]string{"PS", "savepoint-ssn-3", "diag-3"})
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "begin", c.query("BEGIN; SAVEPOINT s"), "C:BEGIN", "C:SAVEPOINT", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "plain", Query: "SELECT name FROM other.patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "plain"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "plain portal", c.recvReady(), "ParseComplete", "BindComplete", "Row:name/25", "Z:T")
	wantTokens(t, "rollback to", c.query("ROLLBACK TO SAVEPOINT s"), "C:ROLLBACK", "Z:T")
	c.send(
		&pgproto3.Parse{Name: "enc", Query: "SELECT ssn FROM patients"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "enc"},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "new portal of the same name", c.recvReady(), "ParseComplete", "BindComplete", "D:savepoint-ssn-3", "C:SELECT 1", "Z:T")
}
