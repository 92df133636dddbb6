package proxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// swapPolicy loads policyYAML, creates its missing keys and makes it the
// server's policy.
func (h *harness) swapPolicy(policyYAML string) {
	h.t.Helper()
	cfg, err := policy.Load([]byte(policyYAML))
	if err != nil {
		h.t.Fatalf("policy: %v", err)
	}
	if _, err := keymap.CreateMissing(context.Background(), h.store, cfg.Policy.Keys); err != nil {
		h.t.Fatal(err)
	}
	h.srv.SetPolicy(policy.NewIndex(cfg.Policy), nil, policy.Server{MaxMessageBytes: 1 << 20})
}

func TestSetPolicyAppliesToTheNextStatementInsideATransaction(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	if _, err := doctor.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('Ann', 'SWAP-SSN-1', 'SWAP-DIAG-1')"); err != nil {
		t.Fatal(err)
	}
	tx, err := doctor.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var ssn *string
	if err := tx.QueryRow(ctx, "SELECT ssn FROM patients WHERE name = 'Ann'").Scan(&ssn); err != nil || ssn == nil || *ssn != "SWAP-SSN-1" {
		t.Fatalf("before the swap: %v %v", ssn, err)
	}
	h.swapPolicy(strings.Replace(testPolicy, "{role: doctor, read: [ssn, clinical, dates]", `{role: doctor, on_denied: "null", read: [clinical, dates]`, 1))
	if err := tx.QueryRow(ctx, "SELECT ssn FROM patients WHERE name = 'Ann'").Scan(&ssn); err != nil || ssn != nil {
		t.Fatalf("after the swap, in the same transaction: %v %v, want NULL", ssn, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetPolicyRefusesAPreparedStatementItsKeyChangeAltered(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	doctor := h.connect("doctor")
	const insert = "INSERT INTO patients (name, diagnosis) VALUES ($1, $2)"
	if _, err := doctor.Prepare(ctx, "ins", insert); err != nil {
		t.Fatal(err)
	}
	if _, err := doctor.Exec(ctx, "ins", "Ann", "KEY-A"); err != nil {
		t.Fatal(err)
	}
	h.swapPolicy(strings.Replace(strings.Replace(strings.Replace(testPolicy,
		"{name: dates, kind: randomized}", "{name: dates, kind: randomized}\n    - {name: clinical2, kind: randomized}", 1),
		"{table: public.patients, column: diagnosis, key: clinical,", "{table: public.patients, column: diagnosis, key: clinical2,", 1),
		"{role: doctor, read: [ssn, clinical, dates], write: [ssn, clinical, dates]}", "{role: doctor, read: [ssn, clinical, clinical2, dates], write: [ssn, clinical, clinical2, dates]}", 1))
	_, err := doctor.Exec(ctx, "ins", "Bo", "KEY-B")
	if pgCode(err) != "0A000" || !strings.Contains(err.Error(), "prepare it again") {
		t.Fatalf("prepared statement after its column's key changed: %v", err)
	}
	// Prepared again, it encrypts under the new key.
	if _, err := doctor.Exec(ctx, insert, pgx.QueryExecModeSimpleProtocol, "Bo", "KEY-B"); err != nil {
		t.Fatal(err)
	}
	var diag string
	if err := doctor.QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'Bo'").Scan(&diag); err != nil || diag != "KEY-B" {
		t.Fatalf("read back under the new key: %q %v", diag, err)
	}
	var raw []byte
	if err := h.direct().QueryRow(ctx, "SELECT diagnosis FROM patients WHERE name = 'Bo'").Scan(&raw); err != nil || strings.Contains(string(raw), "KEY-B") {
		t.Fatalf("at rest: %q %v", raw, err)
	}
}
