package proxy

import (
	"testing"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

func TestKindOfTagsAndSQL(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"SELECT 5", kindSelect},
		{"INSERT 0 3", kindInsert},
		{"UPDATE 2", kindUpdate},
		{"DELETE 0", kindDelete},
		{"MERGE 1", kindMerge},
		{"COPY 10", kindCopy},
		{"CREATE TABLE", kindDDL},
		{"ALTER TABLE", kindDDL},
		{"COMMIT", kindTransaction},
		{"SET", kindSet},
		{"  (select 1)", kindSelect},
		{"with x as (select 1) select * from x", kindSelect},
		{"LISTEN", kindOther},
		{"", kindOther},
		{"ÜBER 1", kindOther},
	} {
		if got := kindOf(c.text); got != c.want {
			t.Errorf("kindOf(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestTagRowsIsTheTagsLastNumber(t *testing.T) {
	for tag, want := range map[string]int64{"INSERT 0 5": 5, "SELECT 12": 12, "COPY 0": 0, "CREATE TABLE": 0, "": 0, "UPDATE x": 0} {
		if got := tagRows(tag); got != want {
			t.Errorf("tagRows(%q) = %d, want %d", tag, got, want)
		}
	}
}

func TestUsesNamesWhatAStatementDidWithEachColumn(t *testing.T) {
	ssn := &policy.ColumnRule{Schema: "public", Table: "p", Column: "ssn", KeyName: "ssn"}
	diag := &policy.ColumnRule{Schema: "public", Table: "p", Column: "diagnosis", KeyName: "clinical"}
	shape := &resultShape{actions: []colAction{{rule: ssn, cipher: &keymap.ColumnCipher{}}, {}, {rule: diag, mode: showNull}}}
	st := &sqlrewrite.Statement{Kind: sqlrewrite.KindUpdate, Writes: []*policy.ColumnRule{diag}, Searches: []*policy.ColumnRule{ssn}}
	got := uses(st, shape, 3, 7)
	want := []columnUse{
		{ssn, metrics.ValueDecrypted, 3},
		{diag, metrics.ValueDenied, 3},
		{diag, metrics.ValueEncrypted, 7},
		{ssn, useSearched, 7},
	}
	if len(got) != len(want) {
		t.Fatalf("uses = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("use %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	copyOut := &sqlrewrite.Statement{Kind: sqlrewrite.KindCopy, Outputs: []*policy.ColumnRule{ssn}}
	if got := uses(copyOut, nil, 0, 9); len(got) != 1 || got[0] != (columnUse{ssn, metrics.ValueDecrypted, 9}) {
		t.Errorf("COPY TO: %+v", got)
	}
	if got := uses(nil, nil, 0, 1); len(got) != 0 {
		t.Errorf("a plain statement: %+v", got)
	}
}
