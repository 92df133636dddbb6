package keymap

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// TestCandidates: a deterministic value's candidates are its ciphertexts
// under every enabled key version, the primary's first; each is what
// Encrypt gave while that version was primary.
func TestCandidates(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCreate(t, s, "d", policy.Deterministic)
	r := rule("t", "c", "d", policy.Deterministic)
	// Ciphertexts of "x" under versions 1, 2 and 3, each taken when the
	// version was primary.
	var byVersion [][]byte
	for v := 0; v < 3; v++ {
		if v > 0 {
			if err := s.Rotate(ctx, "d"); err != nil {
				t.Fatal(err)
			}
		}
		byVersion = append(byVersion, seal(t, cipherFrom(t, s, r), "x"))
	}
	h, err := s.Load(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	disabled := keyset.NewManagerFromHandle(h)
	id1, _ := KeyID(byVersion[0])
	if err := disabled.Disable(id1); err != nil {
		t.Fatal(err)
	}
	withDisabled, err := disabled.Handle()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		h    *keyset.Handle
		want [][]byte
	}{
		{"every version, primary first", h, [][]byte{byVersion[2], byVersion[0], byVersion[1]}},
		{"a disabled version is left out", withDisabled, [][]byte{byVersion[2], byVersion[1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewColumnCipher(tc.h, r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Candidates([]byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) || c.Versions() != len(tc.want) {
				t.Fatalf("%d candidates (Versions %d), want %d", len(got), c.Versions(), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Errorf("candidate %d differs from the version's ciphertext", i)
				}
				if pt, err := c.Decrypt(got[i]); err != nil || string(pt) != "x" {
					t.Errorf("candidate %d: Decrypt = %q, %v", i, pt, err)
				}
			}
			if enc := seal(t, c, "x"); !bytes.Equal(enc, got[0]) {
				t.Error("the first candidate is not what Encrypt stores")
			}
			other, _ := c.Candidates([]byte("y"))
			for i := range other {
				if bytes.Equal(other[i], got[i]) {
					t.Error("candidates of different values are equal")
				}
			}
		})
	}
}

func TestCandidatesRandomized(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "r", policy.Randomized)
	c := cipherFrom(t, s, rule("t", "c", "r", policy.Randomized))
	if _, err := c.Candidates([]byte("x")); !errors.Is(err, ErrNotDeterministic) {
		t.Errorf("Candidates on a randomized key: %v, want ErrNotDeterministic", err)
	}
	if c.Versions() != 1 {
		t.Errorf("Versions = %d", c.Versions())
	}
}

// TestKeyringCandidatesAfterRotation: the keyring's cipher sees the new
// version after Invalidate, and keeps matching values of the old one.
func TestKeyringCandidatesAfterRotation(t *testing.T) {
	k, fs, _ := newTestKeyring(t)
	r := rule("t", "c", "d", policy.Deterministic)
	old := seal(t, mustCipher(t, k, r), "v")
	if got, _ := mustCipher(t, k, r).Candidates([]byte("v")); len(got) != 1 || !bytes.Equal(got[0], old) {
		t.Fatalf("before rotation: %d candidates", len(got))
	}
	if err := fs.Rotate(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	k.Invalidate("d")
	c := mustCipher(t, k, r)
	got, err := c.Candidates([]byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], seal(t, c, "v")) || !bytes.Equal(got[1], old) {
		t.Errorf("after rotation: %d candidates, want the new version's then the old one's", len(got))
	}
}

func BenchmarkCandidates(b *testing.B) {
	ctx := context.Background()
	s, _, err := NewLocalStoreInDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Create(ctx, "d", policy.Deterministic); err != nil {
		b.Fatal(err)
	}
	for range 2 {
		if err := s.Rotate(ctx, "d"); err != nil {
			b.Fatal(err)
		}
	}
	h, err := s.Load(ctx, "d")
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewColumnCipher(h, rule("t", "c", "d", policy.Deterministic))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Candidates([]byte("123-45-6789")); err != nil {
			b.Fatal(err)
		}
	}
}
