package copydata

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestTextDecode(t *testing.T) {
	tests := []struct {
		name  string
		f     Format
		ncols int
		in    string
		want  [][]field
	}{
		{"plain", Format{}, 2, "a\tb\nc\td\n", [][]field{{val("a"), val("b")}, {val("c"), val("d")}}},
		{"default null", Format{}, 2, "\\N\t\n", [][]field{{null, val("")}}},
		{"escaped null is data", Format{}, 1, "\\\\N\n", [][]field{{val(`\N`)}}},
		{"null compared before unescaping", Format{Null: `\x41`}, 2, "\\x41\tA\n", [][]field{{null, val("A")}}},
		{"custom null", Format{Null: "NULL"}, 3, "NULL\t\\N\tnull\n", [][]field{{null, val("N"), val("null")}}},
		{"empty null", Format{NullSet: true}, 2, "\tx\n", [][]field{{null, val("x")}}},
		{"letter escapes", Format{}, 1, `\b\f\n\r\t\v` + "\n", [][]field{{val("\b\f\n\r\t\v")}}},
		{"octal 1-3 digits", Format{}, 1, `\1\12\101\1011` + "\n", [][]field{{val("\x01\nAA1")}}},
		{"octal wraps", Format{}, 1, `\777` + "\n", [][]field{{val("\xff")}}},
		{"octal stops at 8", Format{}, 1, `\18` + "\n", [][]field{{val("\x018")}}},
		{"hex 1-2 digits", Format{}, 1, `\x4\x41\x414\xfF` + "\n", [][]field{{val("\x04AA4\xff")}}},
		{"hex without digits", Format{}, 1, `\xg` + "\n", [][]field{{val("xg")}}},
		{"other char literal", Format{}, 1, `\q\\\,x` + "\n", [][]field{{val(`q\,x`)}}},
		{"escaped delimiter", Format{}, 2, "a\\\tb\tc\n", [][]field{{val("a\tb"), val("c")}}},
		{"escaped newline", Format{}, 2, "a\\\nb\tc\n", [][]field{{val("a\nb"), val("c")}}},
		{"pipe delimiter", Format{Delimiter: '|'}, 3, "a|b\\|c|\\N\n", [][]field{{val("a"), val("b|c"), null}}},
		{"hex digit delimiter swallowed by escape", Format{Delimiter: 'A'}, 2, `\x4AbAc` + "\n", [][]field{{val("Jb"), val("c")}}},
		{"empty line is one empty field", Format{}, 1, "\n", [][]field{{val("")}}},
		{"last line without newline", Format{}, 2, "a\tb\nc\td", [][]field{{val("a"), val("b")}, {val("c"), val("d")}}},
		{"trailing lone backslash dropped", Format{}, 1, `ab\`, [][]field{{val("ab")}}},
		{"trailing backslash then null", Format{}, 1, `\N\`, [][]field{{null}}},
		{"header skipped", Format{Header: true}, 1, "h\\x\nv\n", [][]field{{val("v")}}},
		{"high bytes", Format{}, 1, "h\xc3\xa9\\351\n", [][]field{{val("h\xc3\xa9\xe9")}}},
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

func TestTextEncode(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		in   string
		to   field // new value of column 1 of 3
		want string
	}{
		{"plain", Format{}, "a\tb\tc\n", val("xyz"), "a\txyz\tc\n"},
		{"to null", Format{}, "a\tb\tc\n", null, "a\t\\N\tc\n"},
		{"from null", Format{}, "a\t\\N\tc\n", val("v"), "a\tv\tc\n"},
		{"custom null out", Format{Null: "NIL"}, "a\tb\tc\n", null, "a\tNIL\tc\n"},
		{"control escapes", Format{}, "a\tb\tc\n", val("\b\f\n\r\t\v\x01\x7f"), "a\t\\b\\f\\n\\r\\t\\v\x01\x7f\tc\n"},
		{"backslash", Format{}, "a\tb\tc\n", val(`a\b`), "a\ta\\\\b\tc\n"},
		{"custom delimiter escaped", Format{Delimiter: ','}, "a,b,c\n", val("x,y\tz"), "a,x\\,y\\tz,c\n"},
		{"control delimiter escaped raw", Format{Delimiter: 0x01}, "a\x01b\x01c\n", val("x\x01y"), "a\x01x\\\x01y\x01c\n"},
		{"value spelling the null marker", Format{Null: "abc"}, "a\tb\tc\n", val("abc"), "a\t\\141bc\tc\n"},
		{"value spelling the null marker after escaping", Format{Null: `x\\y`}, "a\tb\tc\n", val(`x\y`), "a\t\\170\\\\y\tc\n"},
		{"octal escape of a high byte", Format{Null: "\xe9"}, "a\tb\tc\n", val("\xe9"), "a\t\\351\tc\n"},
		{"crlf kept", Format{}, "a\tb\tc\r\nd\te\tf\r\n", val("z"), "a\tz\tc\r\nd\tz\tf\r\n"},
		{"cr kept", Format{}, "a\tb\tc\rd\te\tf\r", val("z"), "a\tz\tc\rd\tz\tf\r"},
		{"untouched escapes kept", Format{}, "\\x41\tb\t\\101\n", val("z"), "\\x41\tz\t\\101\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{next: setAll(tt.to)}
			out, _, err := feed(t, tt.f, 3, onlyCol(3, 1), rc.fn, tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if out != tt.want {
				t.Errorf("got %q, want %q", out, tt.want)
			}
			// The output must read back as the value we wrote.
			back := &recorder{}
			if _, _, err := feed(t, tt.f, 3, onlyCol(3, 1), back.fn, out); err != nil {
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

func TestTextEmptyValueWithEmptyNullFails(t *testing.T) {
	rc := &recorder{next: setAll(val(""))}
	_, _, err := feed(t, Format{NullSet: true}, 2, onlyCol(2, 1), rc.fn, "a\tb\n")
	e, ok := err.(*Error)
	if !ok || e.Row != 1 {
		t.Fatalf("got %v, want *Error for row 1", err)
	}
}

func TestTextFieldEnd(t *testing.T) {
	tests := []struct {
		line         string
		start        int
		end, rawEnd  int
		more         bool
		delimiterArg byte
	}{
		{"ab\tc", 0, 2, 2, true, '\t'},
		{"ab\tc", 3, 4, 4, false, '\t'},
		{"a\\\tb", 0, 4, 4, false, '\t'},
		{`a\`, 0, 2, 1, false, '\t'},
		{`\101A`, 0, 4, 4, true, 'A'},
		{`\x4AA`, 0, 4, 4, true, 'A'},
		{"", 0, 0, 0, false, '\t'},
	}
	for _, tt := range tests {
		end, rawEnd, more := textFieldEnd([]byte(tt.line), tt.start, tt.delimiterArg)
		if end != tt.end || rawEnd != tt.rawEnd || more != tt.more {
			t.Errorf("textFieldEnd(%q, %d) = %d, %d, %v; want %d, %d, %v",
				tt.line, tt.start, end, rawEnd, more, tt.end, tt.rawEnd, tt.more)
		}
	}
}

func TestTextLastLineToEmptyNull(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb", "\n\n"},
		{"a\rb", "\r\r"},
		{"b", "\n"},
	}
	for _, tt := range tests {
		rc := &recorder{next: setAll(null)}
		out, _, err := feed(t, Format{NullSet: true}, 1, allCols(1), rc.fn, tt.in)
		if err != nil || out != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.in, out, err, tt.want)
		}
	}
}

// escapeBytewise is appendEscaped one byte at a time, the reference the
// word-at-a-time scan must agree with.
func escapeBytewise(v []byte, delim byte) []byte {
	var out []byte
	for _, c := range v {
		var esc byte
		if c < 0x20 {
			esc = controlEscape(c)
		}
		if esc == 0 && (c == '\\' || c == delim) {
			esc = c
		}
		if esc == 0 {
			out = append(out, c)
			continue
		}
		out = append(out, '\\', esc)
	}
	return out
}

// TestAppendEscapedWordScan checks the eight-bytes-at-a-time scan against
// the bytewise reference: every byte value at every position of values
// around the word size, with several delimiters (tab, a printable one, a
// high byte), so no byte that needs escaping is skipped.
func TestAppendEscapedWordScan(t *testing.T) {
	for _, delim := range []byte{'\t', '|', ',', 0x7f, 0xfe} {
		for n := 0; n <= 25; n++ {
			for pos := 0; pos < max(n, 1); pos++ {
				for c := 0; c < 256; c++ {
					v := bytes.Repeat([]byte{'a'}, n)
					if n > 0 {
						v[pos] = byte(c)
					}
					want := escapeBytewise(v, delim)
					got := appendEscaped([]byte("pre"), v, delim)
					if !bytes.Equal(got[3:], want) || string(got[:3]) != "pre" {
						t.Fatalf("delim %q, %d bytes, 0x%02x at %d: got %q, want %q", delim, n, c, pos, got[3:], want)
					}
				}
			}
		}
	}
	// Several special bytes in one word, and at word boundaries.
	v := []byte("\\\t\n\r\b\f\v|\x00\x07abcdefgh\\|ijklmno\n")
	for _, delim := range []byte{'\t', '|'} {
		if got, want := appendEscaped(nil, v, delim), escapeBytewise(v, delim); !bytes.Equal(got, want) {
			t.Fatalf("delim %q: got %q, want %q", delim, got, want)
		}
	}
}

// TestTextFieldUnescapedInPlace checks that a field without a backslash is
// handed to the transform as it stands (no copy), and one with a backslash
// de-escaped, both producing the same output as before.
func TestTextFieldUnescapedInPlace(t *testing.T) {
	var seen []string
	fn := func(_ int64, _ int, v []byte, null bool) ([]byte, bool, error) {
		seen = append(seen, string(v))
		// Appending to v must not touch the line it came from.
		return append([]byte("<"), append(v, '>', '>', '>')...), false, nil
	}
	out, _, err := feed(t, Format{}, 2, allCols(2), fn, "plain\ta\\tb\n", "x\\\\y\t\\N\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "<plain>>>\t<a\\tb>>>\n<x\\\\y>>>\t<>>>\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if want := []string{"plain", "a\tb", `x\y`}; !reflect.DeepEqual(seen[:3], want) {
		t.Fatalf("transform saw %q, want %q", seen, want)
	}
}

// textFieldEndSearching is textFieldEnd searching for the delimiter again
// after every escape, as it did before it kept the delimiter found.
func textFieldEndSearching(line []byte, start int, delim byte) (end, rawEnd int, more bool) {
	i := start
	for {
		seg := line[i:]
		k := bytes.IndexByte(seg, delim)
		if k >= 0 {
			seg = seg[:k]
		}
		b := bytes.IndexByte(seg, '\\')
		if b < 0 {
			if k < 0 {
				return len(line), len(line), false
			}
			return i + k, i + k, true
		}
		i += b
		if i+1 >= len(line) {
			return len(line), i, false
		}
		i = escapeEnd(line, i+1)
	}
}

// Keeping the delimiter found across escapes splits every line as
// searching again does: random lines of backslashes, delimiters (among
// them ones an octal or hex escape swallows), escape letters and digits.
func TestTextFieldEndKeepsDelimiter(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, delim := range []byte{'\t', '|', 'A', 'F', ','} {
		alphabet := []byte{'\\', '\\', delim, delim, 'x', '0', '7', '8', 'a', 'A', 'f', 'n', 'N', 'z'}
		for range 20000 {
			line := make([]byte, rng.IntN(24))
			for i := range line {
				line[i] = alphabet[rng.IntN(len(alphabet))]
			}
			for start := 0; start <= len(line); start++ {
				e1, r1, m1 := textFieldEnd(line, start, delim)
				e2, r2, m2 := textFieldEndSearching(line, start, delim)
				if e1 != e2 || r1 != r2 || m1 != m2 {
					t.Fatalf("%q from %d, delimiter %q: %d %d %v, want %d %d %v", line, start, delim, e1, r1, m1, e2, r2, m2)
				}
			}
		}
	}
}
