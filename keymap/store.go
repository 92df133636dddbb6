package keymap

import (
	"context"
	"time"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// Store keeps named Tink keysets apart from the database. Implementations
// (local file, Vault) return errors wrapping ErrKeyNotFound, ErrKeyDisabled,
// ErrKeyDestroyed, ErrKeyExists or, for trouble reaching or reading the
// backend, ErrStoreUnavailable; the Keyring's outage tolerance depends on
// that distinction. Errors do not repeat the key name (callers know it and
// add it, as KeyError does) and never contain key material.
type Store interface {
	// Load returns the unwrapped keyset of an enabled key.
	Load(ctx context.Context, name string) (*keyset.Handle, error)
	// Create makes a fresh keyset; a name that exists or was destroyed (its
	// tombstone remains) is ErrKeyExists.
	Create(ctx context.Context, name string, kind policy.KeyKind) error
	// List describes every key, destroyed ones included.
	List(ctx context.Context) ([]KeyInfo, error)
	// Rotate adds a new primary key version; older versions still decrypt.
	Rotate(ctx context.Context, name string) error
	// Retire disables every enabled version of a key but the primary and
	// returns how many it disabled (0 when there were none). Values
	// written under a retired version no longer decrypt; retire once
	// reencrypt has moved every row to the primary. A disabled key may be
	// retired, a destroyed one not.
	Retire(ctx context.Context, name string) (int, error)
	// SetEnabled disables or re-enables a key without touching its keyset.
	SetEnabled(ctx context.Context, name string, enabled bool) error
	// Destroy crypto-shreds a key: its keyset is removed, a tombstone kept.
	Destroy(ctx context.Context, name string) error
	// Close releases what the store holds (the Vault store's token renewal and
	// connections); the store is not used afterwards. Calling it again does no
	// harm.
	Close() error
}

// KeyState is a key's lifecycle state.
type KeyState string

// The states a key can be in.
const (
	KeyEnabled   KeyState = "enabled"
	KeyDisabled  KeyState = "disabled"
	KeyDestroyed KeyState = "destroyed"
)

// KeyInfo describes a key without revealing its material.
type KeyInfo struct {
	Name     string
	Kind     policy.KeyKind
	State    KeyState
	Versions int // key versions in the keyset; 0 once destroyed
	// Enabled counts the versions that still decrypt (Retire disables
	// all but the primary); 0 once destroyed.
	Enabled   int
	PrimaryID uint32 // Tink key id new values are encrypted under; 0 once destroyed
	Created   time.Time
	// Rotated is when the newest version was added (zero if never):
	// proxies encrypt under it once their key cache has expired after it.
	Rotated time.Time
}
