package proxy_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// withAuditTo sends the proxy's audit trail to buf.
func withAuditTo(buf *syncBuffer) harnessOption {
	return func(c *proxy.Config) { c.Audit = audit.OpenWriter(buf, policy.Audit{Buffer: 1000}, nil) }
}

// reviewSecret matches the values these probes send: none may reach the
// audit trail or the proxy's log.
var reviewSecret = regexp.MustCompile(`RV[0-9]+SECRET`)

func TestReviewAuditAndLogsHoldNoValues(t *testing.T) {
	trail := &syncBuffer{}
	h := newHarness(t, testPolicy, testSchema, withAuditTo(trail))
	c := protoConnect(t, h, "doctor")
	for _, q := range []string{
		// Values a client carries in other shapes than constants.
		`SELECT name FROM patients WHERE ssn = "RV1SECRET"`,
		`SELECT ssn AS "RV2SECRET" FROM patients`,
		`SELECT name FROM patients WHERE ssn = U&"RV3SECRET"`,
		// Syntax errors near a value: the proxy refuses them itself.
		`SELECT name FROM patients WHERE ssn = 'x' 'RV4SECRET'`,
		`SELECT name FROM patients WHERE ssn = 'RV5SECRET' 'y' AND`,
		`INSERT INTO patients (name, ssn) VALUES ('n', 'RV6SECRET'`,
		`INSERT INTO patients (name, dob) VALUES ('n', 'RV7SECRET')`,
		`INSERT INTO patients (name, ssn) VALUES ('n', 'RV8SECRET') ON CONFLICT (ssn) DO NOTHING RETURNING ssn`,
		`SELECT name FROM patients WHERE ssn = 'RV9SECRET'::int`,
		`SELECT name FROM patients WHERE dob = 'RV10SECRET'`,
		`SELECT name FROM patients WHERE ssn = E'RV11SECRET\'`,
		`SET application_name = 'RV12SECRET'`,
		`SELECT ssn FROM patients`,
		`INSERT INTO patients (name, ssn) VALUES ('n', 'RV13SECRET'), ('m', 'RV13SECRET')`,
		`SELECT name FROM patients WHERE ssn IN ('RV14SECRET', "RV15SECRET")`,
		`SELECT name FROM patients WHERE ssn = 'RV16SECRET' + 1`,
		`SELECT name FROM patients WHERE ssn LIKE 'RV17SECRET%'`,
		`SELECT name FROM patients WHERE diagnosis = 'RV18SECRET'`,
		`DO $$BEGIN PERFORM 'RV19SECRET'; END$$`,
	} {
		got := c.query(q)
		t.Logf("%s => %q", q, got)
	}
	c.send(&pgproto3.Parse{Query: `INSERT INTO patients (name, dob) VALUES ('n', $1)`}, &pgproto3.Bind{Parameters: [][]byte{[]byte("RV20SECRET")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	t.Logf("bind => %q", c.recvReady())
	c.send(&pgproto3.Query{String: `COPY patients (name, dob) FROM STDIN`})
	t.Logf("copy => %q", c.recvN(1))
	c.send(&pgproto3.CopyData{Data: []byte("n\tRV21SECRET\n")}, &pgproto3.CopyDone{})
	t.Logf("copy end => %q", c.recvReady())
	time.Sleep(300 * time.Millisecond)
	tr := trail.String()
	t.Logf("audit trail:\n%s", tr)
	// A value written in double quotes by mistake (RV1, RV3, RV15) makes
	// the statement fail or be refused, whose record gives its shape
	// without identifiers. Left, and documented: the identifiers of a
	// statement that ran, such as an alias the client chose (RV2), and
	// application_name, which is the client's own label (RV12).
	known := map[string]bool{"RV2SECRET": true, "RV12SECRET": true}
	for _, m := range reviewSecret.FindAllString(tr, -1) {
		if !known[m] {
			t.Errorf("value %s in the audit trail", m)
		}
	}
	for _, line := range strings.Split(h.logBuf.String(), "\n") {
		if reviewSecret.MatchString(line) {
			t.Errorf("value in the proxy log: %s", line)
		}
	}
}

// stuckWriter is an audit output that stopped taking data (a syslog
// server that stopped reading, a hung network file system).
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// With audit.on_full: block and an output that hangs, the drain must still
// end at server.drain_timeout: Shutdown must return once its context ends.
func TestReviewShutdownEndsDespiteABlockedAuditTrail(t *testing.T) {
	out := stuckWriter{release: make(chan struct{})}
	defer close(out.release)
	h := newHarness(t, testPolicy, testSchema, func(c *proxy.Config) {
		c.Audit = audit.OpenWriter(out, policy.Audit{Buffer: 1, OnFull: policy.AuditBlock}, nil)
	})
	c := protoConnect(t, h, "doctor")
	// The first record is taken by the writer (stuck in Write), the second
	// fills the buffer, the third blocks the session's backend loop.
	for i := 0; i < 3; i++ {
		c.send(&pgproto3.Query{String: "SELECT ssn FROM patients"})
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		t.Logf("Shutdown: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return 9s after its drain timeout: the session is stuck writing its audit record")
	}
}
