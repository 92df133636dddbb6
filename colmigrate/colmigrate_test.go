package colmigrate

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

func TestModeOf(t *testing.T) {
	var none Record
	running := func(a Action) Record { return Record{Action: a} }
	done := func(a Action) Record { return Record{Action: a, Finished: true} }
	tests := []struct {
		name  string
		typ   policy.LogicalType
		bytea bool
		rec   Record
		want  Mode
	}{
		{"bytea, never migrated", policy.TypeText, true, none, ModeEncrypted},
		{"own type, never migrated", policy.TypeText, false, none, ModeUnconverted},
		{"encrypt running", policy.TypeText, true, running(ActionEncrypt), ModeMixedEncrypt},
		{"encrypt done", policy.TypeText, true, done(ActionEncrypt), ModeEncrypted},
		{"reencrypt running", policy.TypeText, true, running(ActionReencrypt), ModeEncrypted},
		{"reencrypt done", policy.TypeText, true, done(ActionReencrypt), ModeEncrypted},
		{"decrypt running", policy.TypeText, true, running(ActionDecrypt), ModeMixedDecrypt},
		{"decrypt finishing", policy.TypeText, true, running(ActionDecryptFinishing), ModeDecryptFinishing},
		{"decrypt done, own type again", policy.TypeText, false, done(ActionDecrypt), ModeUnconverted},
		{"decrypt done of a bytea column", policy.TypeBytea, true, done(ActionDecrypt), ModeUnconverted},
		{"decrypt running on a bytea column", policy.TypeBytea, true, running(ActionDecrypt), ModeMixedDecrypt},
		// A column still of its own type while the snapshot already
		// shows encrypt: its type is what PostgreSQL has now.
		{"encrypt recorded, not yet bytea", policy.TypeText, false, running(ActionEncrypt), ModeUnconverted},
		{"decrypt running, already own type", policy.TypeInt4, false, running(ActionDecrypt), ModeUnconverted},
		{"unknown action", policy.TypeText, true, running("rotate"), ModeEncrypted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ModeOf(tt.typ, tt.bytea, tt.rec); got != tt.want {
				t.Errorf("ModeOf(%s, bytea=%v, %+v) = %d, want %d", tt.typ, tt.bytea, tt.rec, got, tt.want)
			}
		})
	}
}

func TestModeMixed(t *testing.T) {
	mixed := map[Mode]bool{
		ModeEncrypted:        false,
		ModeMixedEncrypt:     true,
		ModeMixedDecrypt:     true,
		ModeDecryptFinishing: true,
		ModeUnconverted:      false,
	}
	for m, want := range mixed {
		if m.Mixed() != want {
			t.Errorf("Mode(%d).Mixed() = %v, want %v", m, !want, want)
		}
	}
}

func TestRecord(t *testing.T) {
	tests := []struct {
		rec        Record
		unfinished bool
		is         []Record // (action, finished) pairs Is accepts
	}{
		{Record{}, false, nil},
		{Record{Action: ActionEncrypt}, true, []Record{{ActionEncrypt, false}}},
		{Record{Action: ActionEncrypt, Finished: true}, false, []Record{{ActionEncrypt, true}}},
		{Record{Action: ActionDecryptFinishing}, true, []Record{{ActionDecrypt, false}}},
		{Record{Action: ActionDecrypt, Finished: true}, false, []Record{{ActionDecrypt, true}}},
		{Record{Action: ActionReencrypt}, true, []Record{{ActionReencrypt, false}}},
	}
	all := []Action{ActionEncrypt, ActionReencrypt, ActionDecrypt, ActionDecryptFinishing}
	for _, tt := range tests {
		if got := tt.rec.Unfinished(); got != tt.unfinished {
			t.Errorf("%+v.Unfinished() = %v", tt.rec, got)
		}
		for _, a := range all {
			for _, fin := range []bool{false, true} {
				want := slices.Contains(tt.is, Record{a, fin})
				if got := tt.rec.Is(a, fin); got != want {
					t.Errorf("%+v.Is(%s, %v) = %v, want %v", tt.rec, a, fin, got, want)
				}
			}
		}
	}
}

func TestActionCommand(t *testing.T) {
	for a, want := range map[Action]Action{
		ActionEncrypt: ActionEncrypt, ActionReencrypt: ActionReencrypt,
		ActionDecrypt: ActionDecrypt, ActionDecryptFinishing: ActionDecrypt,
	} {
		if got := a.Command(); got != want {
			t.Errorf("%s.Command() = %s, want %s", a, got, want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		rows    [][]string
		want    Records
		wantErr string
	}{
		{"no rows", nil, Records{}, ""},
		{
			"unfinished and finished",
			[][]string{
				{"public", "people", "ssn", "encrypt", "true"},
				{"public", "people", "born", "decrypt", "false"},
				{"a.b", "c", "d", "decrypt-finishing", "true"},
			},
			Records{
				{"public", "people", "ssn"}:  {Action: ActionEncrypt},
				{"public", "people", "born"}: {Action: ActionDecrypt, Finished: true},
				{"a.b", "c", "d"}:            {Action: ActionDecryptFinishing},
			},
			"",
		},
		{"short row", [][]string{{"public", "people", "ssn", "encrypt"}}, nil, "migrations query returned 4 columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.rows)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Decode: err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode = %v, want %v", got, tt.want)
			}
		})
	}
	// A column without a row reads as never migrated.
	recs, _ := Decode(nil)
	if r := recs[Column{"public", "people", "ssn"}]; r != (Record{}) {
		t.Errorf("missing column: %+v", r)
	}
}

// TestStatementsNameTheTable: every column the statements on the table
// name is one the DDL defines, and Query returns what Decode reads.
func TestStatementsNameTheTable(t *testing.T) {
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  (\w+) +(name|text|timestamptz)`).FindAllStringSubmatch(DDL, -1) {
		defined[m[1]] = true
	}
	if len(defined) != 7 {
		t.Fatalf("DDL defines %d columns: %v", len(defined), defined)
	}
	for _, known := range []string{"schema_name", "table_name", "column_name", "action", "key_name", "started", "finished"} {
		if !defined[known] {
			t.Errorf("DDL lacks column %s", known)
		}
	}
	ident := regexp.MustCompile(`\b[a-z]+_name\b|\baction\b|\bstarted\b|\bfinished\b`)
	for name, sql := range map[string]string{"Query": Query, "LockRecordSQL": LockRecordSQL, "StartSQL": StartSQL,
		"FinishSQL": FinishSQL, "FinishAsSQL": FinishAsSQL, "UnfinishedSQL": UnfinishedSQL} {
		if !strings.Contains(sql, Table) {
			t.Errorf("%s does not name %s", name, Table)
		}
		for _, col := range ident.FindAllString(sql, -1) {
			if !defined[col] {
				t.Errorf("%s names column %s, which the DDL does not define", name, col)
			}
		}
	}
	if n := strings.Count(Query[:strings.Index(Query, "FROM")], "::pg_catalog.text"); n != queryColumns {
		t.Errorf("Query selects %d columns, Decode reads %d", n, queryColumns)
	}
}

func TestTextForm(t *testing.T) {
	tests := []struct {
		typ      policy.LogicalType
		in, form string // in: any text PostgreSQL accepts; form: the text form
	}{
		{policy.TypeText, "S-1", "S-1"},
		{policy.TypeInt4, " 42", "42"},
		{policy.TypeBool, "yes", "t"},
		{policy.TypeDate, "2024-01-02", "2024-01-02"},
		{policy.TypeTimestamptz, "2020-01-02 04:04:05+01", "2020-01-02 03:04:05+00"},
		{policy.TypeFloat8, "0.1", "0.1"},
		{policy.TypeBytea, `\x00ff`, `\x00ff`},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			canonical, err := ParseTextForm(tt.typ, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			form, err := TextForm(tt.typ, canonical)
			if err != nil {
				t.Fatal(err)
			}
			if string(form) != tt.form {
				t.Errorf("text form of %q = %q, want %q", tt.in, form, tt.form)
			}
			again, err := ParseTextForm(tt.typ, form)
			if err != nil || string(again) != string(canonical) {
				t.Errorf("text form %q does not parse back: %v", form, err)
			}
		})
	}
}

func TestConversionSQL(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"SQLType char", SQLType(policy.TypeChar), "bpchar"},
		{"SQLType timestamptz", SQLType(policy.TypeTimestamptz), "timestamptz"},
		{"from text forms", FromTextFormSQL(`"ssn"`, policy.TypeText), `pg_catalog.convert_from("ssn", 'UTF8')::text`},
		{"from text forms, char", FromTextFormSQL(`"c"`, policy.TypeChar), `pg_catalog.convert_from("c", 'UTF8')::bpchar`},
		{"from text forms, bytea", FromTextFormSQL(`"b"`, policy.TypeBytea), `pg_catalog.decode(substring(pg_catalog.convert_from("b", 'UTF8') from 3), 'hex')`},
		{"to text forms", ToTextFormSQL(`"ssn"`, "text"), `pg_catalog.convert_to("ssn"::text, 'UTF8')`},
		{"to text forms, bytea", ToTextFormSQL(`"b"`, "bytea"),
			fmt.Sprintf(`CASE WHEN pg_catalog.substr("b", 1, 5) = '\x%x'::bytea THEN "b" ELSE pg_catalog.convert_to("b"::text, 'UTF8') END`,
				keymap.CiphertextHeader())},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
}
