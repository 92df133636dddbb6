package copydata

import (
	"reflect"
	"strings"
	"testing"
)

func TestBinary(t *testing.T) {
	bin := Format{Kind: Binary}
	withExt := binFileExt(3, []field{val("a"), val("b")})
	tests := []struct {
		name     string
		in       string
		to       *field // new value of column 1, nil for identity
		wantSeen [][]field
		want     string
	}{
		{
			name:     "identity",
			in:       binFile([]field{val("a"), val("b")}, []field{null, val("")}),
			wantSeen: [][]field{{val("a"), val("b")}, {null, val("")}},
			want:     binFile([]field{val("a"), val("b")}, []field{null, val("")}),
		},
		{
			name:     "header extension and flags passed through",
			in:       withExt,
			wantSeen: [][]field{{val("a"), val("b")}},
			want:     withExt,
		},
		{
			name:     "longer value",
			in:       binFile([]field{val("a"), val("b")}, []field{val("c"), null}),
			to:       &field{v: "ciphertext\x00\xff"},
			wantSeen: [][]field{{val("a"), val("b")}, {val("c"), null}},
			want:     binFile([]field{val("a"), val("ciphertext\x00\xff")}, []field{val("c"), val("ciphertext\x00\xff")}),
		},
		{
			name:     "to null",
			in:       binFile([]field{val("a"), val("b")}),
			to:       &null,
			wantSeen: [][]field{{val("a"), val("b")}},
			want:     binFile([]field{val("a"), null}),
		},
		{
			name:     "no trailer is accepted at a tuple boundary",
			in:       strings.TrimSuffix(binFile([]field{val("a"), val("b")}), "\xff\xff"),
			wantSeen: [][]field{{val("a"), val("b")}},
			want:     strings.TrimSuffix(binFile([]field{val("a"), val("b")}), "\xff\xff"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{}
			cols := allCols(2)
			if tt.to != nil {
				to := *tt.to
				rc.next = func(_ int64, col int, in field) field {
					if col == 1 {
						return to
					}
					return in
				}
			}
			out, _, err := feed(t, bin, 2, cols, rc.fn, tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(rc.seen, tt.wantSeen) {
				t.Errorf("decoded %v, want %v", rc.seen, tt.wantSeen)
			}
			if out != tt.want {
				t.Errorf("got %q, want %q", out, tt.want)
			}
		})
	}
}
