package keymap

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

// Keyring hands out column ciphers, unwrapping each key's keyset once per ttl.
// It is built for the proxy's hot path: a cached cipher costs one map lookup
// under a read lock, no store call and no allocation. It is safe for
// concurrent use by many sessions.
//
// When a key's ttl has passed, the next Cipher call reloads it. If the store
// is unavailable the cached keyset keeps working (an outage of Vault must not
// take the proxy down); if the key is gone, disabled or destroyed the entry is
// dropped and the error returned, so revocation takes effect within one ttl.
type Keyring struct {
	store Store
	ttl   time.Duration
	now   func() time.Time

	mu   sync.RWMutex
	keys map[string]*keyEntry

	loadMu   sync.Mutex
	inflight map[string]*loadCall
}

// keyEntry is one loaded keyset: its primitive and the ciphers built on it.
type keyEntry struct {
	kind    policy.KeyKind
	p       keyPrimitive
	expires atomic.Int64 // unix nanoseconds
	// refreshing lets exactly one caller reload an expired entry while the
	// others go on with the cached one.
	refreshing atomic.Bool

	// ciphers is keyed by the rule pointer, the cheapest key to hash on the
	// hot path; rules come from the policy index and live as long as it.
	// Rules of a replaced policy are dropped with the entry at the next
	// reload. Guarded by Keyring.mu.
	ciphers map[*policy.ColumnRule]*ColumnCipher
}

// loadCall lets concurrent misses on one key share a single store call.
type loadCall struct {
	done  chan struct{}
	entry *keyEntry
	err   error
}

// NewKeyring returns a Keyring over store that reloads keysets after ttl.
func NewKeyring(store Store, ttl time.Duration) *Keyring {
	return &Keyring{
		store:    store,
		ttl:      ttl,
		now:      time.Now,
		keys:     map[string]*keyEntry{},
		inflight: map[string]*loadCall{},
	}
}

// Cipher returns the cipher for rule. Errors are *KeyError (SQLSTATE 58000).
func (k *Keyring) Cipher(ctx context.Context, rule *policy.ColumnRule) (*ColumnCipher, error) {
	if rule == nil {
		return nil, &KeyError{Err: errors.New("no column rule")}
	}
	e, c := k.cached(rule)
	if e != nil && k.now().UnixNano() >= e.expires.Load() {
		return k.refresh(ctx, rule, e, c)
	}
	if c != nil {
		metrics.KeyCacheHits.WithLabelValues(rule.KeyName).Inc()
		return c, nil
	}
	if e == nil {
		var err error
		if e, err = k.load(ctx, rule, nil); err != nil {
			return nil, err
		}
	}
	return k.cipherFor(e, rule)
}

// CachedCipher is rule's cipher when the keyring holds it and it is not
// due for a reload: what Cipher returns without a store call, so a caller
// may skip setting up the context a store call needs.
func (k *Keyring) CachedCipher(rule *policy.ColumnRule) (*ColumnCipher, bool) {
	if rule == nil {
		return nil, false
	}
	e, c := k.cached(rule)
	if c == nil || k.now().UnixNano() >= e.expires.Load() {
		return nil, false
	}
	metrics.KeyCacheHits.WithLabelValues(rule.KeyName).Inc()
	return c, true
}

// cached is rule's key entry and cipher as the keyring holds them (nil
// when it does not), whether due for a reload or not.
func (k *Keyring) cached(rule *policy.ColumnRule) (*keyEntry, *ColumnCipher) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e := k.keys[rule.KeyName]
	if e == nil {
		return nil, nil
	}
	return e, e.ciphers[rule]
}

// Holds reports whether the keyring has the named key in memory, due for a
// reload or not: it can serve that key while the store is unreachable.
func (k *Keyring) Holds(name string) bool { return k.entry(name) != nil }

// Invalidate drops a key's cached keyset so the next use reloads it, for
// example right after a rotation or a disable.
func (k *Keyring) Invalidate(name string) {
	k.mu.Lock()
	delete(k.keys, name)
	k.mu.Unlock()
}

// refresh reloads an expired entry. One caller does the reload; the others,
// and that caller too when the store is unavailable, use the cached entry.
func (k *Keyring) refresh(ctx context.Context, rule *policy.ColumnRule, old *keyEntry, c *ColumnCipher) (*ColumnCipher, error) {
	if !old.refreshing.CompareAndSwap(false, true) {
		return k.cachedOr(old, rule, c)
	}
	defer old.refreshing.Store(false)

	e, err := k.load(ctx, rule, old)
	switch {
	case err == nil:
		return k.cipherFor(e, rule)
	case errors.Is(err, ErrStoreUnavailable):
		// Retry after another ttl rather than hammering a store that is down.
		old.expires.Store(k.now().Add(k.ttl).UnixNano())
		return k.cachedOr(old, rule, c)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller gave up, which says nothing about the key; the next
		// caller retries.
		return k.cachedOr(old, rule, c)
	default:
		k.drop(rule.KeyName, old)
		return nil, err
	}
}

func (k *Keyring) cachedOr(e *keyEntry, rule *policy.ColumnRule, c *ColumnCipher) (*ColumnCipher, error) {
	if c != nil {
		return c, nil
	}
	return k.cipherFor(e, rule)
}

// load fetches a key from the store, sharing the call among concurrent
// callers, and installs the fresh entry. An entry other than stale that
// another caller installed meanwhile is used as is.
func (k *Keyring) load(ctx context.Context, rule *policy.ColumnRule, stale *keyEntry) (*keyEntry, error) {
	name := rule.KeyName
	k.loadMu.Lock()
	if e := k.entry(name); e != nil && e != stale {
		k.loadMu.Unlock()
		return e, nil
	}
	if call, ok := k.inflight[name]; ok {
		k.loadMu.Unlock()
		return call.wait(ctx, name)
	}
	call := &loadCall{done: make(chan struct{})}
	k.inflight[name] = call
	k.loadMu.Unlock()

	call.entry, call.err = k.fetch(ctx, rule)
	if call.err == nil {
		k.mu.Lock()
		k.keys[name] = call.entry
		k.mu.Unlock()
	}

	k.loadMu.Lock()
	delete(k.inflight, name)
	k.loadMu.Unlock()
	close(call.done)
	return call.entry, call.err
}

func (c *loadCall) wait(ctx context.Context, name string) (*keyEntry, error) {
	select {
	case <-c.done:
		return c.entry, c.err
	case <-ctx.Done():
		return nil, &KeyError{Key: name, Err: ctx.Err()}
	}
}

func (k *Keyring) fetch(ctx context.Context, rule *policy.ColumnRule) (*keyEntry, error) {
	// The entry expires ttl after the read began, not after it ended, so
	// that a keyset changed in the store is in use within ttl of the
	// change (reencrypt waits for that).
	start := k.now()
	h, err := k.store.Load(ctx, rule.KeyName)
	countStoreCall(rule.KeyName, err)
	if err != nil {
		return nil, &KeyError{Key: rule.KeyName, Err: err}
	}
	p, err := newPrimitive(h, rule.Kind)
	if err != nil {
		return nil, &KeyError{Key: rule.KeyName, Err: err}
	}
	e := &keyEntry{kind: rule.Kind, p: p, ciphers: map[*policy.ColumnRule]*ColumnCipher{}}
	e.expires.Store(start.Add(k.ttl).UnixNano())
	return e, nil
}

// cipherFor returns (building once) the cipher for rule on entry e.
func (k *Keyring) cipherFor(e *keyEntry, rule *policy.ColumnRule) (*ColumnCipher, error) {
	if e.kind != rule.Kind {
		return nil, &KeyError{Key: rule.KeyName, Err: errors.New("column rule's key kind differs from the key's")}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := e.ciphers[rule]; c != nil {
		return c, nil
	}
	c := newColumnCipher(e.p, rule)
	e.ciphers[rule] = c
	return c, nil
}

func (k *Keyring) entry(name string) *keyEntry {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[name]
}

// drop removes e unless a newer entry already replaced it.
func (k *Keyring) drop(name string, e *keyEntry) {
	k.mu.Lock()
	if k.keys[name] == e {
		delete(k.keys, name)
	}
	k.mu.Unlock()
}

// countStoreCall records a key store request's outcome: the store is up
// when it answered, even with "no such key".
func countStoreCall(key string, err error) {
	outcome := metrics.OK
	if err != nil {
		outcome = metrics.Error
	}
	metrics.KeystoreCalls.WithLabelValues(key, outcome).Inc()
	if errors.Is(err, ErrStoreUnavailable) {
		metrics.KeystoreUp.Set(0)
	} else {
		metrics.KeystoreUp.Set(1)
	}
}
