package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Environment variables that steer where the tests' Vault comes from. VAULT_ADDR,
// VAULT_TOKEN and VAULT_CACERT (Vault's own) name an existing server.
const (
	EnvVaultSource = "PGCLOAK_TEST_VAULT_SOURCE" // env | docker | binary | build: use only that source
	EnvVaultAddr   = "VAULT_ADDR"
	EnvVaultToken  = "VAULT_TOKEN"
	EnvVaultCACert = "VAULT_CACERT"
)

// Values of PGCLOAK_TEST_VAULT_SOURCE beyond SourceEnv and SourceDocker. Both start a local
// server, so VaultEnv.Source is SourceLocal for either.
const (
	VaultSourceBinary = "binary" // a vault binary on PATH
	VaultSourceBuild  = "build"  // Vault built from Go modules into the user cache
)

// VaultKEK is the name of the transit key every VaultEnv gets.
const VaultKEK = "pgcloak-kek"

const (
	// vaultOpTimeout bounds one administrative request (a mount, a policy, a login).
	vaultOpTimeout = 30 * time.Second
	// vaultMountReadyTimeout bounds the wait for a new KV v2 mount to finish its upgrade
	// step, during which it refuses requests.
	vaultMountReadyTimeout = 30 * time.Second
)

// VaultEnv is one test's view of the test binary's Vault: the server, a root token and a
// fresh KV v2 mount and transit mount of its own.
type VaultEnv struct {
	Addr         string // e.g. https://127.0.0.1:41234
	Token        string // a root token (env source: VAULT_TOKEN)
	CACertFile   string // CA of the server's TLS certificate; "" for plain http (docker) or when VAULT_CACERT is unset (env)
	KVMount      string // fresh KV v2 mount for this test, e.g. "kv-<random>"
	TransitMount string // fresh transit mount for this test, holding the aes256-gcm96 key KEK
	KEK          string // VaultKEK
	Source       string // SourceEnv, SourceDocker or SourceLocal

	srv *vaultServer
}

// Vault returns this test binary's Vault (started on first use, stopped by Run) and
// prepares, for this test only, a fresh KV v2 mount and a fresh transit mount holding an
// aes256-gcm96 key named KEK; both are disabled at t.Cleanup.
//
// The server comes from the first source that works: VAULT_ADDR + VAULT_TOKEN ("env"),
// Docker via testcontainers-go ("docker", dev mode), a vault binary on PATH, or Vault built
// from Go modules into <user cache>/pgcloak/vault/<version> (both "local": a TLS server
// with file storage, initialised and unsealed here). PGCLOAK_TEST_VAULT_SOURCE forces one.
// The first build takes 5-30 minutes (27 on a loaded 2-core machine): give `go test` a
// -timeout of 30m or more for it; an interrupted build resumes from the Go build cache.
// With no source the test is skipped, or fails under PGCLOAK_TEST_REQUIRE=1.
func Vault(t testing.TB) *VaultEnv {
	t.Helper()
	srv := vaultServerFor(t)
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), vaultMountReadyTimeout+2*vaultOpTimeout)
	defer cancel()
	kv, transit, err := srv.newMounts(ctx)
	if err != nil {
		t.Fatalf("testenv: vault: %v", err)
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), vaultOpTimeout)
		defer cancel()
		if err := srv.removeMounts(ctx, kv, transit); err != nil {
			t.Errorf("testenv: vault: %v", err)
		}
	})
	return &VaultEnv{
		Addr:         srv.addr,
		Token:        srv.token,
		CACertFile:   srv.caCert,
		KVMount:      kv,
		TransitMount: transit,
		KEK:          VaultKEK,
		Source:       srv.source,
		srv:          srv,
	}
}

func vaultServerFor(t testing.TB) *vaultServer {
	t.Helper()
	srv, reasons, err := vaultShared.server(t.Logf)
	if err != nil {
		t.Fatalf("testenv: %v", err)
		return nil
	}
	if srv == nil {
		unavailable(t, "no Vault: %s", strings.Join(reasons, "; "))
	}
	return srv
}

// Client returns a client of the server with the root token, TLS configured with
// CACertFile. Its idle connections are closed at t.Cleanup.
func (v *VaultEnv) Client(t testing.TB) *api.Client {
	t.Helper()
	c, err := v.srv.newClient()
	if err != nil {
		t.Fatalf("testenv: vault client: %v", err)
		return nil
	}
	t.Cleanup(c.CloneConfig().HttpClient.CloseIdleConnections)
	return c
}

// Stop stops the server process; its storage survives. Start starts it again on the same
// address and unseals it. Both serve outage tests, and only the local source supports them
// (other sources skip the test, or fail it under PGCLOAK_TEST_REQUIRE=1). A test that uses
// them must not run in parallel with other Vault tests of the binary. A server still
// stopped when the test ends is started again at t.Cleanup, for the tests that follow.
func (v *VaultEnv) Stop(t testing.TB) {
	t.Helper()
	p := v.localProc(t, "Stop")
	if p == nil {
		return
	}
	if err := p.halt(); err != nil {
		t.Fatalf("testenv: stop vault: %v", err)
		return
	}
	t.Cleanup(func() {
		if !p.stopped() {
			return
		}
		if err := v.srv.restart(context.Background()); err != nil {
			t.Errorf("testenv: restart vault after the test: %v", err)
		}
	})
}

// Start starts the server again after Stop (a no-op while it runs) and returns once it is
// unsealed and serving, with every test's KV mount usable.
func (v *VaultEnv) Start(t testing.TB) {
	t.Helper()
	if v.localProc(t, "Start") == nil {
		return
	}
	if err := v.srv.restart(context.Background()); err != nil {
		t.Fatalf("testenv: start vault: %v", err)
	}
}

func (v *VaultEnv) localProc(t testing.TB, what string) *vaultProc {
	t.Helper()
	if v.srv.local == nil {
		unavailable(t, "Vault.%s needs a local server, and source %q is not one", what, v.Source)
		return nil
	}
	return v.srv.local
}

// AppRole enables the approle auth method (once per server; an existing approle/ mount is
// reused) and creates a role with the given policies: policyHCL is written as a policy of
// the same name, which is the role's only token policy. tokenTTL is the role's token_ttl
// (0: the server's default). It returns the role_id and a fresh secret_id (no TTL, unlimited
// uses). The role and the policy are deleted at t.Cleanup.
func (v *VaultEnv) AppRole(t testing.TB, role, policyHCL string, tokenTTL time.Duration) (roleID, secretID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*vaultOpTimeout)
	defer cancel()
	roleID, secretID, err := v.srv.appRole(ctx, role, policyHCL, tokenTTL)
	if err != nil {
		t.Fatalf("testenv: vault approle %s: %v", role, err)
		return "", ""
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), vaultOpTimeout)
		defer cancel()
		if err := v.srv.removeAppRole(ctx, role); err != nil {
			t.Errorf("testenv: vault approle %s: %v", role, err)
		}
	})
	return roleID, secretID
}

// vaultState is the one Vault of this test binary: acquired by the first Vault call,
// released when Run returns.
type vaultState struct {
	mu      sync.Mutex
	inRun   bool
	tried   bool
	srv     *vaultServer
	reasons []string
	// ctx bounds starting the server (a build above all); shutdown cancels it first, so a
	// signal during a build does not wait for the build.
	ctx    context.Context
	cancel context.CancelFunc
}

var vaultShared vaultState

var errNoRunVault = errors.New("Vault needs TestMain to call testenv.Run, which stops the server: " +
	"func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }")

func (b *vaultState) enterRun() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inRun = true
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
	}
}

func (b *vaultState) server(logf func(string, ...any)) (*vaultServer, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.inRun {
		return nil, nil, errNoRunVault
	}
	if !b.tried {
		b.tried = true
		b.srv, b.reasons = acquireVault(b.ctx, vaultConfigFromEnv(), logf)
	}
	return b.srv, b.reasons, nil
}

func (b *vaultState) shutdown() error {
	b.mu.Lock()
	cancel := b.cancel
	b.mu.Unlock()
	// Not under b.mu: a start in progress holds it, and cancelling is what makes it return.
	if cancel != nil {
		cancel()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	srv := b.srv
	b.srv, b.tried, b.reasons = nil, true, []string{"the server was stopped"}
	if srv == nil || srv.stop == nil {
		return nil
	}
	return srv.stop()
}

// vaultSourceConfig is what the environment says about Vault sources.
type vaultSourceConfig struct {
	addr, token, caCert string // VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT
	only                string // PGCLOAK_TEST_VAULT_SOURCE
}

func vaultConfigFromEnv() vaultSourceConfig {
	return vaultSourceConfig{
		addr:   os.Getenv(EnvVaultAddr),
		token:  os.Getenv(EnvVaultToken),
		caCert: os.Getenv(EnvVaultCACert),
		only:   os.Getenv(EnvVaultSource),
	}
}

type vaultSource struct {
	name  string
	start func(context.Context) (*vaultServer, error)
	// final: a configured env source that fails ends the search, so a broken VAULT_ADDR is
	// reported rather than silently replaced.
	final         bool
	notConfigured string
}

func vaultSources(cfg vaultSourceConfig, logf func(string, ...any)) []vaultSource {
	all := []vaultSource{
		{name: SourceEnv, final: true, start: func(ctx context.Context) (*vaultServer, error) { return vaultEnvSource(ctx, cfg) }},
		{name: SourceDocker, start: vaultDockerSource},
		{name: VaultSourceBinary, start: vaultBinarySource},
		{name: VaultSourceBuild, start: func(ctx context.Context) (*vaultServer, error) { return vaultBuildSource(ctx, logf) }},
	}
	if cfg.addr == "" || cfg.token == "" {
		all[0].notConfigured = EnvVaultAddr + " and " + EnvVaultToken + " not both set"
	}
	valid := false
	for i := range all {
		valid = valid || all[i].name == cfg.only
		if cfg.only != "" && all[i].name != cfg.only {
			all[i].notConfigured = fmt.Sprintf("not selected (%s=%s)", EnvVaultSource, cfg.only)
		}
	}
	if cfg.only != "" && !valid {
		return []vaultSource{{name: EnvVaultSource, notConfigured: fmt.Sprintf("%q is none of env, docker, binary, build", cfg.only)}}
	}
	return all
}

// acquireVault tries the sources in order and returns the first server, or why none.
func acquireVault(ctx context.Context, cfg vaultSourceConfig, logf func(string, ...any)) (*vaultServer, []string) {
	var reasons []string
	for _, src := range vaultSources(cfg, logf) {
		if src.notConfigured != "" {
			reasons = append(reasons, src.name+": "+src.notConfigured)
			continue
		}
		srv, err := src.start(ctx)
		if err == nil {
			return srv, nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", src.name, err))
		if src.final {
			break
		}
	}
	return nil, reasons
}

func vaultEnvSource(ctx context.Context, cfg vaultSourceConfig) (*vaultServer, error) {
	srv := &vaultServer{addr: cfg.addr, token: cfg.token, caCert: cfg.caCert, source: SourceEnv, fromEnv: true}
	if err := srv.connect(ctx); err != nil {
		return nil, fmt.Errorf("%s=%s: %w", EnvVaultAddr, cfg.addr, err)
	}
	return srv, nil
}

// vaultServer is a running Vault, whichever source provided it.
type vaultServer struct {
	addr, token, caCert, source string
	// fromEnv: clients take their settings from VAULT_* variables (env source); otherwise
	// only from the fields above.
	fromEnv bool
	local   *vaultProc   // the local source's process, else nil
	stop    func() error // nil when we did not start it
	admin   *api.Client

	mu       sync.Mutex
	approle  bool                // the approle auth method is known to be enabled
	kvMounts map[string]struct{} // live KV mounts, to await after a restart
}

// connect creates the admin client and checks that the token may manage mounts.
func (s *vaultServer) connect(ctx context.Context) error {
	c, err := s.newClient()
	if err != nil {
		return err
	}
	s.admin = c
	ctx, cancel := context.WithTimeout(ctx, vaultOpTimeout)
	defer cancel()
	if _, err := c.Sys().ListMountsWithContext(ctx); err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	return nil
}

func (s *vaultServer) newClient() (*api.Client, error) {
	return newVaultClient(s.addr, s.token, s.caCert, s.fromEnv)
}

// newVaultClient makes a client of addr. Unless fromEnv, the VAULT_* variables that
// api.DefaultConfig and api.NewClient read are overridden where they matter (address, TLS
// roots, token, namespace).
func newVaultClient(addr, token, caCert string, fromEnv bool) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = addr
	if !fromEnv || caCert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: caCert}); err != nil {
			return nil, err
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if !fromEnv {
		c.ClearNamespace()
	}
	if token == "" {
		c.ClearToken()
	} else {
		c.SetToken(token)
	}
	return c, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newMounts enables a KV v2 mount and a transit mount holding the KEK, under fresh names.
func (s *vaultServer) newMounts(ctx context.Context) (kv, transit string, err error) {
	suffix := randomSuffix()
	kv, transit = "kv-"+suffix, "transit-"+suffix
	sys := s.admin.Sys()
	if err := sys.MountWithContext(ctx, kv, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		return "", "", fmt.Errorf("enable KV v2 at %s: %w", kv, err)
	}
	s.trackKV(kv, true)
	fail := func(err error) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), vaultOpTimeout)
		defer cancel()
		return "", "", errors.Join(err, s.removeMounts(ctx, kv, transit))
	}
	if err := s.awaitKV(ctx, kv); err != nil {
		return fail(err)
	}
	if err := sys.MountWithContext(ctx, transit, &api.MountInput{Type: "transit"}); err != nil {
		return fail(fmt.Errorf("enable transit at %s: %w", transit, err))
	}
	_, err = s.admin.Logical().WriteWithContext(ctx, transit+"/keys/"+VaultKEK, map[string]any{"type": "aes256-gcm96"})
	if err != nil {
		return fail(fmt.Errorf("create transit key %s: %w", VaultKEK, err))
	}
	return kv, transit, nil
}

// awaitKV waits until a KV v2 mount serves requests: a new mount, and every mount after an
// unseal, first runs an upgrade check during which it answers with an error.
func (s *vaultServer) awaitKV(ctx context.Context, mount string) error {
	ctx, cancel := context.WithTimeout(ctx, vaultMountReadyTimeout)
	defer cancel()
	for {
		_, err := s.admin.Logical().ReadWithContext(ctx, mount+"/config")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("KV mount %s not ready: %w", mount, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *vaultServer) trackKV(mount string, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kvMounts == nil {
		s.kvMounts = map[string]struct{}{}
	}
	if live {
		s.kvMounts[mount] = struct{}{}
	} else {
		delete(s.kvMounts, mount)
	}
}

// removeMounts disables the mounts that exist among those named; their data goes with them.
func (s *vaultServer) removeMounts(ctx context.Context, mounts ...string) error {
	existing, err := s.admin.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	var errs []error
	for _, m := range mounts {
		s.trackKV(m, false)
		if _, ok := existing[m+"/"]; !ok {
			continue
		}
		if err := s.admin.Sys().UnmountWithContext(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("disable %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// restart starts a stopped local server again and waits until every live KV mount serves.
func (s *vaultServer) restart(ctx context.Context) error {
	if err := s.local.restart(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	mounts := make([]string, 0, len(s.kvMounts))
	for m := range s.kvMounts {
		mounts = append(mounts, m)
	}
	s.mu.Unlock()
	for _, m := range mounts {
		if err := s.awaitKV(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *vaultServer) enableAppRole(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.approle {
		return nil
	}
	auths, err := s.admin.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth methods: %w", err)
	}
	if a, ok := auths["approle/"]; ok {
		if a.Type != "approle" {
			return fmt.Errorf("auth path approle/ holds a %s method", a.Type)
		}
	} else if err := s.admin.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		return fmt.Errorf("enable approle: %w", err)
	}
	s.approle = true
	return nil
}

func (s *vaultServer) appRole(ctx context.Context, role, policyHCL string, tokenTTL time.Duration) (roleID, secretID string, err error) {
	if role == "" || strings.ContainsAny(role, "/ ") {
		return "", "", fmt.Errorf("invalid role name %q", role)
	}
	if err := s.enableAppRole(ctx); err != nil {
		return "", "", err
	}
	if err := s.admin.Sys().PutPolicyWithContext(ctx, role, policyHCL); err != nil {
		return "", "", fmt.Errorf("write policy: %w", err)
	}
	logical := s.admin.Logical()
	path := "auth/approle/role/" + role
	settings := map[string]any{"token_policies": []string{role}}
	if tokenTTL > 0 {
		settings["token_ttl"] = strconv.Itoa(int(math.Ceil(tokenTTL.Seconds()))) + "s"
	}
	if _, err := logical.WriteWithContext(ctx, path, settings); err != nil {
		return "", "", fmt.Errorf("write role: %w", err)
	}
	sec, err := logical.ReadWithContext(ctx, path+"/role-id")
	if err != nil {
		return "", "", fmt.Errorf("read role-id: %w", err)
	}
	if roleID, err = stringField(sec, "role_id"); err != nil {
		return "", "", err
	}
	sec, err = logical.WriteWithContext(ctx, path+"/secret-id", nil)
	if err != nil {
		return "", "", fmt.Errorf("create secret-id: %w", err)
	}
	if secretID, err = stringField(sec, "secret_id"); err != nil {
		return "", "", err
	}
	return roleID, secretID, nil
}

func (s *vaultServer) removeAppRole(ctx context.Context, role string) error {
	_, err := s.admin.Logical().DeleteWithContext(ctx, "auth/approle/role/"+role)
	if err != nil {
		err = fmt.Errorf("delete role: %w", err)
	}
	if perr := s.admin.Sys().DeletePolicyWithContext(ctx, role); perr != nil {
		err = errors.Join(err, fmt.Errorf("delete policy: %w", perr))
	}
	return err
}

func stringField(sec *api.Secret, key string) (string, error) {
	if sec == nil || sec.Data == nil {
		return "", fmt.Errorf("no data in the response for %s", key)
	}
	v, ok := sec.Data[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("no %s in the response", key)
	}
	return v, nil
}
