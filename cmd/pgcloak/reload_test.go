package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

// reloadRoles replaces the roles section of the config at path.
func rewriteConfig(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("config lacks %q:\n%s", old, data)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

const readBoth = "{role: postgres, read: [ssn, clinical], write: [ssn, clinical]}"

func TestSIGHUPReloadsThePolicyForConnectedSessions(t *testing.T) {
	pg, path := patientsWithKeys(t)
	p := startProcess(t, path, nil)
	ctx := context.Background()
	conn := p.connect(ctx, "postgres", pg.Database)
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn, diagnosis) VALUES ('Ann', 'RELOAD-SSN-1', 'RELOAD-DIAG-1')"); err != nil {
		t.Fatal(err)
	}
	read := func() (ssn, diag *string) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT ssn, diagnosis FROM patients WHERE name = 'Ann'").Scan(&ssn, &diag); err != nil {
			t.Fatal(err)
		}
		return ssn, diag
	}
	if ssn, diag := read(); ssn == nil || *ssn != "RELOAD-SSN-1" || diag == nil || *diag != "RELOAD-DIAG-1" {
		t.Fatalf("before the reload: %v %v", ssn, diag)
	}

	// The role loses the ssn key: the connected session's next statement
	// gets NULL for it.
	rewriteConfig(t, path, readBoth, `{role: postgres, read: [clinical], write: [ssn, clinical], on_denied: "null"}`)
	p.signal(syscall.SIGHUP)
	p.waitLog("policy reloaded", 1)
	if ssn, diag := read(); ssn != nil || diag == nil || *diag != "RELOAD-DIAG-1" {
		t.Fatalf("after the reload: ssn %v diagnosis %v, want NULL and the diagnosis", ssn, diag)
	}
	if got := p.metric("pgcloak_policy_reloads_total", `outcome="ok"`); got != 1 {
		t.Fatalf("policy_reloads_total{ok} = %v, want 1", got)
	}

	// A broken file, and a file naming a key the store lacks, change
	// nothing.
	data, _ := os.ReadFile(path)
	for i, broken := range []struct{ old, new, why string }{
		{"kind: randomized", "kind: randomised", "randomised"},
		{"- {name: clinical, kind: randomized}", "- {name: clinical, kind: randomized}\n    - {name: extra, kind: randomized}", "extra\\\" is not in the key store"},
	} {
		rewriteConfig(t, path, broken.old, broken.new)
		p.signal(syscall.SIGHUP)
		p.waitLog("policy not reloaded", i+1)
		p.waitLog(broken.why, 1)
		if ssn, diag := read(); ssn != nil || diag == nil || *diag != "RELOAD-DIAG-1" {
			t.Fatalf("after a refused reload (%s): ssn %v diagnosis %v", broken.why, ssn, diag)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.metric("pgcloak_policy_reloads_total", `outcome="failed"`); got != 2 {
		t.Fatalf("policy_reloads_total{failed} = %v, want 2", got)
	}

	// Settings that need a restart are named, and the policy still
	// applies.
	rewriteConfig(t, path, `{role: postgres, read: [clinical]`, `{role: postgres, read: [ssn, clinical]`)
	if err := os.WriteFile(path, append(mustRead(t, path), []byte("\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	rewriteConfig(t, path, "keystore:\n", "keystore:\n  cache_ttl: 1m\n")
	p.signal(syscall.SIGHUP)
	p.waitLog("policy reloaded", 2)
	p.waitLog("settings=[keystore.cache_ttl]", 1)
	if ssn, _ := read(); ssn == nil || *ssn != "RELOAD-SSN-1" {
		t.Fatalf("after the reload granting ssn again: %v", ssn)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWatchConfigReloadsWhenTheFileChanges(t *testing.T) {
	pg, path := patientsWithKeys(t)
	p := startProcess(t, path, nil, "--watch-config")
	ctx := context.Background()
	conn := p.connect(ctx, "postgres", pg.Database)
	if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('Bo', 'WATCH-SSN-1')"); err != nil {
		t.Fatal(err)
	}
	// Replaced, as an editor or a kubelet does, not written in place.
	data := strings.Replace(string(mustRead(t, path)), readBoth, `{role: postgres, read: [], write: [ssn, clinical], on_denied: "null"}`, 1)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	p.waitLog("policy reloaded", 1)
	var ssn *string
	if err := conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE name = 'Bo'").Scan(&ssn); err != nil || ssn != nil {
		t.Fatalf("after the file changed: %v %v, want NULL", ssn, err)
	}
}
