package metrics

import (
	"slices"
	"testing"
)

func TestNamesListsEveryCollectorOnce(t *testing.T) {
	names := Names()
	if len(names) != len(all) {
		t.Fatalf("Names() has %d names for %d collectors: %v", len(names), len(all), names)
	}
	for _, want := range []string{"pgcloak_sessions_total", "pgcloak_proxy_latency_seconds", "pgcloak_build_info", "pgcloak_audit_dropped_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() lacks %s: %v", want, names)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("Names() not sorted and unique: %v", names)
	}
}
