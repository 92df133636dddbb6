package keymap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

// GrantReader fetches role grants from wherever a security officer keeps
// them.
type GrantReader func(ctx context.Context) ([]policy.Role, error)

// GrantWatcher serves role grants that are re-read while the proxy runs: a
// grant changed in Vault applies to statements planned after the next
// reload, without a restart and without dropping connections. When a
// reload fails (Vault unreachable, an invalid document) the last good
// grants stay in force and the failure is logged.
type GrantWatcher struct {
	read     GrantReader
	validate func([]policy.Role) error
	log      *slog.Logger
	current  atomic.Pointer[policy.GrantTable]
}

// NewGrantWatcher reads the grants once; that first read must succeed, so
// a proxy never starts with grants it could not read.
func NewGrantWatcher(ctx context.Context, read GrantReader, validate func([]policy.Role) error, log *slog.Logger) (*GrantWatcher, error) {
	if log == nil {
		log = slog.Default()
	}
	w := &GrantWatcher{read: read, validate: validate, log: log}
	if err := w.Reload(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// For implements the proxy's GrantSource.
func (w *GrantWatcher) For(role string) *policy.Grants { return w.current.Load().For(role) }

// Reload reads the grants now; on error the previous grants stay.
func (w *GrantWatcher) Reload(ctx context.Context) error {
	roles, err := w.read(ctx)
	if err != nil {
		return fmt.Errorf("reading grants: %w", err)
	}
	if w.validate != nil {
		if err := w.validate(roles); err != nil {
			return fmt.Errorf("grants document: %w", err)
		}
	}
	w.current.Store(policy.NewGrantTable(roles))
	return nil
}

// Run reloads every interval and whenever hup receives (SIGHUP), until ctx
// ends.
func (w *GrantWatcher) Run(ctx context.Context, interval time.Duration, hup <-chan os.Signal) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hup:
			w.log.Info("reloading grants (SIGHUP)")
		}
		if err := w.Reload(ctx); err != nil {
			metrics.GrantsReloads.WithLabelValues(metrics.Failed).Inc()
			w.log.Warn("grants not reloaded; the previous grants stay in force", "err", err)
			continue
		}
		metrics.GrantsReloads.WithLabelValues(metrics.OK).Inc()
	}
}

// GrantsReader reads the grants document at path in the store's KV mount:
// {"roles": [{"role": "doctor", "read": ["ssn"], "write": [], "on_denied": "null"}, …]}.
func (s *VaultStore) GrantsReader(path string) GrantReader {
	return func(ctx context.Context) ([]policy.Role, error) {
		sec, err := s.kv.Get(ctx, path)
		if err != nil {
			return nil, vaultError(err, fmt.Errorf("no grants document at %s/%s", s.kvMountPath, path))
		}
		if sec == nil || sec.Data == nil {
			return nil, fmt.Errorf("grants document %s/%s is deleted", s.kvMountPath, path)
		}
		raw, ok := sec.Data["roles"]
		if !ok {
			return nil, errors.New(`grants document has no "roles" list`)
		}
		return decodeRoles(raw)
	}
}

// decodeRoles turns the document's roles (JSON as Vault returns it) into
// policy roles, refusing unknown fields as the config file does.
func decodeRoles(raw any) ([]policy.Role, error) {
	var b []byte
	if s, ok := raw.(string); ok {
		// Written by `vault kv put … roles='[…]'`: JSON in a string.
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(raw); err != nil {
			return nil, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var roles []policy.Role
	if err := dec.Decode(&roles); err != nil {
		return nil, fmt.Errorf(`grants document "roles": %w`, err)
	}
	return roles, nil
}

// WriteGrants stores a grants document (for tests and tooling).
func (s *VaultStore) WriteGrants(ctx context.Context, path string, roles []policy.Role) error {
	b, err := json.Marshal(roles)
	if err != nil {
		return err
	}
	var doc []any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, path, map[string]any{"roles": doc})
	return vaultErrorOrNil(err)
}

func vaultErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return vaultError(err, ErrStoreUnavailable)
}
