package copydata

import (
	"reflect"
	"testing"
)

func TestEndMarker(t *testing.T) {
	text, csv := Format{}, Format{Kind: CSV}
	tests := []struct {
		name  string
		f     Format
		in    []string // chunks
		want  string
		rows  [][]field
		ended bool
	}{
		{"text marker passed, rest dropped", text, []string{"a\n\\.\nb\n", "c\n"}, "a\n\\.\n", [][]field{{val("a")}}, true},
		{"text marker first line", text, []string{"\\.\n"}, "\\.\n", nil, true},
		{"text marker crlf", text, []string{"a\r\n\\.\r\nb\r\n"}, "a\r\n\\.\r\n", [][]field{{val("a")}}, true},
		{"text marker cr", text, []string{"a\r\\.\rb\r"}, "a\r\\.\r", [][]field{{val("a")}}, true},
		{"text marker crlf on first line keeps lf out", text, []string{"\\.\r\nb\n"}, "\\.\r", nil, true},
		{"text escaped backslash then dot is data", text, []string{"\\\\.\n"}, "\\\\.\n", [][]field{{val(`\.`)}}, false},
		{"csv marker dropped with rest", csv, []string{"a\n\\.\nb\n"}, "a\n", [][]field{{val("a")}}, true},
		{"csv marker with data after is data", csv, []string{"\\.x\n"}, "\\.x\n", [][]field{{val(`\.x`)}}, false},
		{"csv marker inside quotes is data", csv, []string{"\"\n\\.\n\"\n"}, "\"\n\\.\n\"\n", [][]field{{val("\n\\.\n")}}, false},
		{"csv crlf marker followed by data", csv, []string{"a\r\n\\.x\r\n"}, "a\r\n\\.x\r\n", [][]field{{val("a")}, {val(`\.x`)}}, false},
		{"csv header then marker", Format{Kind: CSV, Header: true}, []string{"h\n\\.\n"}, "h\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{}
			r, err := NewRewriter(tt.f, 1, allCols(1), rc.fn)
			if err != nil {
				t.Fatal(err)
			}
			var out []byte
			emit := func(b []byte) error { out = append(out, b...); return nil }
			for _, c := range tt.in {
				if err := r.Write([]byte(c), emit); err != nil {
					t.Fatalf("Write: %v", err)
				}
			}
			if err := r.Close(emit); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if string(out) != tt.want {
				t.Errorf("got %q, want %q", out, tt.want)
			}
			if !reflect.DeepEqual(rc.seen, tt.rows) {
				t.Errorf("decoded %v, want %v", rc.seen, tt.rows)
			}
			if r.ended != tt.ended {
				t.Errorf("ended = %v, want %v", r.ended, tt.ended)
			}
			if got := r.Rows(); got != int64(len(tt.rows)) {
				t.Errorf("Rows() = %d, want %d", got, len(tt.rows))
			}
		})
	}
}

func TestLineErrors(t *testing.T) {
	text, csv := Format{}, Format{Kind: CSV}
	tests := []struct {
		name string
		f    Format
		in   string
		row  int64
		msg  string
	}{
		{"text marker after data", text, "a\nb\\.\n", 2, "COPY row 2: end-of-copy marker is not alone on its line"},
		{"text marker followed by data", text, "a\n\\.b\n", 2, "COPY row 2: end-of-copy marker is not alone on its line"},
		{"text marker at end of data", text, "a\n\\.", 2, "COPY row 2: end-of-copy marker is not alone on its line"},
		{"text crlf marker followed by data", text, "a\r\n\\.x\r\n", 2, "COPY row 2: end-of-copy marker is not alone on its line"},
		{"text marker wrong newline style", text, "a\n\\.\r\n", 2, "COPY row 2: end-of-copy marker does not match previous newline style"},
		{"text marker lf in crlf data", text, "a\r\n\\.\n", 2, "COPY row 2: end-of-copy marker does not match previous newline style"},
		{"csv marker cr in lf data", csv, "a\n\\.\r", 2, "COPY row 2: end-of-copy marker does not match previous newline style"},
		{"text cr in lf data", text, "a\nb\rc\n", 2, "COPY row 2: literal carriage return found in data"},
		{"csv crlf marker with bare lf", csv, "a\r\n\\.\n", 2, "COPY row 2: unquoted newline found in data"},
		{"csv cr in lf data", csv, "a\nb\rc\n", 2, "COPY row 2: unquoted carriage return found in data"},
		{"text lf in cr data", text, "a\rb\nc\r", 2, "COPY row 2: literal newline found in data"},
		{"text bare cr in crlf data", text, "a\r\nb\rc\r\n", 2, "COPY row 2: literal carriage return found in data"},
		{"text lf in crlf data", text, "a\r\nb\n", 2, "COPY row 2: literal newline found in data"},
		{"header style error", Format{Header: true}, "h\r\nb\n", 1, "COPY row 1: literal newline found in data"},
		{"header line error", Format{Header: true}, "h\\.\n", 0, "COPY header: end-of-copy marker is not alone on its line"},
		{"csv unterminated at close", csv, "a\n\"b\nc", 2, "COPY row 2: unterminated CSV quoted field"},
		{"text too many columns", text, "a\nb\tc\td\n", 2, "COPY row 2: expected 1 columns, got 3"},
		{"csv too many columns", csv, "a\n\"b,\",c\n", 2, "COPY row 2: expected 1 columns, got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := feed(t, tt.f, 1, allCols(1), (&recorder{}).fn, tt.in)
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("got %v (%T), want *Error", err, err)
			}
			if e.Row != tt.row || e.Error() != tt.msg {
				t.Errorf("got row %d %q, want row %d %q", e.Row, e.Error(), tt.row, tt.msg)
			}
			if e.SQLState() != "22P04" {
				t.Errorf("SQLState %q", e.SQLState())
			}
		})
	}
}

func TestNewlineStyleFromFirstLine(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		in   string
		want eolStyle
	}{
		{"lf", Format{}, "a\nb\n", eolNL},
		{"crlf", Format{}, "a\r\nb\r\n", eolCRNL},
		{"cr", Format{}, "a\rb\r", eolCR},
		{"cr at end of data", Format{}, "a\r", eolCR},
		{"escaped cr is data", Format{}, "a\\\rb\n", eolNL},
		{"csv quoted crlf is data", Format{Kind: CSV}, "\"a\r\nb\"\n", eolNL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRewriter(tt.f, 1, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out []byte
			emit := func(b []byte) error { out = append(out, b...); return nil }
			if err := r.Write([]byte(tt.in), emit); err != nil {
				t.Fatal(err)
			}
			if err := r.Close(emit); err != nil {
				t.Fatal(err)
			}
			if r.ls.eol != tt.want {
				t.Errorf("eol = %d, want %d", r.ls.eol, tt.want)
			}
			if string(out) != tt.in {
				t.Errorf("got %q, want %q", out, tt.in)
			}
		})
	}
}
