package keymap

import (
	"context"
	"errors"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

func TestLocalStoreRetireDisablesAllButThePrimary(t *testing.T) {
	retireAfterTwoRotations(t, func(*testing.T) Store { return openTestStore(t) })
}

func TestVaultStoreRetireDisablesAllButThePrimary(t *testing.T) {
	v := testenv.Vault(t)
	s := openVault(t, v)
	// One store for every kind: each subtest uses its own key name.
	retireAfterTwoRotations(t, func(*testing.T) Store { return s })
}

func TestLocalStoreRetireOfDestroyedOrMissingKey(t *testing.T) {
	retireRefusedWithoutKeyset(t, openTestStore(t))
}

func TestVaultStoreRetireOfDestroyedOrMissingKey(t *testing.T) {
	retireRefusedWithoutKeyset(t, openVault(t, testenv.Vault(t)))
}

func TestLocalStoreRetireOfDisabledKey(t *testing.T) {
	retireDisabledKey(t, openTestStore(t))
}

func TestVaultStoreRetireOfDisabledKey(t *testing.T) {
	retireDisabledKey(t, openVault(t, testenv.Vault(t)))
}

// retireAfterTwoRotations rotates a key of each kind twice and retires
// it: the two older versions are disabled, the cipher has one version
// left, values under the primary still decrypt and values under the
// retired versions do not.
func retireAfterTwoRotations(t *testing.T, open func(*testing.T) Store) {
	ctx := context.Background()
	for _, kind := range []policy.KeyKind{policy.Randomized, policy.Deterministic, policy.Ordered} {
		t.Run(string(kind), func(t *testing.T) {
			s := open(t)
			name := "retire-" + string(kind)
			mustCreate(t, s, name, kind)
			r := &policy.ColumnRule{Schema: "public", Table: "t", Column: "c", KeyName: name, Kind: kind, Type: policy.TypeText}
			var old [][]byte
			for range 2 {
				old = append(old, encryptWith(t, s, r, "old"))
				if err := s.Rotate(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
			current := encryptWith(t, s, r, "current")
			if ki := keyInfo(t, s, name); ki.Versions != 3 || ki.Enabled != 3 {
				t.Fatalf("after two rotations: %d versions, %d enabled; want 3, 3", ki.Versions, ki.Enabled)
			}
			if got := cipherFrom(t, s, r).Versions(); kind != policy.Randomized && got != 3 {
				t.Fatalf("Versions() before retire = %d, want 3", got)
			}

			n, err := s.Retire(ctx, name)
			if err != nil || n != 2 {
				t.Fatalf("Retire = %d, %v; want 2 disabled", n, err)
			}
			before := keyInfo(t, s, name)
			if before.Versions != 3 || before.Enabled != 1 {
				t.Errorf("after retire: %d versions, %d enabled; want 3, 1", before.Versions, before.Enabled)
			}
			c := cipherFrom(t, s, r)
			if got := c.Versions(); got != 1 {
				t.Errorf("Versions() after retire = %d, want 1", got)
			}
			if kind != policy.Randomized {
				cands, err := c.Candidates([]byte("x"))
				if err != nil || len(cands) != 1 {
					t.Errorf("Candidates after retire: %d, %v; want 1", len(cands), err)
				}
			}
			if pt, err := c.Decrypt(current); err != nil || string(pt) != "current" {
				t.Errorf("value under the primary after retire: %q, %v", pt, err)
			}
			for i, ct := range old {
				if _, err := c.Decrypt(ct); !errors.Is(err, ErrDecrypt) {
					t.Errorf("value under retired version %d: %v, want ErrDecrypt", i, err)
				}
			}
			fresh, err := c.Encrypt([]byte("new"))
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := KeyID(fresh); id != before.PrimaryID {
				t.Errorf("new value under key id %d, want the primary %d", id, before.PrimaryID)
			}

			// Nothing left to retire: 0, and the key is unchanged.
			if n, err := s.Retire(ctx, name); err != nil || n != 0 {
				t.Errorf("second Retire = %d, %v; want 0, nil", n, err)
			}
			if after := keyInfo(t, s, name); after.PrimaryID != before.PrimaryID || after.Enabled != 1 {
				t.Errorf("second Retire changed the key: %+v, was %+v", after, before)
			}
		})
	}
}

func retireRefusedWithoutKeyset(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.Retire(ctx, "missing"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Retire(missing) = %v, want ErrKeyNotFound", err)
	}
	mustCreate(t, s, "gone", policy.Deterministic)
	if err := s.Rotate(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Retire(ctx, "gone"); !errors.Is(err, ErrKeyDestroyed) || n != 0 {
		t.Errorf("Retire(destroyed) = %d, %v; want 0, ErrKeyDestroyed", n, err)
	}
}

// retireDisabledKey: a whole key that is disabled keeps its keyset, and
// retiring its old versions is a change to the keyset like rotating.
func retireDisabledKey(t *testing.T, s Store) {
	ctx := context.Background()
	mustCreate(t, s, "off", policy.Deterministic)
	if err := s.Rotate(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEnabled(ctx, "off", false); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Retire(ctx, "off"); err != nil || n != 1 {
		t.Fatalf("Retire of a disabled key = %d, %v; want 1", n, err)
	}
	if ki := keyInfo(t, s, "off"); ki.State != KeyDisabled || ki.Enabled != 1 {
		t.Errorf("after retire: %+v, want still disabled with 1 enabled version", ki)
	}
}
