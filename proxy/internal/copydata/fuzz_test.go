package copydata

import (
	"bytes"
	"reflect"
	"testing"
)

// fuzzFormat picks a format and options from the bits of opts.
func fuzzFormat(opts uint8) Format {
	f := Format{Kind: Kind(opts % 3)}
	if f.Kind == Binary {
		return f
	}
	f.Header = opts&0x04 != 0
	if opts&0x08 != 0 {
		f.NullSet = true // "" for text
		if f.Kind == CSV {
			f.Null = `\N`
		}
	}
	if f.Kind == CSV && opts&0x10 != 0 {
		f.Escape = '\\'
	}
	if opts&0x20 != 0 {
		f.Delimiter = '|'
	}
	return f
}

func FuzzRewriter(f *testing.F) {
	for _, tc := range streamCases {
		var opts uint8
		switch tc.f.Kind {
		case CSV:
			opts = 1
		case Binary:
			opts = 2
		}
		if tc.f.Header {
			opts |= 0x04
		}
		f.Add(opts, uint8(tc.ncols), []byte(tc.in), uint16(len(tc.in)/3), uint16(len(tc.in)/2))
	}
	f.Add(uint8(0), uint8(2), []byte("a\tb\r\nc\\\rd\te\r\n\\.\r\n"), uint16(5), uint16(9))
	f.Add(uint8(1), uint8(2), []byte("\"a\"\"\r\n\",b\r\n\\.\r\nx"), uint16(3), uint16(4))
	f.Add(uint8(0x29), uint8(1), []byte("x|\ny\n"), uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, opts, ncols uint8, data []byte, cut1, cut2 uint16) {
		format := fuzzFormat(opts)
		n := int(ncols%4) + 1
		a, b := int(cut1)%(len(data)+1), int(cut2)%(len(data)+1)
		if a > b {
			a, b = b, a
		}
		chunks := [][]byte{data[:a], data[a:b], data[b:]}

		// Identity: chunking must not matter, and the output must be the
		// input up to the end of the data.
		whole, wholeSeen, ended, err := fuzzRun(t, format, n, nil, data)
		split, splitSeen, _, splitErr := fuzzRun(t, format, n, nil, chunks...)
		if errString(err) != errString(splitErr) || !reflect.DeepEqual(wholeSeen, splitSeen) {
			t.Fatalf("chunking changed the result: %v %v vs %v %v", wholeSeen, err, splitSeen, splitErr)
		}
		if err != nil {
			return // output before an error is not comparable: Write emits per call
		}
		if !bytes.Equal(whole, split) {
			t.Fatalf("chunking changed the output: %q vs %q", whole, split)
		}
		if !bytes.HasPrefix(data, whole) || !ended && !bytes.Equal(whole, data) {
			t.Fatalf("identity output %q for input %q", whole, data)
		}

		// Re-encoding: chunking must not matter, and the output must read
		// back as the transformed values.
		out, _, _, err := fuzzRun(t, format, n, scramble, data)
		if err != nil {
			t.Fatalf("scramble failed where identity did not: %v", err)
		}
		outSplit, _, _, err := fuzzRun(t, format, n, scramble, chunks...)
		if err != nil || !bytes.Equal(out, outSplit) {
			t.Fatalf("chunking changed the rewrite: %q vs %q (%v)", out, outSplit, err)
		}
		_, back, _, err := fuzzRun(t, format, n, nil, out)
		if err != nil {
			t.Fatalf("re-reading %q: %v", out, err)
		}
		var want [][]field
		for _, row := range wholeSeen {
			var w []field
			for col, v := range row {
				w = append(w, scramble(0, col, v))
			}
			want = append(want, w)
		}
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("re-read %v, want %v", back, want)
		}
	})
}

func fuzzRun(t *testing.T, f Format, ncols int, next func(int64, int, field) field, chunks ...[]byte) ([]byte, [][]field, bool, error) {
	rc := &recorder{next: next}
	r, err := NewRewriter(f, ncols, allCols(ncols), rc.fn)
	if err != nil {
		t.Fatalf("NewRewriter: %v", err)
	}
	var out []byte
	emit := func(b []byte) error { out = append(out, b...); return nil }
	for _, c := range chunks {
		if err := r.Write(c, emit); err != nil {
			return out, rc.seen, r.ended, err
		}
	}
	err = r.Close(emit)
	return out, rc.seen, r.ended, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
