package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgcloak/pgcloak/internal/localca"
	"github.com/pgcloak/pgcloak/internal/procgroup"
)

const (
	// vaultDirPrefix names temp dirs "pgcloak-vault-<pid>-…" so a later run can sweep the
	// ones a dead test binary left behind.
	vaultDirPrefix = "pgcloak-vault-"
	// vaultReadyTimeout bounds the wait for a started process to answer, and then for an
	// unsealed server to become active.
	vaultReadyTimeout = 2 * time.Minute
	// vaultTermWait is how long Vault gets to seal and exit after SIGTERM before SIGKILL.
	vaultTermWait = 15 * time.Second
	// localHost is where Vault listens.
	localHost = "127.0.0.1"
	// portAttempts covers the race between picking a free port and the server binding it.
	portAttempts = 3
)

// errPortInUse marks a start that failed only because another process took the port.
var errPortInUse = errors.New("port already in use")

// vaultBinarySource runs the vault binary on PATH.
func vaultBinarySource(ctx context.Context) (*vaultServer, error) {
	bin, err := exec.LookPath("vault")
	if err != nil {
		return nil, errors.New("no vault binary on PATH")
	}
	return localVaultServer(ctx, bin)
}

// vaultBuildSource builds Vault from Go modules (or reuses the cached build) and runs it.
func vaultBuildSource(ctx context.Context, logf func(string, ...any)) (*vaultServer, error) {
	bin, err := cachedVaultBinary(ctx, logf)
	if err != nil {
		return nil, err
	}
	return localVaultServer(ctx, bin)
}

func localVaultServer(ctx context.Context, bin string) (*vaultServer, error) {
	p, err := startVaultProc(ctx, bin)
	if err != nil {
		return nil, err
	}
	srv := &vaultServer{addr: p.addr(), token: p.rootToken, caCert: p.caFile, source: SourceLocal, local: p, stop: p.close}
	if err := srv.connect(ctx); err != nil {
		return nil, errors.Join(err, p.close())
	}
	return srv, nil
}

// vaultProc is a Vault server process of ours: file storage and a TLS listener in a temp
// dir, initialised with one key share. Stopping and starting it keeps its data, address,
// root token and unseal key.
type vaultProc struct {
	bin, dir, configPath, logPath, caFile string
	port                                  int
	rootToken, unsealKey                  string

	mu     sync.Mutex // guards cmd and exited: Stop/Start, close
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd is reaped
}

// startVaultProc creates the directory, starts the server on a free port, initialises and
// unseals it. A failure leaves no process and no directory behind.
func startVaultProc(ctx context.Context, bin string) (*vaultProc, error) {
	sweepStaleVaultDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", vaultDirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	p := &vaultProc{
		bin:        bin,
		dir:        dir,
		configPath: filepath.Join(dir, "vault.hcl"),
		logPath:    filepath.Join(dir, "vault.log"),
		caFile:     filepath.Join(dir, "ca.crt"),
	}
	if err := p.setUp(ctx); err != nil {
		return nil, errors.Join(err, p.close())
	}
	return p, nil
}

func (p *vaultProc) setUp(ctx context.Context) error {
	if err := os.Mkdir(filepath.Join(p.dir, "data"), 0o700); err != nil {
		return err
	}
	err := localca.Write(localca.Files{
		CACert:     p.caFile,
		ServerCert: filepath.Join(p.dir, "server.crt"),
		ServerKey:  filepath.Join(p.dir, "server.key"),
	})
	if err != nil {
		return fmt.Errorf("TLS files: %w", err)
	}
	// Another process can take the free port we picked before the server binds it.
	for range portAttempts {
		if p.port, err = procgroup.FreeLocalPort(); err != nil {
			return err
		}
		if err = os.WriteFile(p.configPath, []byte(p.config()), 0o600); err != nil {
			return err
		}
		if err = p.launch(ctx); err == nil || !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		return err
	}
	return p.initialize(ctx)
}

func (p *vaultProc) addr() string {
	return "https://" + net.JoinHostPort(localHost, strconv.Itoa(p.port))
}

// config is the server's HCL: not -dev, so that data survives a restart.
func (p *vaultProc) config() string {
	q := strconv.Quote
	return fmt.Sprintf(`storage "file" {
  path = %s
}

listener "tcp" {
  address       = %s
  tls_cert_file = %s
  tls_key_file  = %s
}

api_addr      = %s
disable_mlock = true
ui            = false
log_level     = "info"
`, q(filepath.Join(p.dir, "data")), q(net.JoinHostPort(localHost, strconv.Itoa(p.port))),
		q(filepath.Join(p.dir, "server.crt")), q(filepath.Join(p.dir, "server.key")), q(p.addr()))
}

// client is a client of the server for our own requests: root token once known, no
// retries (we poll ourselves), short timeouts.
func (p *vaultProc) client() (*api.Client, error) {
	c, err := newVaultClient(p.addr(), p.rootToken, p.caFile, false)
	if err != nil {
		return nil, err
	}
	c.SetMaxRetries(0)
	c.SetClientTimeout(10 * time.Second)
	return c, nil
}

// launch starts the server process and waits until it answers (sealed or not).
func (p *vaultProc) launch(ctx context.Context) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(p.bin, "server", "-config="+p.configPath)
	cmd.Dir = p.dir
	cmd.SysProcAttr = procgroup.SysProcAttr(nil)
	// VAULT_* variables (VAULT_API_ADDR, VAULT_LOG_LEVEL, a license…) would change the server.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start vault: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	err = p.await(ctx, func(h *api.HealthResponse) bool { return true }, "answering")
	if err != nil {
		return errors.Join(err, p.halt())
	}
	return nil
}

// await polls the health endpoint until ok accepts the answer, the process exits, ctx ends
// or vaultReadyTimeout passes.
func (p *vaultProc) await(ctx context.Context, ok func(*api.HealthResponse) bool, what string) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	deadline := time.NewTimer(vaultReadyTimeout)
	defer deadline.Stop()
	var last error
	for {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := c.Sys().HealthWithContext(hctx)
		cancel()
		if err == nil && ok(h) {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("health: initialized=%t sealed=%t standby=%t", h.Initialized, h.Sealed, h.Standby)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return p.exitError()
		case <-deadline.C:
			return fmt.Errorf("vault not %s after %s (%v); log:\n%s", what, vaultReadyTimeout, last, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *vaultProc) exitError() error {
	log := p.logTail()
	p.mu.Lock()
	state := p.cmd.ProcessState
	p.mu.Unlock()
	err := fmt.Errorf("vault exited during start-up (%v); log:\n%s", state, log)
	if strings.Contains(log, "address already in use") {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

func (p *vaultProc) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return procgroup.OutputTail(data)
}

// initialize runs sys/init with a single key share, then unseals.
func (p *vaultProc) initialize(ctx context.Context) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, vaultReadyTimeout)
	defer cancel()
	resp, err := c.Sys().InitWithContext(ictx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return fmt.Errorf("vault init: %w", err)
	}
	if len(resp.Keys) != 1 || resp.RootToken == "" {
		return fmt.Errorf("vault init returned %d keys and root token %t", len(resp.Keys), resp.RootToken != "")
	}
	p.unsealKey, p.rootToken = resp.Keys[0], resp.RootToken
	return p.unseal(ctx)
}

// unseal unseals the server and waits until it is active.
func (p *vaultProc) unseal(ctx context.Context) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, vaultOpTimeout)
	defer cancel()
	if _, err := c.Sys().UnsealWithContext(uctx, p.unsealKey); err != nil {
		return fmt.Errorf("vault unseal: %w", err)
	}
	active := func(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed && !h.Standby }
	return p.await(ctx, active, "active")
}

// restart starts the stopped process again on the same port and unseals it; a no-op while
// it runs.
func (p *vaultProc) restart(ctx context.Context) error {
	if !p.stopped() {
		return nil
	}
	if err := p.launch(ctx); err != nil {
		return err
	}
	if err := p.unseal(ctx); err != nil {
		return errors.Join(err, p.halt())
	}
	return nil
}

func (p *vaultProc) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd == nil
}

// halt stops the process, if running: SIGTERM (Vault seals and exits), SIGKILL after
// vaultTermWait, then the rest of its process group. The directory stays.
func (p *vaultProc) halt() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	exited := false
	for _, step := range []struct {
		sig  os.Signal
		wait time.Duration
	}{{syscall.SIGTERM, vaultTermWait}, {os.Kill, 5 * time.Second}} {
		if err := p.cmd.Process.Signal(step.sig); errors.Is(err, os.ErrProcessDone) {
			<-p.exited
			exited = true
			break
		}
		select {
		case <-p.exited:
			exited = true
		case <-time.After(step.wait):
		}
		if exited {
			break
		}
	}
	err := procgroup.KillGroup(pid)
	if !exited {
		return errors.Join(fmt.Errorf("vault (pid %d) did not exit", pid), err)
	}
	p.cmd, p.exited = nil, nil
	return err
}

// close stops the process and removes the directory, storage included.
func (p *vaultProc) close() error {
	return errors.Join(p.halt(), os.RemoveAll(p.dir))
}

// sweepStaleVaultDirs removes the temp dirs of test binaries that died without stopping
// their Vault (a timeout's panic, SIGKILL): Pdeathsig ended the server, nobody the dir.
func sweepStaleVaultDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), vaultDirPrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), vaultDirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() || procgroup.ProcessExists(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}
