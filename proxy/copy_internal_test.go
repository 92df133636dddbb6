package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// copySession is an idle session with a keyring holding a deterministic
// key "d" and a randomized key "r".
func copySession(t *testing.T) *session {
	t.Helper()
	store, _, err := keymap.NewLocalStoreInDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Create(ctx, "d", policy.Deterministic); err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, "r", policy.Randomized); err != nil {
		t.Fatal(err)
	}
	ss := idleSession()
	ss.srv.cfg.Keyring = keymap.NewKeyring(store, time.Minute)
	return ss
}

func copyRule(column, key string, kind policy.KeyKind, typ policy.LogicalType) *policy.ColumnRule {
	return &policy.ColumnRule{Schema: "public", Table: "t", Column: column, KeyName: key, Kind: kind, Type: typ}
}

// COPY FROM's per-column store, with its cipher, codec and text-form
// decision worked out before the COPY, gives what ciphers.store gives per
// value: the same ciphertext (deterministic) or plaintext (randomized),
// the same text form for a column being decrypted, the same errors.
func TestCopyInColumnStoreMatchesCiphersStore(t *testing.T) {
	ss := copySession(t)
	detText := copyRule("ssn", "d", policy.Deterministic, policy.TypeText)
	rndText := copyRule("note", "r", policy.Randomized, policy.TypeText)
	detInt := copyRule("n", "d", policy.Deterministic, policy.TypeInt4)
	decrypting := copyRule("old", "d", policy.Deterministic, policy.TypeText)
	ss.cat.states = map[*policy.ColumnRule]columnState{decrypting: {mode: colmigrate.ModeMixedDecrypt, bytea: true, pgType: "bytea"}}
	rules := []*policy.ColumnRule{nil, detText, rndText, detInt, decrypting}
	cols, err := ss.copyInColumns(rules)
	if err != nil {
		t.Fatal(err)
	}
	if !cols[4].textForm || cols[1].textForm {
		t.Fatal("the text-form decision is not the column's migration state")
	}
	tc := ss.textContext()
	cs := ss.newCiphers()
	var bufs copyInBuffers
	int4 := binary.BigEndian.AppendUint32(nil, 42)
	values := []struct {
		format int16
		v      string
	}{
		{0, "123-45-6789"}, {0, ""}, {0, "héllo\tworld\\"}, {0, "bad\xffutf8"}, {0, "nul\x00"},
		{0, " 42 "}, {0, "1.5"}, {1, "123-45-6789"}, {1, string(int4)},
	}
	for col := 1; col < len(rules); col++ {
		rule := rules[col]
		for _, v := range values {
			got, gotErr := cols[col].store(&bufs, v.format, []byte(v.v), tc)
			got = bytes.Clone(got)
			want, wantErr := cs.store(rule, columnValue(v.format, []byte(v.v)), tc, true)
			if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Fatalf("%s %q: error %v, ciphers.store's %v", rule.Column, v.v, gotErr, wantErr)
			}
			if gotErr != nil {
				continue
			}
			if rule.Kind == policy.Deterministic {
				if !bytes.Equal(got, want) {
					t.Fatalf("%s %q: stored %x, ciphers.store %x", rule.Column, v.v, got, want)
				}
				continue
			}
			c, _ := cs.get(rule)
			a, errA := c.Decrypt(got)
			b, errB := c.Decrypt(want)
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Fatalf("%s %q: decrypts to %q (%v), ciphers.store's to %q (%v)", rule.Column, v.v, a, errA, b, errB)
			}
		}
	}
}

// A COPY FROM value of a text column costs no allocation once the
// buffers have grown, and a COPY TO value none either.
func TestCopyValuesReuseBuffers(t *testing.T) {
	ss := copySession(t)
	for _, rule := range []*policy.ColumnRule{
		copyRule("ssn", "d", policy.Deterministic, policy.TypeText),
		copyRule("note", "r", policy.Randomized, policy.TypeText),
	} {
		cols, err := ss.copyInColumns([]*policy.ColumnRule{rule})
		if err != nil {
			t.Fatal(err)
		}
		tc := ss.textContext()
		var bufs copyInBuffers
		value := []byte("a note of some length, 123-45-6789")
		stored, err := cols[0].store(&bufs, 0, value, tc)
		if err != nil {
			t.Fatal(err)
		}
		// As PostgreSQL prints it in a text COPY TO.
		stored = hex.AppendEncode([]byte(`\x`), stored)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := cols[0].store(&bufs, 0, value, tc); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: COPY FROM: %v allocations per value", rule.Column, n)
		}
		a := ss.actionFor(rule, 0, &policy.Grants{}, false)
		a.cipher, a.err = ss.cipher(rule)
		a.mode = allowDecrypt
		var scratch renderScratch
		dst := make([]byte, 0, 256)
		out, null, err := a.render(dst, stored, tc, &scratch)
		if err != nil || null || string(out) != string(value) {
			t.Fatalf("%s: render = %q, %v, %v", rule.Column, out, null, err)
		}
		if n := testing.AllocsPerRun(100, func() {
			if _, _, err := a.render(dst, stored, tc, &scratch); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: COPY TO: %v allocations per value", rule.Column, n)
		}
	}
}
