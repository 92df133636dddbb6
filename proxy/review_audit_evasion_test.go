package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/audit"
)

// Every statement that returns a decrypted value must leave a record that
// says so.
func TestReviewAuditEveryDecryptionRecorded(t *testing.T) {
	trail := &syncBuffer{}
	h := newHarness(t, testPolicy, testSchema, withAuditTo(trail))
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	if _, err := doctor.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('n', 'EVADE-SSN')"); err != nil {
		t.Fatal(err)
	}
	c := protoConnect(t, h, "doctor")
	for _, q := range []string{
		"BEGIN",
		"DECLARE cur CURSOR FOR SELECT ssn FROM patients",
		"FETCH ALL FROM cur",
		"COMMIT",
		"PREPARE ps AS SELECT ssn FROM patients",
		"EXECUTE ps",
		"TABLE patients",
		"WITH x AS (SELECT ssn FROM patients) SELECT * FROM x",
		"SELECT (SELECT ssn FROM patients LIMIT 1)",
		"SELECT ARRAY(SELECT ssn FROM patients)",
		"SELECT row(ssn) FROM patients",
		"SELECT ssn::text || '' FROM patients",
		"SELECT json_agg(ssn) FROM patients",
		"COPY (SELECT ssn FROM patients) TO STDOUT",
		"UPDATE patients SET name = name RETURNING ssn",
	} {
		got := c.query(q)
		leaked := strings.Contains(strings.Join(got, " "), "EVADE-SSN")
		t.Logf("%-55s leaked=%v %q", q, leaked, got)
		time.Sleep(50 * time.Millisecond)
		recorded := false
		for _, line := range strings.Split(trail.String(), "\n") {
			if line == "" {
				continue
			}
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Statement != audit.Fingerprint(q) {
				continue
			}
			for _, col := range r.Columns {
				if col.Action == audit.Decrypted {
					recorded = true
				}
			}
		}
		if leaked && !recorded {
			t.Errorf("%s returned the plaintext with no decrypted record", q)
		}
	}
}
