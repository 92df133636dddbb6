package copydata

import (
	"reflect"
	"testing"
)

func TestCSVDecode(t *testing.T) {
	csv := Format{Kind: CSV}
	tests := []struct {
		name  string
		f     Format
		ncols int
		in    string
		want  [][]field
	}{
		{"plain", csv, 2, "a,b\nc,d\n", [][]field{{val("a"), val("b")}, {val("c"), val("d")}}},
		{"empty unquoted is null", csv, 3, ",\"\",x\n", [][]field{{null, val(""), val("x")}}},
		{"custom null", Format{Kind: CSV, Null: "NULL"}, 3, "NULL,\"NULL\",\n", [][]field{{null, val("NULL"), val("")}}},
		{"quoted delimiter", csv, 2, "\"a,b\",c\n", [][]field{{val("a,b"), val("c")}}},
		{"doubled quote", csv, 1, "\"say \"\"hi\"\"\"\n", [][]field{{val(`say "hi"`)}}},
		{"multi-line quoted", csv, 2, "\"line1\nline2\r\nline3\",x\ny,z\n", [][]field{{val("line1\nline2\r\nline3"), val("x")}, {val("y"), val("z")}}},
		{"quote mid field", csv, 2, "ab\"c,d\"e,f\n", [][]field{{val("abc,de"), val("f")}}},
		{"backslash is data", csv, 2, "a\\,\\N\n", [][]field{{val(`a\`), val(`\N`)}}},
		{"custom escape", Format{Kind: CSV, Escape: '\\'}, 2, "\"a\\\"b\\\\c\\d\",e\n", [][]field{{val(`a"b\c\d`), val("e")}}},
		{"escape outside quotes is data", Format{Kind: CSV, Escape: '\\'}, 1, "a\\\"b\"\n", [][]field{{val(`a\b`)}}},
		{"custom quote and delimiter", Format{Kind: CSV, Quote: '\'', Delimiter: ';'}, 2, "'a;''b';\"c\"\n", [][]field{{val("a;'b"), val(`"c"`)}}},
		{"header passed through", Format{Kind: CSV, Header: true}, 2, "x,\"y\"\n1,2\n", [][]field{{val("1"), val("2")}}},
		{"last line without newline", csv, 1, "a\nb", [][]field{{val("a")}, {val("b")}}},
		{"backslash-dot with data", csv, 2, "\\.,x\n", [][]field{{val(`\.`), val("x")}}},
		{"backslash-dot at end of data", csv, 1, "a\n\\.", [][]field{{val("a")}, {val(`\.`)}}},
		{"quoted backslash-dot", csv, 1, "\"\\.\"\n", [][]field{{val(`\.`)}}},
		{"crlf", csv, 2, "a,\"b\r\nc\"\r\nd,e\r\n", [][]field{{val("a"), val("b\r\nc")}, {val("d"), val("e")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{}
			out, _, err := feed(t, tt.f, tt.ncols, allCols(tt.ncols), rc.fn, tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(rc.seen, tt.want) {
				t.Errorf("decoded %v, want %v", rc.seen, tt.want)
			}
			if out != tt.in {
				t.Errorf("identity output %q, want input %q", out, tt.in)
			}
		})
	}
}

func TestCSVEncode(t *testing.T) {
	csv := Format{Kind: CSV}
	tests := []struct {
		name  string
		f     Format
		ncols int
		in    string
		to    field // new value of column 0
		want  string
	}{
		{"plain", csv, 2, "a,\"b\"\n", val("x"), "x,\"b\"\n"},
		{"untouched quoting kept", csv, 3, "a,\"b\",\"c\"\"\"\n", val("x"), "x,\"b\",\"c\"\"\"\n"},
		{"null", csv, 2, "a,b\n", null, ",b\n"},
		{"custom null", Format{Kind: CSV, Null: `\N`}, 2, "a,b\n", null, "\\N,b\n"},
		{"empty string quoted when null is empty", csv, 2, "a,b\n", val(""), "\"\",b\n"},
		{"empty string bare when null is not", Format{Kind: CSV, Null: `\N`}, 2, "a,b\n", val(""), ",b\n"},
		{"value equal to null quoted", Format{Kind: CSV, Null: "NA"}, 2, "a,b\n", val("NA"), "\"NA\",b\n"},
		{"delimiter", csv, 2, "a,b\n", val("x,y"), "\"x,y\",b\n"},
		{"quote", csv, 2, "a,b\n", val(`x"y`), "\"x\"\"y\",b\n"},
		{"newline", csv, 2, "a,b\n", val("x\ny"), "\"x\ny\",b\n"},
		{"carriage return", csv, 2, "a,b\n", val("x\ry"), "\"x\ry\",b\n"},
		{"escape alone not quoted", Format{Kind: CSV, Escape: '\\'}, 2, "a,b\n", val(`x\y`), "x\\y,b\n"},
		{"escape doubled inside quotes", Format{Kind: CSV, Escape: '\\'}, 2, "a,b\n", val(`x\"y`), "\"x\\\\\\\"y\",b\n"},
		{"marker alone quoted", csv, 1, "a\n", val(`\.`), "\"\\.\"\n"},
		{"marker with other columns bare", csv, 2, "a,b\n", val(`\.`), "\\.,b\n"},
		{"from null", csv, 2, ",b\n", val("v"), "v,b\n"},
		{"last line to empty null gets a terminator", csv, 1, "a\nb", null, "\n\n"},
		{"crlf last line to empty null", csv, 1, "a\r\nb", null, "\r\n\r\n"},
		{"crlf kept", csv, 2, "a,b\r\nc,d\r\n", val("x\r\ny"), "\"x\r\ny\",b\r\n\"x\r\ny\",d\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{next: setAll(tt.to)}
			out, _, err := feed(t, tt.f, tt.ncols, onlyCol(tt.ncols, 0), rc.fn, tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if out != tt.want {
				t.Errorf("got %q, want %q", out, tt.want)
			}
			back := &recorder{}
			if _, _, err := feed(t, tt.f, tt.ncols, onlyCol(tt.ncols, 0), back.fn, out); err != nil {
				t.Fatalf("re-read: %v", err)
			}
			for _, row := range back.seen {
				if row[0] != tt.to {
					t.Errorf("re-read %v, want %v", row[0], tt.to)
				}
			}
		})
	}
}
