package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

// hotSettings are the settings outside the policy section that a reload
// applies; every other one needs a restart.
var hotSettings = []string{
	"server.max_message_bytes",
	"server.max_statement_bytes",
	"server.max_connections",
	"server.idle_timeout",
	"server.drain_timeout",
}

// reloader re-reads the config file into a running proxy (SIGHUP, or a
// change of the file with --watch-config): the policy's keys, columns and
// roles and the hot settings are validated strictly and swapped in
// atomically; an invalid file, or one naming keys the key store lacks,
// changes nothing.
type reloader struct {
	path string
	srv  *proxy.Server
	st   keymap.Store
	log  *slog.Logger
	// grants is the Vault grants watcher (nil: the policy's own grants).
	grants proxy.GrantSource
	// booted is the config the process started with: what settings that
	// need a restart are compared with.
	booted *policy.Config

	mu      sync.Mutex // one reload at a time
	current atomic.Pointer[policy.Config]
	digest  [sha256.Size]byte // of the file last applied
}

func newReloader(path string, cfg *policy.Config, srv *proxy.Server, st keymap.Store, log *slog.Logger) *reloader {
	r := &reloader{path: path, srv: srv, st: st, log: log, booted: cfg}
	r.current.Store(cfg)
	if data, err := os.ReadFile(path); err == nil {
		r.digest = sha256.Sum256(data)
	}
	return r
}

// policy is the policy in force, which grants read from Vault are
// validated against.
func (r *reloader) policy() *policy.Policy { return &r.current.Load().Policy }

// reload reads the file and applies it, or keeps the running policy and
// says why.
func (r *reloader) reload(ctx context.Context, why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.apply(ctx)
	if err != nil {
		metrics.PolicyReloads.WithLabelValues(metrics.Failed).Inc()
		r.log.Error("policy not reloaded; the running policy stays in force", "trigger", why, "err", err)
		return err
	}
	metrics.PolicyReloads.WithLabelValues(metrics.OK).Inc()
	return nil
}

func (r *reloader) apply(ctx context.Context) error {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfg, err := configFrom(r.path, data)
	if err != nil {
		return err
	}
	if err := r.keysExist(ctx, cfg.Policy); err != nil {
		return err
	}
	restart := restartSettings(r.booted, cfg)
	// The running values of the other server settings stay: only the
	// hotSettings apply.
	hot := r.booted.Server
	hot.MaxMessageBytes, hot.MaxStatementBytes = cfg.Server.MaxMessageBytes, cfg.Server.MaxStatementBytes
	hot.MaxConnections, hot.IdleTimeout, hot.DrainTimeout = cfg.Server.MaxConnections, cfg.Server.IdleTimeout, cfg.Server.DrainTimeout
	r.srv.SetPolicy(policy.NewIndex(cfg.Policy), r.grants, hot)
	r.current.Store(cfg)
	r.digest = sha256.Sum256(data)
	r.log.Info("policy reloaded", "keys", len(cfg.Policy.Keys), "columns", len(cfg.Policy.Columns), "roles", len(cfg.Policy.Roles))
	if len(restart) > 0 {
		r.log.Warn("settings changed in the config file take effect only after a restart; their running values stay", "settings", restart)
	}
	return nil
}

// keysExist checks that the key store holds every key the policy names,
// of the kind it names. A store that cannot be asked is no reason to keep
// an old policy: a missing key then fails its statements (58000).
func (r *reloader) keysExist(ctx context.Context, p policy.Policy) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	infos, err := r.st.List(ctx)
	if err != nil {
		r.log.Warn("the key store could not be asked whether the reloaded policy's keys exist", "err", err)
		return nil
	}
	have := map[string]keymap.KeyInfo{}
	for _, ki := range infos {
		have[ki.Name] = ki
	}
	var problems []error
	for _, k := range p.Keys {
		ki, ok := have[k.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("key %q is not in the key store (pgcloak keys create %s)", k.Name, k.Name))
		case ki.Kind != k.Kind:
			problems = append(problems, fmt.Errorf("key %q is %s in the key store, not %s", k.Name, ki.Kind, k.Kind))
		case ki.State != keymap.KeyEnabled:
			problems = append(problems, fmt.Errorf("key %q is %s in the key store", k.Name, ki.State))
		}
	}
	return errors.Join(problems...)
}

// restartSettings names the settings outside the policy section that
// differ between the running config and cfg and that only a restart
// applies.
func restartSettings(running, cfg *policy.Config) []string {
	was := scalarLeaves(reflect.ValueOf(*running), "")
	now := scalarLeaves(reflect.ValueOf(*cfg), "")
	var out []string
	for k, v := range now {
		if !slices.Contains(hotSettings, k) && !reflect.DeepEqual(v, was[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// watch reloads when the file's content changes. It watches the file's
// directory, not the file: editors replace files, and Kubernetes updates a
// mounted ConfigMap by swapping a symlink to a new directory.
func (r *reloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(r.path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	go func() {
		defer w.Close()
		// Events come in bursts (write, chmod, rename); settle first.
		const settle = 300 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Events:
				timer.Reset(settle)
			case err := <-w.Errors:
				r.log.Warn("watching the config file", "err", err)
			case <-timer.C:
				if r.changed() {
					_ = r.reload(ctx, "file changed")
				}
			}
		}
	}()
	return nil
}

// changed reports whether the file's content differs from the one last
// applied: a kubelet or an editor touching the directory is no reload.
func (r *reloader) changed() bool {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return sha256.Sum256(data) != r.digest
}
