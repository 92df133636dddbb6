package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// store is an opened key store and how to let go of it.
type store struct {
	keymap.Store
	// vault is the Vault store: Store itself for the vault provider, or one
	// opened for the grants document alone (see grantsFromVault); nil if
	// neither.
	vault *keymap.VaultStore
}

// Close closes the key store and the Vault store opened for grants, if any.
func (s *store) Close() error {
	err := s.Store.Close()
	if s.vault != nil && keymap.Store(s.vault) != s.Store {
		err = errors.Join(err, s.vault.Close())
	}
	return err
}

// openStore opens the configured key store.
func openStore(ctx context.Context, cfg *policy.Config, log *slog.Logger) (*store, error) {
	switch cfg.Keystore.Provider {
	case "local":
		ls, err := keymap.OpenLocalStore(cfg.Keystore.Local, os.Getenv)
		if err != nil {
			return nil, err
		}
		return &store{Store: ls}, nil
	case "vault":
		vs, err := keymap.OpenVaultStore(ctx, cfg.Keystore.Vault, os.Getenv, log)
		if err != nil {
			return nil, err
		}
		return &store{Store: vs, vault: vs}, nil
	default:
		return nil, fmt.Errorf("unknown keystore.provider %q", cfg.Keystore.Provider)
	}
}

// cacheTTL is the validated keystore.cache_ttl.
func cacheTTL(cfg *policy.Config) time.Duration {
	d, err := time.ParseDuration(cfg.Keystore.CacheTTL)
	if err != nil || d <= 0 {
		return 5 * time.Minute
	}
	return d
}

// grantsFromVault starts the watcher of the Vault grants document when the
// config names one; nil means the config file's grants apply.
//
// The grants are validated against current(), the policy in force, which
// a reload may change.
func grantsFromVault(ctx context.Context, cfg *policy.Config, s *store, log *slog.Logger, current func() *policy.Policy) (*keymap.GrantWatcher, error) {
	path := cfg.Keystore.Vault.GrantsPath
	if path == "" {
		return nil, nil
	}
	vs := s.vault
	if vs == nil {
		// Keys are local but grants live in Vault.
		var err error
		if vs, err = keymap.OpenVaultStore(ctx, cfg.Keystore.Vault, os.Getenv, log); err != nil {
			return nil, fmt.Errorf("vault for grants: %w", err)
		}
		s.vault = vs
	}
	validate := func(roles []policy.Role) error {
		if ps := current().ValidateGrants(roles); len(ps) > 0 {
			return ps
		}
		return nil
	}
	w, err := keymap.NewGrantWatcher(ctx, vs.GrantsReader(path), validate, log)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("keystore.vault.grants_path %s", path), err)
	}
	return w, nil
}

// grantsInterval is the validated keystore.vault.grants_interval.
func grantsInterval(cfg *policy.Config) time.Duration {
	d, err := time.ParseDuration(cfg.Keystore.Vault.GrantsInterval)
	if err != nil || d <= 0 {
		return 30 * time.Second
	}
	return d
}
