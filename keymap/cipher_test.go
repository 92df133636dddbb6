package keymap

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

func cipherFrom(t testing.TB, s Store, rule *policy.ColumnRule) *ColumnCipher {
	t.Helper()
	h, err := s.Load(context.Background(), rule.KeyName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewColumnCipher(h, rule)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seal(t *testing.T, c *ColumnCipher, pt string) []byte {
	t.Helper()
	ct, err := c.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func encryptWith(t *testing.T, s Store, rule *policy.ColumnRule, pt string) []byte {
	t.Helper()
	ct, err := cipherFrom(t, s, rule).Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func rule(table, column, key string, kind policy.KeyKind) *policy.ColumnRule {
	return &policy.ColumnRule{Schema: "public", Table: table, Column: column, KeyName: key, Kind: kind, Type: policy.TypeText}
}

func TestColumnCipherRoundTrip(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "r", policy.Randomized)
	mustCreate(t, s, "d", policy.Deterministic)
	for _, r := range []*policy.ColumnRule{rule("t", "c", "r", policy.Randomized), rule("t", "c", "d", policy.Deterministic)} {
		c := cipherFrom(t, s, r)
		if c.Rule() != r {
			t.Errorf("Rule() = %p, want %p", c.Rule(), r)
		}
		for _, pt := range []string{"", "x", "héllo ☃", strings.Repeat("z", 100_000)} {
			ct, err := c.Encrypt([]byte(pt))
			if err != nil {
				t.Fatal(err)
			}
			if !IsCiphertext(ct) || bytes.Contains(ct, []byte("héllo")) {
				t.Fatalf("%s: stored value %x is not an opaque ciphertext", r.Kind, ct[:min(len(ct), 32)])
			}
			got, err := c.Decrypt(ct)
			if err != nil || string(got) != pt {
				t.Fatalf("%s: Decrypt = %q, %v; want %q", r.Kind, got, err, pt)
			}
		}
	}
}

func TestDeterministicEquality(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "ssn", policy.Deterministic)
	mustCreate(t, s, "rand", policy.Randomized)
	patients := cipherFrom(t, s, rule("patients", "ssn", "ssn", policy.Deterministic))
	billing := cipherFrom(t, s, rule("billing", "patient_ssn", "ssn", policy.Deterministic))
	random := cipherFrom(t, s, rule("patients", "ssn", "rand", policy.Randomized))

	a := seal(t, patients, "123-45-6789")
	b := seal(t, patients, "123-45-6789")
	other := seal(t, patients, "123-45-6780")
	if !bytes.Equal(a, b) || bytes.Equal(a, other) {
		t.Fatal("deterministic: equal plaintexts must give equal ciphertexts, different ones different")
	}
	fromBilling := seal(t, billing, "123-45-6789")
	if !bytes.Equal(a, fromBilling) {
		t.Error("two columns sharing a deterministic key must encrypt alike (joinable)")
	}
	if pt, err := billing.Decrypt(a); err != nil || string(pt) != "123-45-6789" {
		t.Errorf("billing cannot decrypt patients' value: %q, %v", pt, err)
	}

	r1 := seal(t, random, "123-45-6789")
	r2 := seal(t, random, "123-45-6789")
	if bytes.Equal(r1, r2) {
		t.Error("randomized: equal plaintexts gave equal ciphertexts")
	}
}

func TestDecryptRefuses(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "k", policy.Randomized)
	mustCreate(t, s, "other", policy.Randomized)
	mustCreate(t, s, "d", policy.Deterministic)
	diagnosis := cipherFrom(t, s, rule("patients", "diagnosis", "k", policy.Randomized))
	notes := cipherFrom(t, s, rule("patients", "notes", "k", policy.Randomized))
	otherKey := cipherFrom(t, s, rule("patients", "diagnosis", "other", policy.Randomized))
	det := cipherFrom(t, s, rule("patients", "diagnosis", "d", policy.Deterministic))

	const secret = "SECRET diagnosis 4111111111111111"
	ct := seal(t, diagnosis, secret)
	flip := func(i int) []byte {
		b := bytes.Clone(ct)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		c      *ColumnCipher
		stored []byte
	}{
		{"copied to another column", notes, ct},
		{"other key", otherKey, ct},
		{"deterministic cipher, randomized value", det, ct},
		{"magic altered", diagnosis, flip(0)},
		{"version altered", diagnosis, flip(4)},
		{"key id altered", diagnosis, flip(7)},
		{"body altered", diagnosis, flip(len(ct) / 2)},
		{"tag altered", diagnosis, flip(len(ct) - 1)},
		{"truncated", diagnosis, ct[:len(ct)-1]},
		{"header only", diagnosis, ct[:headerLen]},
		{"empty", diagnosis, nil},
		{"plaintext", diagnosis, []byte(secret)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.c.Decrypt(tt.stored)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Decrypt = %q, %v; want ErrDecrypt", pt, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "4111111111111111") || (len(tt.stored) > 0 && strings.Contains(msg, hex.EncodeToString(tt.stored[:8]))) {
				t.Errorf("message %q reveals the value", msg)
			}
		})
	}
}

func TestCiphertextFormat(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "k", policy.Deterministic)
	ct := encryptWith(t, s, rule("t", "c", "k", policy.Deterministic), "v")
	primary := keyInfo(t, s, "k").PrimaryID

	if !bytes.HasPrefix(ct, []byte{0xC7, 'p', 'g', 'c', 0x01, 0x01}) {
		t.Fatalf("ciphertext starts %x, want magic C7706763, version 01, Tink prefix 01", ct[:6])
	}
	tests := []struct {
		name   string
		b      []byte
		isCT   bool
		wantID uint32
	}{
		{"ciphertext", ct, true, primary},
		{"nil", nil, false, 0},
		{"plaintext bytea", []byte("just some plaintext bytes here"), false, 0},
		{"too short", ct[:headerLen+tinkPrefixLen], false, 0},
		{"version 2", append([]byte{0xC7, 'p', 'g', 'c', 0x02}, ct[headerLen:]...), false, 0},
		{"raw Tink prefix", append([]byte{0xC7, 'p', 'g', 'c', 0x01, 0x00}, ct[headerLen+1:]...), false, 0},
	}
	for _, tt := range tests {
		if got := IsCiphertext(tt.b); got != tt.isCT {
			t.Errorf("%s: IsCiphertext = %v, want %v", tt.name, got, tt.isCT)
		}
		id, ok := KeyID(tt.b)
		if ok != tt.isCT || id != tt.wantID {
			t.Errorf("%s: KeyID = %d, %v; want %d, %v", tt.name, id, ok, tt.wantID, tt.isCT)
		}
	}
}

func TestNewColumnCipherKindMismatch(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "r", policy.Randomized)
	h, err := s.Load(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewColumnCipher(h, rule("t", "c", "r", policy.Deterministic)); err == nil {
		t.Error("a randomized keyset made a deterministic cipher")
	}
	if _, err := NewColumnCipher(nil, rule("t", "c", "r", policy.Randomized)); err == nil {
		t.Error("a nil keyset made a cipher")
	}
}

// benchCipher returns a cipher of kind over a fresh local store.
func benchCipher(b *testing.B, kind policy.KeyKind) *ColumnCipher {
	mk, err := GenerateMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	s, err := OpenLocalStore(policy.LocalKeystore{Path: b.TempDir() + "/k.json", MasterKeyEnv: "MK"}, envWith("MK", mk))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Create(context.Background(), "k", kind); err != nil {
		b.Fatal(err)
	}
	return cipherFrom(b, s, rule("t", "c", "k", kind))
}

// benchValue is a typical short column value.
const benchValue = "a typical 32-byte column value.."

func BenchmarkEncrypt(b *testing.B) {
	for _, kind := range []policy.KeyKind{policy.Randomized, policy.Deterministic} {
		b.Run(string(kind), func(b *testing.B) {
			c := benchCipher(b, kind)
			benchPlaintext := []byte(benchValue)
			b.ReportAllocs()
			b.SetBytes(int64(len(benchPlaintext)))
			for b.Loop() {
				if _, err := c.Encrypt(benchPlaintext); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, kind := range []policy.KeyKind{policy.Randomized, policy.Deterministic} {
		b.Run(string(kind), func(b *testing.B) {
			c := benchCipher(b, kind)
			benchPlaintext := []byte(benchValue)
			ct, err := c.Encrypt(benchPlaintext)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(benchPlaintext)))
			for b.Loop() {
				if _, err := c.Decrypt(ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestColumnCipherAppend checks the reused-buffer forms COPY uses: they
// leave what dst held, produce what Encrypt and Decrypt do, and an altered
// ciphertext leaves no plaintext in the buffer's spare capacity.
func TestColumnCipherAppend(t *testing.T) {
	s := openTestStore(t)
	mustCreate(t, s, "r", policy.Randomized)
	mustCreate(t, s, "d", policy.Deterministic)
	for _, r := range []*policy.ColumnRule{rule("t", "c", "r", policy.Randomized), rule("t", "c", "d", policy.Deterministic)} {
		c := cipherFrom(t, s, r)
		enc := []byte("enc:")
		dec := make([]byte, 0, 256)
		dec = append(dec, "dec:"...)
		for _, pt := range []string{"", "x", "secret-value-one", strings.Repeat("z", 300)} {
			ct, err := c.AppendEncrypt(enc[:4], []byte(pt))
			if err != nil {
				t.Fatal(err)
			}
			if string(ct[:4]) != "enc:" || !IsCiphertext(ct[4:]) {
				t.Fatalf("%s: AppendEncrypt = %x", r.Kind, ct)
			}
			if r.Kind == policy.Deterministic && !bytes.Equal(ct[4:], seal(t, c, pt)) {
				t.Fatalf("%s: AppendEncrypt and Encrypt differ", r.Kind)
			}
			enc = ct
			got, err := c.AppendDecrypt(dec[:4], ct[4:])
			if err != nil || string(got) != "dec:"+pt {
				t.Fatalf("%s: AppendDecrypt = %q, %v", r.Kind, got, err)
			}
			if len(pt) < 200 {
				dec = got // reused while it fits
			}
			bad := bytes.Clone(ct[4:])
			bad[len(bad)-1] ^= 1
			clear(dec[4:cap(dec)])
			if _, err := c.AppendDecrypt(dec[:4], bad); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("%s: altered ciphertext: %v", r.Kind, err)
			}
			if pt != "" && bytes.Contains(dec[:cap(dec)], []byte(pt)) {
				t.Fatalf("%s: a failed AppendDecrypt left the plaintext in the buffer", r.Kind)
			}
		}
	}
}
