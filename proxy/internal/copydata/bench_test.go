package copydata

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

const benchRows = 10000

// benchTransform stands in for encryption: it returns a longer value built
// in a reused buffer, as a bytea hex literal would be.
func benchTransform() FieldFunc {
	var buf []byte
	return func(_ int64, _ int, v []byte, null bool) ([]byte, bool, error) {
		if null {
			return nil, true, nil
		}
		buf = append(buf[:0], `\x`...)
		buf = hex.AppendEncode(buf, v)
		return buf, false, nil
	}
}

func benchInput(kind Kind) string {
	var b strings.Builder
	rows := make([][]field, 0, benchRows)
	for i := range benchRows {
		rows = append(rows, []field{
			val(fmt.Sprint(100000 + i)),
			val(fmt.Sprintf("Patient %d, \"Jr\"", i)),
			val(fmt.Sprintf("%03d-%02d-%04d", i%1000, i%100, i)),
			val("2024-01-01\tnote"),
		})
	}
	switch kind {
	case Binary:
		return binFile(rows...)
	case CSV:
		for _, r := range rows {
			fmt.Fprintf(&b, "%s,\"Patient %s\",%s,%s\n", r[0].v, strings.ReplaceAll(r[1].v[8:], `"`, `""`), r[2].v, strings.ReplaceAll(r[3].v, "\t", " "))
		}
	default:
		for _, r := range rows {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", r[0].v, r[1].v, r[2].v, strings.ReplaceAll(r[3].v, "\t", `\t`))
		}
	}
	return b.String()
}

func benchRewrite(b *testing.B, kind Kind) {
	in := []byte(benchInput(kind))
	cols := onlyCol(4, 2)
	emit := func([]byte) error { return nil }
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewRewriter(Format{Kind: kind}, 4, cols, benchTransform())
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(in); off += 65536 {
			if err := r.Write(in[off:min(off+65536, len(in))], emit); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Close(emit); err != nil || r.Rows() != benchRows {
			b.Fatal(err, r.Rows())
		}
	}
}

func BenchmarkRewriteText(b *testing.B)   { benchRewrite(b, Text) }
func BenchmarkRewriteCSV(b *testing.B)    { benchRewrite(b, CSV) }
func BenchmarkRewriteBinary(b *testing.B) { benchRewrite(b, Binary) }

// BenchmarkAppendEscaped escapes what COPY FROM sends for an encrypted
// column: a bytea hex literal of a 64-byte ciphertext.
func BenchmarkAppendEscaped(b *testing.B) {
	v := hex.AppendEncode([]byte(`\x`), []byte(strings.Repeat("ciphertext-bytes", 4)))
	dst := make([]byte, 0, 2*len(v))
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		dst = appendEscaped(dst[:0], v, '\t')
	}
}
