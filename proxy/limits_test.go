package proxy_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/testenv"
)

// rssGrowthBound is how much the test process (the proxy runs in it) may
// grow while it refuses the statements of TestLimitsKeepTheProxyAlive.
// The client side alone holds the 8 MB statement a few times over; before
// the limits, analysing it grew the proxy by 1.3 GB.
const rssGrowthBound = 256 << 20

// bigMessages lets 8 MB statements through the message size limit, so
// that the statement limits are what refuses them.
func bigMessages(c *proxy.Config) { c.Server.MaxMessageBytes = 16 << 20 }

// procStatusKiB reads a field of /proc/self/status, in KiB.
func procStatusKiB(t *testing.T, field string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		testenv.Unavailable(t, "no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	testenv.Unavailable(t, "no %s in /proc/self/status", field)
	return 0
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux: 5 in
// clear_refs), so that the peak measured is this test's.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// inList is an IN list of n items that takes the full analysis.
func inList(n int) string {
	return "SELECT id FROM patients WHERE id IN (1" + strings.Repeat(",1", n-1) + ")"
}

// TestLimitsKeepTheProxyAlive: statements that used to crash the proxy
// (a 30,000-term expression overflowed the C parser's stack) or exhaust
// its memory (an 8 MB IN list grew it by 1.3 GB) are refused with 54001 /
// 54000 before parsing; the session and the others go on, and the process
// hardly grows.
func TestLimitsKeepTheProxyAlive(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema, bigMessages)
	ctx := ctxT(t)
	doc := h.connect("doctor")
	other := h.connect("billing")

	deepChain := "SELECT 1" + strings.Repeat("+1", 30000)
	refusals := []struct {
		name string
		sql  string
		code string
	}{
		{"30,000-term expression", deepChain + " FROM patients", "54001"},
		{"30,000-term expression after a comment", "/* report */ " + deepChain, "54001"},
		{"over max_statement_bytes", "SELECT name FROM patients WHERE name = '" + strings.Repeat("x", 2<<20) + "'", "54000"},
		{"8 MB IN list", inList(4_000_000), "54000"},
		{"IN list over the token budget", inList(400_000), "54000"},
	}

	peakReset := resetPeakRSS()
	before := procStatusKiB(t, "VmRSS")
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
				_, err := doc.Exec(ctx, r.sql, mode)
				pe := wantCode(t, err, r.code)
				if !strings.HasPrefix(pe.Message, "pgcloak: ") {
					t.Errorf("%v: not the proxy's refusal: %s", mode, pe.Message)
				}
				assertServes(t, doc, "the same session")
			}
		})
	}
	switch growth := (procStatusKiB(t, "VmHWM") - before) << 10; {
	case peakReset != nil:
		t.Logf("RSS growth not measured: cannot reset the peak: %v", peakReset)
	case growth > rssGrowthBound:
		t.Errorf("the process grew by %d MB refusing them, more than %d MB", growth>>20, rssGrowthBound>>20)
	default:
		t.Logf("peak RSS growth while refusing: %d MB", growth>>20)
	}

	// The report's query exactly: plain SQL the proxy does not parse, so
	// PostgreSQL refuses it itself.
	_, err := doc.Exec(ctx, deepChain, pgx.QueryExecModeSimpleProtocol)
	if pe := wantCode(t, err, "54001"); strings.HasPrefix(pe.Message, "pgcloak: ") {
		t.Errorf("plain SQL was parsed by the proxy: %s", pe.Message)
	}

	assertServes(t, doc, "the same session")
	assertServes(t, other, "another session")
	stillServes(t, h)

	// Big ordinary statements still pass.
	var n int
	in := "SELECT count(*) FROM patients WHERE ssn IN ('a'" + strings.Repeat(", 'x'", 9999) + ")"
	if err := doc.QueryRow(ctx, in).Scan(&n); err != nil || n != 0 {
		t.Fatalf("10,000-item IN list: n=%d err=%v", n, err)
	}
}

// assertServes runs a statement on an encrypted column over conn.
func assertServes(t *testing.T, conn *pgx.Conn, what string) {
	t.Helper()
	var n int
	err := conn.QueryRow(ctxT(t), "SELECT count(*) FROM patients WHERE ssn = $1", "no-such-ssn").Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("%s no longer works: n=%d err=%v", what, n, err)
	}
}
