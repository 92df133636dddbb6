package keymap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// flakyStore wraps a real store, counts loads and can be switched into an
// outage.
type flakyStore struct {
	Store
	loads atomic.Int32
	down  atomic.Bool
}

func (s *flakyStore) Load(ctx context.Context, name string) (*keyset.Handle, error) {
	s.loads.Add(1)
	if s.down.Load() {
		return nil, fmt.Errorf("%w: connection refused", ErrStoreUnavailable)
	}
	return s.Store.Load(ctx, name)
}

// fakeClock is a settable time source for ttl tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testTTL = time.Minute

// newTestKeyring returns a keyring over a store holding randomized "r" and
// deterministic "d", with a controllable clock.
func newTestKeyring(t *testing.T) (*Keyring, *flakyStore, *fakeClock) {
	t.Helper()
	local := openTestStore(t)
	mustCreate(t, local, "r", policy.Randomized)
	mustCreate(t, local, "d", policy.Deterministic)
	fs := &flakyStore{Store: local}
	k := NewKeyring(fs, testTTL)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	k.now = clock.now
	return k, fs, clock
}

func mustCipher(t *testing.T, k *Keyring, r *policy.ColumnRule) *ColumnCipher {
	t.Helper()
	c, err := k.Cipher(context.Background(), r)
	if err != nil {
		t.Fatalf("Cipher(%s): %v", r.Name(), err)
	}
	return c
}

func assertWorks(t *testing.T, c *ColumnCipher) {
	t.Helper()
	ct := seal(t, c, "value")
	if pt, err := c.Decrypt(ct); err != nil || string(pt) != "value" {
		t.Fatalf("cipher does not round-trip: %q, %v", pt, err)
	}
}

func TestKeyringCaches(t *testing.T) {
	k, fs, _ := newTestKeyring(t)
	a := rule("t", "a", "r", policy.Randomized)
	b := rule("t", "b", "r", policy.Randomized)

	c1 := mustCipher(t, k, a)
	c2 := mustCipher(t, k, a)
	c3 := mustCipher(t, k, b)
	copyOfA := *a
	c4 := mustCipher(t, k, &copyOfA)

	if n := fs.loads.Load(); n != 1 {
		t.Errorf("%d store loads for one key, want 1", n)
	}
	if c1 != c2 {
		t.Error("the same rule got different cipher structs")
	}
	if c4.Rule() != &copyOfA {
		t.Error("a cipher must report the rule it was asked for")
	}
	if pt, err := c4.Decrypt(seal(t, c1, "v")); err != nil || string(pt) != "v" {
		t.Errorf("an equal rule cannot decrypt: %q, %v", pt, err)
	}
	if c3 == c1 || c3.Rule() != b {
		t.Error("a second column on the key must get its own cipher")
	}
	assertWorks(t, c3)
	mustCipher(t, k, rule("t", "c", "d", policy.Deterministic))
	if n := fs.loads.Load(); n != 2 {
		t.Errorf("%d store loads for two keys, want 2", n)
	}
}

func TestKeyringHitDoesNotAllocate(t *testing.T) {
	k, _, _ := newTestKeyring(t)
	r := rule("t", "a", "r", policy.Randomized)
	mustCipher(t, k, r)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := k.Cipher(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("cache hit allocates %.1f times, want 0", allocs)
	}
}

// CachedCipher answers from the cache only: nothing before the first
// load, the cipher after it, nothing once the entry is due for a reload or
// invalidated, and never a store call.
func TestKeyringCachedCipherAnswersFromTheCacheOnly(t *testing.T) {
	k, fs, clock := newTestKeyring(t)
	r := rule("t", "a", "r", policy.Randomized)
	if _, ok := k.CachedCipher(r); ok {
		t.Fatal("a cipher before any load")
	}
	c := mustCipher(t, k, r)
	if got, ok := k.CachedCipher(r); !ok || got != c {
		t.Fatal("the loaded cipher is not cached")
	}
	if got, ok := k.CachedCipher(rule("t", "b", "r", policy.Randomized)); ok || got != nil {
		t.Fatal("a cipher for a column not asked for yet")
	}
	clock.advance(testTTL)
	if _, ok := k.CachedCipher(r); ok {
		t.Fatal("a cipher due for a reload")
	}
	mustCipher(t, k, r)
	k.Invalidate("r")
	if _, ok := k.CachedCipher(r); ok {
		t.Fatal("a cipher after Invalidate")
	}
	if n := fs.loads.Load(); n != 2 {
		t.Fatalf("%d store loads, want 2 (CachedCipher must not load)", n)
	}
	allocs := testing.AllocsPerRun(1000, func() { k.CachedCipher(r) })
	if allocs != 0 {
		t.Errorf("CachedCipher allocates %.1f times, want 0", allocs)
	}
}

func TestKeyringReloadsAfterTTL(t *testing.T) {
	k, fs, clock := newTestKeyring(t)
	r := rule("t", "a", "r", policy.Randomized)
	mustCipher(t, k, r)

	clock.advance(testTTL - time.Second)
	mustCipher(t, k, r)
	if n := fs.loads.Load(); n != 1 {
		t.Fatalf("reloaded before ttl: %d loads", n)
	}
	clock.advance(2 * time.Second)
	assertWorks(t, mustCipher(t, k, r))
	if n := fs.loads.Load(); n != 2 {
		t.Fatalf("%d loads after ttl, want 2", n)
	}
}

func TestKeyringSeesRotationAfterInvalidate(t *testing.T) {
	k, fs, _ := newTestKeyring(t)
	r := rule("t", "a", "r", policy.Randomized)
	old := seal(t, mustCipher(t, k, r), "v")
	if err := fs.Rotate(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	k.Invalidate("r")
	c := mustCipher(t, k, r)
	if n := fs.loads.Load(); n != 2 {
		t.Fatalf("%d loads after Invalidate, want 2", n)
	}
	oldID, _ := KeyID(old)
	newID, _ := KeyID(seal(t, c, "v"))
	if oldID == newID {
		t.Error("after rotate and Invalidate, new values still use the old key version")
	}
	if pt, err := c.Decrypt(old); err != nil || string(pt) != "v" {
		t.Errorf("value from before the rotation: %q, %v", pt, err)
	}
}

func TestKeyringOutageTolerance(t *testing.T) {
	k, fs, clock := newTestKeyring(t)
	cached := rule("t", "a", "r", policy.Randomized)
	before := mustCipher(t, k, cached)
	ct := seal(t, before, "kept")

	fs.down.Store(true)
	clock.advance(testTTL + time.Second)

	c, err := k.Cipher(context.Background(), cached)
	if err != nil {
		t.Fatalf("cached key during outage: %v", err)
	}
	if pt, err := c.Decrypt(ct); err != nil || string(pt) != "kept" {
		t.Fatalf("cached cipher during outage: %q, %v", pt, err)
	}
	if n := fs.loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2 (the failed reload was attempted)", n)
	}
	mustCipher(t, k, rule("t", "other_col", "r", policy.Randomized)) // same key, new column
	if n := fs.loads.Load(); n != 2 {
		t.Errorf("%d loads: a failed reload should not be retried before another ttl", n)
	}

	_, err = k.Cipher(context.Background(), rule("t", "b", "d", policy.Deterministic))
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("uncached key during outage: %v, want *KeyError", err)
	}
	if ke.Key != "d" || ke.SQLState() != "58000" || !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("KeyError %+v: want key d, 58000, wrapping ErrStoreUnavailable", ke)
	}
	if want := `key "d" is unavailable: key store unavailable`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want prefix %q", err, want)
	}

	fs.down.Store(false)
	clock.advance(testTTL + time.Second)
	assertWorks(t, mustCipher(t, k, cached))
}

func TestKeyringDropsRevokedKeys(t *testing.T) {
	tests := []struct {
		name   string
		revoke func(Store) error
		want   error
	}{
		{"disabled", func(s Store) error { return s.SetEnabled(context.Background(), "r", false) }, ErrKeyDisabled},
		{"destroyed", func(s Store) error { return s.Destroy(context.Background(), "r") }, ErrKeyDestroyed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, fs, clock := newTestKeyring(t)
			r := rule("t", "a", "r", policy.Randomized)
			mustCipher(t, k, r)
			if err := tt.revoke(fs); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Cipher(context.Background(), r); err != nil {
				t.Fatalf("revocation took effect before ttl: %v", err)
			}
			clock.advance(testTTL)
			_, err := k.Cipher(context.Background(), r)
			var ke *KeyError
			if !errors.As(err, &ke) || !errors.Is(err, tt.want) || ke.SQLState() != "58000" {
				t.Fatalf("after ttl: %v, want *KeyError wrapping %v", err, tt.want)
			}
			if _, err := k.Cipher(context.Background(), r); !errors.Is(err, tt.want) {
				t.Errorf("entry not dropped: second call %v", err)
			}
		})
	}
}

func TestKeyringErrors(t *testing.T) {
	k, _, _ := newTestKeyring(t)
	tests := []struct {
		name string
		rule *policy.ColumnRule
		want error
	}{
		{"missing key", rule("t", "a", "nope", policy.Randomized), ErrKeyNotFound},
		{"kind mismatch", rule("t", "a", "r", policy.Deterministic), nil},
		{"nil rule", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Cipher(context.Background(), tt.rule)
			var ke *KeyError
			if !errors.As(err, &ke) || ke.SQLState() != "58000" {
				t.Fatalf("got %v, want *KeyError", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want it to wrap %v", err, tt.want)
			}
		})
	}
	// A key cached under one kind refuses a rule of the other kind too.
	mustCipher(t, k, rule("t", "a", "d", policy.Deterministic))
	if _, err := k.Cipher(context.Background(), rule("t", "b", "d", policy.Randomized)); err == nil {
		t.Error("cached deterministic key served a randomized rule")
	}
}

func TestKeyringConcurrentMissesShareOneLoad(t *testing.T) {
	k, fs, _ := newTestKeyring(t)
	r := rule("t", "a", "r", policy.Randomized)
	var wg sync.WaitGroup
	ciphers := make([]*ColumnCipher, 32)
	errs := make([]error, len(ciphers))
	for i := range ciphers {
		wg.Go(func() { ciphers[i], errs[i] = k.Cipher(context.Background(), r) })
	}
	wg.Wait()
	for i := range ciphers {
		if errs[i] != nil || ciphers[i] != ciphers[0] {
			t.Fatalf("goroutine %d: %p, %v; want the shared cipher %p", i, ciphers[i], errs[i], ciphers[0])
		}
	}
	if n := fs.loads.Load(); n != 1 {
		t.Errorf("%d loads for 32 concurrent misses, want 1", n)
	}
}

func BenchmarkKeyringHit(b *testing.B) {
	mk, err := GenerateMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	s, err := OpenLocalStore(policy.LocalKeystore{Path: b.TempDir() + "/k.json", MasterKeyEnv: "MK"}, envWith("MK", mk))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Create(context.Background(), "k", policy.Randomized); err != nil {
		b.Fatal(err)
	}
	k := NewKeyring(s, time.Hour)
	r := rule("t", "c", "k", policy.Randomized)
	ctx := context.Background()
	if _, err := k.Cipher(ctx, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Cipher(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
