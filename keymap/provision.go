package keymap

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/pgcloak/pgcloak/policy"
)

// NewLocalStoreInDir makes a fresh local key store in dir: a new random
// master key in dir/master.key (0600) and the store file dir/keys.json. It
// serves throwaway setups (the demo, tests, benchmarks); production stores
// get their master key from the operator. It returns the store and the
// LocalKeystore config that reopens it.
func NewLocalStoreInDir(dir string) (*LocalStore, policy.LocalKeystore, error) {
	master, err := GenerateMasterKey()
	if err != nil {
		return nil, policy.LocalKeystore{}, err
	}
	cfg := policy.LocalKeystore{
		Path:          filepath.Join(dir, "keys.json"),
		MasterKeyFile: filepath.Join(dir, "master.key"),
	}
	if err := os.WriteFile(cfg.MasterKeyFile, []byte(master+"\n"), 0o600); err != nil {
		return nil, policy.LocalKeystore{}, err
	}
	store, err := OpenLocalStore(cfg, os.Getenv)
	return store, cfg, err
}

// CreateMissing creates each key that the store does not hold yet, with
// the kind the policy gives it, and returns the names it created.
func CreateMissing(ctx context.Context, store Store, keys []policy.Key) ([]string, error) {
	var created []string
	for _, k := range keys {
		err := store.Create(ctx, k.Name, k.Kind)
		switch {
		case errors.Is(err, ErrKeyExists):
		case err != nil:
			return created, err
		default:
			created = append(created, k.Name)
		}
	}
	return created, nil
}
