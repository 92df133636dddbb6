package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

// TestPolicyCheckWarnsAboutOrderedColumnsWithoutAnIndex: only a btree
// index led by the column and covering every row counts.
func TestPolicyCheckWarnsAboutOrderedColumnsWithoutAnIndex(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, `CREATE TABLE events (id int PRIMARY KEY, at bytea, pay bytea, tag bytea);
		CREATE INDEX ON events (id, at);
		CREATE INDEX ON events USING hash (at);
		CREATE INDEX ON events (pay) WHERE id > 0;
		CREATE INDEX ON events (tag, id);`)
	pol := policy.Policy{
		Keys: []policy.Key{{Name: "at", Kind: policy.Ordered}, {Name: "det", Kind: policy.Deterministic}},
		Columns: []policy.Column{
			{Table: "public.events", Column: "at", Key: "at", Type: policy.TypeTimestamptz, Line: 7},
			{Table: "public.events", Column: "pay", Key: "at", Type: policy.TypeTimestamptz, Line: 8},
			{Table: "public.events", Column: "tag", Key: "at", Type: policy.TypeTimestamptz, Line: 9},
			{Table: "public.events", Column: "id", Key: "det", Type: policy.TypeInt4, Line: 10},
		},
	}
	conn := pg.Connect(t)
	got := checkOrderedIndexes(context.Background(), conn, pol)
	if len(got) != 2 || !strings.Contains(got[0], "line 7: ordered column public.events.at has no btree index") ||
		!strings.Contains(got[1], "line 8: ordered column public.events.pay has no btree index") {
		t.Fatalf("warnings = %q, want ones for at (only in second place or in a hash index) and pay (only a partial index)", got)
	}
	if !strings.Contains(got[0], `CREATE INDEX ON "public"."events" ("at")`) {
		t.Errorf("warning gives no fix: %q", got[0])
	}
	pg.ExecAdmin(t, `CREATE INDEX ON events (at DESC)`)
	if got := checkOrderedIndexes(context.Background(), conn, pol); len(got) != 1 || !strings.Contains(got[0], "events.pay") {
		t.Fatalf("after indexing at: %q", got)
	}
}
