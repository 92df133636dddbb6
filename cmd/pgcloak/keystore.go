package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// openStore opens the configured key store.
func openStore(cfg *policy.Config) (keymap.Store, error) {
	switch cfg.Keystore.Provider {
	case "local":
		return keymap.OpenLocalStore(cfg.Keystore.Local, os.Getenv)
	case "vault":
		return nil, errors.New("keystore.provider vault is not supported by this build yet; use local")
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
