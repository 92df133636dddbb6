package copydata

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// scramble is a transform that changes every value into one full of the
// characters each format must escape or quote, and flips NULLs.
func scramble(_ int64, col int, in field) field {
	if in.null {
		return val("was null")
	}
	if in.v == "n" {
		return null
	}
	return val("<" + in.v + "\t,\"\\\r\n|" + string(rune('0'+col)) + ">")
}

type streamCase struct {
	name  string
	f     Format
	ncols int
	cols  []bool
	in    string
}

var streamCases = []streamCase{
	{"text", Format{}, 3, onlyCol(3, 1),
		"a\tb\\tc\t\\N\n\\x41\t\\N\tn\nx\\\ny\tz\t\\\\\n1\t2\t3\n\\.\nignored\n"},
	{"text crlf all cols", Format{}, 2, allCols(2), "a\tb\r\n\\r\\n\tn\r\nlast\t\\101"},
	{"text cr custom", Format{Delimiter: '|', Null: "NULL"}, 2, allCols(2), "a|NULL\r\\|\\\r|c\r"},
	{"csv", Format{Kind: CSV, Header: true}, 3, onlyCol(3, 2),
		"h1,h2,h3\n\"a,1\",,\"\"\n\"multi\nline\",\"q\"\"\",n\nx,y,\"z\nz\"\n\\.\nlost\n"},
	{"csv crlf custom escape", Format{Kind: CSV, Escape: '\\', Null: `\N`}, 2, allCols(2),
		"\"a\\\"b\",\\N\r\n\"c\r\nd\",\"\"\r\n\\.x,n"},
	{"binary extension", Format{Kind: Binary}, 2, allCols(2), binFileExt(5, []field{val("x"), null})},
	{"binary", Format{Kind: Binary}, 2, onlyCol(2, 1),
		binFile([]field{val("a"), val("b")}, []field{null, null}, []field{val(""), val("n")}, []field{val("long value"), val("")})},
}

// TestChunkBoundaries feeds each input split at every byte offset, at every
// pair of offsets, and one byte at a time: output, decoded values and errors
// must match unsplit processing.
func TestChunkBoundaries(t *testing.T) {
	for _, tc := range streamCases {
		t.Run(tc.name, func(t *testing.T) {
			whole, wholeSeen, wholeErr := runStream(t, tc, tc.in)
			if wholeErr != nil {
				t.Fatalf("unsplit: %v", wholeErr)
			}
			if len(wholeSeen) == 0 {
				t.Fatal("transform never called")
			}
			check := func(desc string, chunks ...string) {
				t.Helper()
				out, seen, err := runStream(t, tc, chunks...)
				if err != nil || out != whole || !reflect.DeepEqual(seen, wholeSeen) {
					t.Fatalf("%s: got %q, %v, err %v; want %q, %v", desc, out, seen, err, whole, wholeSeen)
				}
			}
			for _, s := range splits(tc.in) {
				check("split at "+itoa(len(s[0])), s...)
			}
			for i := 0; i <= len(tc.in); i++ {
				for j := i; j <= len(tc.in); j++ {
					check("split at "+itoa(i)+","+itoa(j), tc.in[:i], tc.in[i:j], tc.in[j:])
				}
			}
			check("bytewise", bytewise(tc.in)...)
		})
	}
}

func runStream(t *testing.T, tc streamCase, chunks ...string) (string, [][]field, error) {
	rc := &recorder{next: scramble}
	out, _, err := feed(t, tc.f, tc.ncols, tc.cols, rc.fn, chunks...)
	return out, rc.seen, err
}

// TestRoundTrip re-reads the rewritten stream: every transformed field must
// decode to what the transform returned, and untouched fields to what they
// were.
func TestRoundTrip(t *testing.T) {
	for _, tc := range streamCases {
		t.Run(tc.name, func(t *testing.T) {
			all := allCols(tc.ncols)
			orig := &recorder{}
			if _, _, err := feed(t, tc.f, tc.ncols, all, orig.fn, tc.in); err != nil {
				t.Fatal(err)
			}
			out, _, err := feed(t, tc.f, tc.ncols, tc.cols, (&recorder{next: scramble}).fn, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			back := &recorder{}
			if _, _, err := feed(t, tc.f, tc.ncols, all, back.fn, out); err != nil {
				t.Fatalf("re-read %q: %v", out, err)
			}
			want := make([][]field, len(orig.seen))
			for i, row := range orig.seen {
				want[i] = make([]field, len(row))
				for col, f := range row {
					want[i][col] = f
					if tc.cols[col] {
						want[i][col] = scramble(0, col, f)
					}
				}
			}
			if !reflect.DeepEqual(back.seen, want) {
				t.Errorf("re-read %v\nwant    %v", back.seen, want)
			}
		})
	}
}

// TestIdentity checks that an identity transform on every column reproduces
// the input byte for byte up to the end of the data.
func TestIdentity(t *testing.T) {
	for _, tc := range streamCases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := feed(t, tc.f, tc.ncols, allCols(tc.ncols), (&recorder{}).fn, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.in
			switch {
			case tc.f.Kind == Text && strings.Contains(tc.in, "\n\\.\n"):
				want = tc.in[:strings.Index(tc.in, "\n\\.\n")+4]
			case tc.f.Kind == CSV && strings.Contains(tc.in, "\n\\.\n"):
				want = tc.in[:strings.Index(tc.in, "\n\\.\n")+1]
			}
			if out != want {
				t.Errorf("got %q\nwant %q", out, want)
			}
		})
	}
}

func TestEmit(t *testing.T) {
	r, err := NewRewriter(Format{}, 2, onlyCol(2, 0), (&recorder{next: setAll(val("X"))}).fn)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	emit := func(b []byte) error { calls = append(calls, string(b)); return nil }
	steps := []struct {
		chunk string
		want  []string
		rows  int64
	}{
		{"a\tb", nil, 0},
		{"\nc\t", []string{"X\tb\n"}, 1},
		{"d\ne\tf\ng\th\n", []string{"X\tb\n", "X\td\nX\tf\nX\th\n"}, 4},
		{"", []string{"X\tb\n", "X\td\nX\tf\nX\th\n"}, 4},
		{"i\tj", []string{"X\tb\n", "X\td\nX\tf\nX\th\n"}, 4},
	}
	for i, s := range steps {
		if err := r.Write([]byte(s.chunk), emit); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(calls, s.want) || r.Rows() != s.rows {
			t.Fatalf("step %d: emits %q rows %d, want %q rows %d", i, calls, r.Rows(), s.want, s.rows)
		}
	}
	if err := r.Close(emit); err != nil {
		t.Fatal(err)
	}
	if last := calls[len(calls)-1]; last != "X\tj" || r.Rows() != 5 {
		t.Errorf("Close emitted %q rows %d", last, r.Rows())
	}
	if err := r.Write([]byte("x\n"), emit); !errors.Is(err, errClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

func TestEmitErrorIsSticky(t *testing.T) {
	r, err := NewRewriter(Format{}, 1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := r.Write([]byte("a\n"), func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if err := r.Write([]byte("b\n"), func([]byte) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("second Write: %v", err)
	}
	if err := r.Close(func([]byte) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("Close: %v", err)
	}
}

type codedError struct{ code string }

func (e codedError) Error() string    { return "key unavailable" }
func (e codedError) SQLState() string { return e.code }

func TestFieldError(t *testing.T) {
	tests := []struct {
		name  string
		f     Format
		in    string
		err   error
		state string
	}{
		{"text", Format{}, "a\tsecret\nb\tsecret\n", codedError{"58000"}, "58000"},
		{"csv", Format{Kind: CSV}, "a,secret\nb,secret\n", codedError{"22P02"}, "22P02"},
		{"binary", Format{Kind: Binary}, binFile([]field{val("a"), val("secret")}, []field{val("b"), val("secret")}), errors.New("plain"), "XX000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := func(row int64, col int, v []byte, null bool) ([]byte, bool, error) {
				if row == 2 {
					return nil, false, tt.err
				}
				return v, null, nil
			}
			_, _, err := feed(t, tt.f, 2, onlyCol(2, 1), fn, tt.in)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Row != 2 || fe.Col != 1 {
				t.Fatalf("got %#v, want FieldError row 2 col 1", err)
			}
			if !errors.Is(err, tt.err) || fe.SQLState() != tt.state {
				t.Errorf("unwrap %v, SQLState %q", errors.Unwrap(err), fe.SQLState())
			}
			if strings.Contains(err.Error(), "secret") || !strings.HasPrefix(err.Error(), "COPY row 2, column 2: ") {
				t.Errorf("message %q", err.Error())
			}
		})
	}
}

func TestBinaryErrors(t *testing.T) {
	header := binFile()[:19]
	hdr := func(flags uint32, ext int32) string {
		b := []byte(header[:11])
		b = binary.BigEndian.AppendUint32(b, flags)
		return string(binary.BigEndian.AppendUint32(b, uint32(ext)))
	}
	tuple := func(fs ...field) string { return string(binTuple(fs...)) }
	good := tuple(val("a"), val("b"))
	tests := []struct {
		name   string
		chunks []string
		row    int64
		msg    string
	}{
		{"bad signature", []string{"PGCOPY\n\377\r\n\x01"}, 0, "COPY header: COPY file signature not recognized"},
		{"bad signature early", []string{"PGX"}, 0, "COPY header: COPY file signature not recognized"},
		{"oids", []string{hdr(flagOIDs, 0)}, 0, "COPY header: invalid COPY file header (WITH OIDS)"},
		{"critical flag", []string{hdr(1<<17, 0)}, 0, "COPY header: unrecognized critical flags in COPY file header"},
		{"negative extension", []string{hdr(0, -1)}, 0, "COPY header: invalid COPY file header (negative extension length)"},
		{"empty stream", nil, 0, "COPY header: data ended inside the binary file header"},
		{"truncated header", []string{header[:15]}, 0, "COPY header: data ended inside the binary file header"},
		{"wrong field count", []string{header + good + tuple(val("a"))}, 2, "COPY row 2: expected 2 columns, got 1"},
		{"invalid field size", []string{header + good + "\x00\x02\xff\xff\xff\xfe"}, 2, "COPY row 2: column 1: invalid field size"},
		{"truncated tuple", []string{header + good + good[:7]}, 2, "COPY row 2: data ended inside a binary tuple"},
		{"truncated count", []string{header + good + "\x00"}, 2, "COPY row 2: data ended inside a binary tuple"},
		{"data after trailer", []string{header + good + "\xff\xff\x00"}, 2, "COPY row 2: received copy data after EOF marker"},
		{"data after trailer later", []string{header + "\xff\xff", good}, 1, "COPY row 1: received copy data after EOF marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := feed(t, Format{Kind: Binary}, 2, allCols(2), (&recorder{}).fn, tt.chunks...)
			e, ok := err.(*Error)
			if !ok || e.Row != tt.row || e.Error() != tt.msg {
				t.Fatalf("got %v, want row %d %q", err, tt.row, tt.msg)
			}
		})
	}
}

func TestMaxRowBytes(t *testing.T) {
	long := strings.Repeat("x", 100)
	bigField := binFile()[:19] + "\x00\x01" + "\x10\x00\x00\x00" // 256 MiB field, not yet sent
	tests := []struct {
		name   string
		f      Format
		chunks []string
		row    int64
	}{
		{"text complete row", Format{}, []string{"a\n" + long + "\n"}, 2},
		{"text partial row", Format{}, []string{"a\n", long}, 2},
		{"csv quoted row", Format{Kind: CSV}, []string{"\"" + long}, 1},
		{"binary field length", Format{Kind: Binary}, []string{bigField}, 1},
		{"binary header extension", Format{Kind: Binary}, []string{binFileExt(100)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRewriter(tt.f, 1, nil, nil, WithMaxRowBytes(64))
			if err != nil {
				t.Fatal(err)
			}
			emit := func([]byte) error { return nil }
			for _, c := range tt.chunks {
				if err = r.Write([]byte(c), emit); err != nil {
					break
				}
			}
			e, ok := err.(*Error)
			if !ok || e.Row != tt.row || !strings.Contains(e.Msg, "exceeds 64 bytes") {
				t.Fatalf("got %v, want row %d size error", err, tt.row)
			}
		})
	}
	r, err := NewRewriter(Format{}, 1, nil, nil, WithMaxRowBytes(0))
	if err != nil || r.maxRow != DefaultMaxRowBytes {
		t.Errorf("WithMaxRowBytes(0): %v, %d", err, r.maxRow)
	}
}

func TestWrongColumnCountRows(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		in   string
		msg  string
	}{
		{"text too few", Format{}, "a\tb\tc\nd\te\tf\ng\th\n", "COPY row 3: expected 3 columns, got 2"},
		{"text too many", Format{}, "a\tb\tc\nd\te\tf\tg\tx\n", "COPY row 2: expected 3 columns, got 5"},
		{"text last line", Format{}, "a\tb\tc\nd", "COPY row 2: expected 3 columns, got 1"},
		{"csv", Format{Kind: CSV, Header: true}, "h\n1,2,3\n\"4\n\",5,6,7\n", "COPY row 2: expected 3 columns, got 4"},
		{"binary", Format{Kind: Binary}, binFile([]field{val("1"), val("2"), val("3")}, []field{val("1")}), "COPY row 2: expected 3 columns, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := feed(t, tt.f, 3, allCols(3), (&recorder{}).fn, tt.in)
			if err == nil || err.Error() != tt.msg {
				t.Fatalf("got %v, want %q", err, tt.msg)
			}
		})
	}
}

func TestZeroColumns(t *testing.T) {
	out, _, err := feed(t, Format{}, 0, nil, nil, "\n\n")
	if err != nil || out != "\n\n" {
		t.Errorf("empty lines: %q, %v", out, err)
	}
	if _, _, err := feed(t, Format{Kind: CSV}, 0, nil, nil, "\nx\n"); err == nil || err.Error() != "COPY row 2: extra data after last expected column" {
		t.Errorf("data in zero-column row: %v", err)
	}
}

func TestNewRewriterValidation(t *testing.T) {
	id := (&recorder{}).fn
	tests := []struct {
		name  string
		f     Format
		ncols int
		cols  []bool
		fn    FieldFunc
	}{
		{"unknown kind", Format{Kind: 9}, 1, nil, id},
		{"negative columns", Format{}, -1, nil, id},
		{"too many flags", Format{}, 1, allCols(2), id},
		{"no transform", Format{}, 1, allCols(1), nil},
		{"binary delimiter", Format{Kind: Binary, Delimiter: ','}, 1, nil, id},
		{"binary header", Format{Kind: Binary, Header: true}, 1, nil, id},
		{"binary null", Format{Kind: Binary, NullSet: true}, 1, nil, id},
		{"newline delimiter", Format{Delimiter: '\n'}, 1, nil, id},
		{"cr in null", Format{Null: "a\rb"}, 1, nil, id},
		{"delimiter in null", Format{Null: "a\tb"}, 1, nil, id},
		{"text backslash delimiter", Format{Delimiter: '\\'}, 1, nil, id},
		{"text letter delimiter", Format{Delimiter: 'n'}, 1, nil, id},
		{"text digit delimiter", Format{Delimiter: '7'}, 1, nil, id},
		{"text period delimiter", Format{Delimiter: '.'}, 1, nil, id},
		{"text quote", Format{Quote: '\''}, 1, nil, id},
		{"csv delimiter is quote", Format{Kind: CSV, Delimiter: '"'}, 1, nil, id},
		{"csv quote in null", Format{Kind: CSV, Null: `"N"`}, 1, nil, id},
		{"text null ending in backslash", Format{Null: `a\`}, 1, nil, id},
		{"text null holding marker", Format{Null: `x\.`}, 1, nil, id},
		{"text null swallowing delimiter", Format{Delimiter: 'A', Null: `\x4`}, 1, nil, id},
		{"csv one column null marker", Format{Kind: CSV, Null: `\.`}, 1, nil, id},
		{"csv newline quote", Format{Kind: CSV, Quote: '\n'}, 1, nil, id},
		{"csv cr escape", Format{Kind: CSV, Escape: '\r'}, 1, nil, id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRewriter(tt.f, tt.ncols, tt.cols, tt.fn); err == nil {
				t.Error("accepted")
			}
		})
	}
	ok := []Format{{}, {Delimiter: 'A'}, {Null: `\\.`}, {Kind: CSV, Null: `\.`}, {Kind: CSV, Delimiter: '\\'}, {Kind: CSV, Quote: '\'', Escape: '\\', Null: "NULL", Header: true}, {Kind: Binary}}
	for _, f := range ok {
		if _, err := NewRewriter(f, 2, []bool{true}, id); err != nil {
			t.Errorf("%+v rejected: %v", f, err)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Text: "text", CSV: "csv", Binary: "binary", 7: "Kind(7)"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}

// WithByteaOutput writes what a transform returning the bytea hex literal
// wrote before: byte for byte in text (the hex goes straight into the
// output, escaped) and CSV, the raw bytes in binary. The NULL marker that
// equals a written value still gets the octal way out.
func TestByteaOutputMatchesHexLiteral(t *testing.T) {
	ct := func(v []byte) []byte { return append([]byte{0, '\\', '\t', 'x', ',', '"'}, v...) }
	asBytea := func(_ int64, _ int, v []byte, null bool) ([]byte, bool, error) {
		if null {
			return nil, true, nil
		}
		return ct(v), false, nil
	}
	asLiteral := func(_ int64, _ int, v []byte, null bool) ([]byte, bool, error) {
		if null {
			return nil, true, nil
		}
		return hex.AppendEncode([]byte(`\x`), ct(v)), false, nil
	}
	formats := []Format{
		{}, {Delimiter: '|'}, {Delimiter: 'X'}, {Null: "NULL"}, {NullSet: true},
		{Null: `\\x0061`}, // the written form of the value "a"
		{Kind: CSV}, {Kind: CSV, Delimiter: 'x'}, {Kind: CSV, Delimiter: 'a'}, {Kind: CSV, Delimiter: '5'},
		{Kind: CSV, Null: `\x005c097822`}, // the literal of "" in CSV
	}
	for _, f := range formats {
		d := f.Delimiter
		if d == 0 {
			d = '\t'
			if f.Kind == CSV {
				d = ','
			}
		}
		var in string
		if f.Kind == CSV {
			in = `1` + string(d) + `""` + string(d) + "z\n2" + string(d) + `"q"` + string(d) + "\n"
		} else {
			in = "1" + string(d) + "a" + string(d) + "\\N\n2" + string(d) + "" + string(d) + "b\\\\c\n"
		}
		cols := []bool{false, true, true}
		r, err := NewRewriter(f, 3, cols, asBytea, WithByteaOutput())
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		var got []byte
		emit := func(b []byte) error { got = append(got, b...); return nil }
		if err := r.Write([]byte(in), emit); err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if err := r.Close(emit); err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		want, _, err := feed(t, f, 3, cols, asLiteral, in)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if string(got) != want {
			t.Errorf("%+v: bytea output %q, hex literal %q", f, got, want)
		}
	}
	// The octal way out was taken where the NULL marker is a written value.
	out, _, err := feed(t, Format{Null: `\\x0061`}, 1, allCols(1), func(_ int64, _ int, v []byte, _ bool) ([]byte, bool, error) {
		return v, false, nil
	}, "a\n")
	if err != nil || out != "a\n" {
		t.Fatalf("identity: %q, %v", out, err)
	}
	r, _ := NewRewriter(Format{Null: `\\x0061`}, 1, allCols(1), func(_ int64, _ int, v []byte, _ bool) ([]byte, bool, error) {
		return []byte{0, 'a'}, false, nil
	}, WithByteaOutput())
	var got []byte
	emit := func(b []byte) error { got = append(got, b...); return nil }
	if err := r.Write([]byte("a\n"), emit); err != nil {
		t.Fatal(err)
	}
	if string(got) != `\134x0061`+"\n" {
		t.Fatalf("NULL-marker collision written as %q", got)
	}
	// Binary: the bytes themselves, and an unchanged value keeps its bytes.
	bin := binFile([]field{val("v")})
	r, _ = NewRewriter(Format{Kind: Binary}, 1, allCols(1), asBytea, WithByteaOutput())
	got = nil
	if err := r.Write([]byte(bin), emit); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(emit); err != nil {
		t.Fatal(err)
	}
	if want := binFile([]field{val(string(ct([]byte("v"))))}); string(got) != want {
		t.Fatalf("binary: %q, want %q", got, want)
	}
}
