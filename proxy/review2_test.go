package proxy_test

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQL EXECUTE planned against a Close and Parse of an earlier batch still
// in flight: when that batch fails, the server keeps the old statement,
// while the EXECUTE went out planned by the new one.
func TestReviewExecuteAfterFailingBatch(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	wantTokens(t, "prepare", c.query("PREPARE s(text) AS INSERT INTO public.patients (name, ssn) VALUES ('B', $1)"), "C:PREPARE", "Z:I")
	c.send(
		&pgproto3.Parse{Query: failsWhenRun},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "s"},
		&pgproto3.Parse{Name: "s", Query: "INSERT INTO other.patients (name, ssn) VALUES ('A', $1)"},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "EXECUTE s('EXEC-AFTER-FAIL-PLAINTEXT')"},
	)
	t.Logf("batch %q", c.recvReady())
	t.Logf("execute %q", c.recvReady())
	for _, raw := range sqDirectBytes(t, ctxT(t), h, "SELECT ssn FROM public.patients WHERE name = 'B'") {
		if bytes.Contains(raw, []byte("EXEC-AFTER-FAIL-PLAINTEXT")) {
			t.Fatalf("plaintext stored in public.patients.ssn: %q", raw)
		}
	}
}
