package keymap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

// vaultAuth logs in to Vault (token or AppRole) and keeps the login alive:
// the token is renewed with Vault's LifetimeWatcher, and when renewal ends
// (max TTL reached, token revoked) an AppRole login is made again.
type vaultAuth struct {
	client *vault.Client
	cfg    policy.VaultKeystore
	getenv func(string) string
	log    *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newVaultAuth(client *vault.Client, cfg policy.VaultKeystore, getenv func(string) string, log *slog.Logger) *vaultAuth {
	if getenv == nil {
		getenv = os.Getenv
	}
	if log == nil {
		log = slog.Default()
	}
	return &vaultAuth{client: client, cfg: cfg, getenv: getenv, log: log}
}

// start logs in once (an error here is the caller's) and then keeps the
// login alive in the background.
func (a *vaultAuth) start(ctx context.Context) error {
	secret, err := a.login(ctx)
	if err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.keepAlive(bg, secret)
	}()
	return nil
}

func (a *vaultAuth) stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
}

// login authenticates and sets the client's token. It returns the login's
// secret for renewal, or nil when there is nothing to renew.
func (a *vaultAuth) login(ctx context.Context) (*vault.Secret, error) {
	switch a.cfg.Auth {
	case "approle":
		return a.appRoleLogin(ctx)
	default:
		return a.tokenLogin(ctx)
	}
}

func (a *vaultAuth) tokenLogin(ctx context.Context) (*vault.Secret, error) {
	token, err := a.secret(a.cfg.TokenFile, a.cfg.TokenEnv, "token")
	if err != nil {
		return nil, err
	}
	a.client.SetToken(token)
	self, err := a.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault token: %w", vaultError(err, ErrStoreUnavailable))
	}
	renewable, _ := self.TokenIsRenewable()
	ttl, _ := self.TokenTTL()
	if !renewable || ttl <= 0 {
		return nil, nil
	}
	return &vault.Secret{Auth: &vault.SecretAuth{ClientToken: token, Renewable: true, LeaseDuration: int(ttl.Seconds())}}, nil
}

func (a *vaultAuth) appRoleLogin(ctx context.Context) (*vault.Secret, error) {
	roleID := a.cfg.AppRole.RoleID
	if a.cfg.AppRole.RoleIDFile != "" {
		b, err := os.ReadFile(a.cfg.AppRole.RoleIDFile)
		if err != nil {
			return nil, fmt.Errorf("keystore.vault.approle.role_id_file: %w", err)
		}
		roleID = strings.TrimSpace(string(b))
	}
	secretID, err := a.secret(a.cfg.AppRole.SecretIDFile, a.cfg.AppRole.SecretIDEnv, "AppRole secret_id")
	if err != nil {
		return nil, err
	}
	mount := strings.Trim(a.cfg.AppRole.Mount, "/")
	if mount == "" {
		mount = "approle"
	}
	// The login itself must not carry a previous (expired) token, and it
	// runs on a copy of the client: key reads keep using the old token
	// until the new one is set, rather than going out with none.
	lc, err := a.client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault AppRole login: %w", err)
	}
	lc.ClearToken()
	sec, err := lc.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
		"role_id": roleID, "secret_id": secretID,
	})
	if err != nil {
		return nil, fmt.Errorf("vault AppRole login: %w", vaultError(err, ErrStoreUnavailable))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("vault AppRole login returned no token")
	}
	a.client.SetToken(sec.Auth.ClientToken)
	return sec, nil
}

// secret reads a credential from a file (preferred) or an env var. Its
// value is never logged or put in an error.
func (a *vaultAuth) secret(file, env, what string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("vault %s file: %w", what, err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("vault %s file %s is empty", what, file)
	}
	if s := strings.TrimSpace(a.getenv(env)); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("vault %s: environment variable %s is not set", what, env)
}

// keepAlive renews the login until ctx ends, logging in again (AppRole)
// whenever renewal stops, with growing pauses while Vault is unreachable.
func (a *vaultAuth) keepAlive(ctx context.Context, secret *vault.Secret) {
	backoff := time.Second
	for {
		if secret != nil {
			a.renew(ctx, secret)
		} else if a.cfg.Auth != "approle" {
			return // a token that cannot be renewed lives as long as it lives
		}
		if ctx.Err() != nil {
			return
		}
		if a.cfg.Auth != "approle" {
			a.log.Error("vault token renewal ended; restart with a fresh token")
			return
		}
		var err error
		if secret, err = a.login(ctx); err != nil {
			metrics.VaultTokenRenewals.WithLabelValues(metrics.Failed).Inc()
			a.log.Warn("vault AppRole login failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		metrics.VaultTokenRenewals.WithLabelValues("relogin").Inc()
		a.log.Info("vault: logged in again with AppRole")
	}
}

// renew runs a LifetimeWatcher on secret until renewal ends or ctx does.
func (a *vaultAuth) renew(ctx context.Context, secret *vault.Secret) {
	w, err := a.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		a.log.Warn("vault token renewal", "err", err)
		return
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-w.DoneCh():
			if err != nil {
				metrics.VaultTokenRenewals.WithLabelValues(metrics.Failed).Inc()
				a.log.Warn("vault token renewal stopped", "err", err)
			}
			return
		case r := <-w.RenewCh():
			metrics.VaultTokenRenewals.WithLabelValues(metrics.OK).Inc()
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.log.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		}
	}
}
