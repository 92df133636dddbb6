package proxy_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The session's fingerprint cache is written by the backend loop (records
// of statements) and by the frontend loop (records of refusals): a client
// that pipelines both makes the two write the map at once, which the Go
// runtime answers with a fatal error that ends the whole process.
func TestReviewAuditFingerprintCacheRace(t *testing.T) {
	trail := &syncBuffer{}
	h := newHarness(t, testPolicy, testSchema, withAuditTo(trail))
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	if _, err := doctor.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('n', 'RACE-SSN')"); err != nil {
		t.Fatal(err)
	}
	c := protoConnect(t, h, "doctor")
	const n = 3000
	go func() {
		for i := 0; i < n; i++ {
			c.fe.Send(&pgproto3.Query{String: fmt.Sprintf("SELECT ssn FROM patients WHERE %d = %d", i, i)})
			c.fe.Send(&pgproto3.Query{String: fmt.Sprintf("SELECT name FROM patients WHERE ssn LIKE 'x%d'", i)})
			if i%50 == 0 {
				c.fe.Flush()
			}
		}
		c.fe.Flush()
	}()
	for i := 0; i < 2*n; i++ {
		c.recvReady()
	}
	stillServes(t, h)
}
