package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

func newServeCommand(g *globalFlags) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Long: `Run the proxy. SIGHUP reloads the config file's policy (keys, columns,
roles) and size limits, and the role grants from Vault; an invalid file keeps
the running policy. With --watch-config a change of the file does the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			stop := make(chan os.Signal, 2)
			signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(stop)
			return serve(cmd.Context(), g, cfg, stop, watch)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch-config", false, "reload the policy when the config file changes (as SIGHUP does)")
	return cmd
}

// serve runs the proxy until ctx ends, which closes every session at once,
// or a signal arrives on stop (SIGTERM, SIGINT), which drains them for
// server.drain_timeout (a second signal closes them at once); either way
// it returns nil.
func serve(ctx context.Context, g *globalFlags, cfg *policy.Config, stop <-chan os.Signal, watch bool) error {
	// Ended on return: a signal does not end the caller's context, and the
	// key store's, the grants' and the reloader's background work must
	// stop with serve.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A stdout or stderr whose reader went away (audit.output: stdout,
	// the log) must cost records, not the process: Go's default for
	// SIGPIPE on those descriptors is to exit.
	signal.Ignore(syscall.SIGPIPE)
	log, err := g.logger()
	if err != nil {
		return err
	}
	metrics.SetBuildInfo(version, vcsRevision())
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	keyring := keymap.NewKeyring(st, cacheTTL(cfg))
	trail, err := audit.Open(cfg.Audit, log)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// Closed last, after every session ended: it writes what is queued.
	defer closeTrail(trail, log)
	pcfg := proxy.Config{
		Server:   cfg.Server,
		Upstream: cfg.Upstream,
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keyring,
		Logger:   log,
		Audit:    trail,
	}
	// The reloader's policy is the one grants read from Vault are
	// validated against, so it exists before them.
	var rl *reloader
	current := func() *policy.Policy {
		if rl == nil {
			return &cfg.Policy // the first read of the grants, at start
		}
		return rl.policy()
	}
	grants, err := grantsFromVault(ctx, cfg, st, log, current)
	if err != nil {
		return err
	}
	if grants != nil {
		pcfg.Grants = grants
	}
	srv, err := proxy.NewServer(pcfg)
	if err != nil {
		return err
	}
	rl = newReloader(g.configPath, cfg, srv, st, log)
	if grants != nil {
		rl.grants = grants
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	grantsHup := make(chan os.Signal, 1)
	go reloadOnHangup(ctx, rl, hup, grantsHup)
	if grants != nil {
		go grants.Run(ctx, grantsInterval(cfg), grantsHup)
		log.Info("role grants come from Vault", "path", cfg.Keystore.Vault.GrantsPath, "interval", grantsInterval(cfg).String())
	}
	if watch {
		if err := rl.watch(ctx); err != nil {
			return err
		}
	}
	if cfg.Server.MetricsListen != "" {
		// Listen before serving so that a bad address fails the start
		// instead of leaving the proxy without its metrics and probes.
		mln, err := net.Listen("tcp", cfg.Server.MetricsListen)
		if err != nil {
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
		ready := &readiness{srv: srv, st: st, keyring: keyring, policy: rl.policy}
		// IdleTimeout: a kept-alive connection would otherwise stay open for
		// good, each one a file descriptor the proxy's sessions need.
		ms := &http.Server{Handler: opsHandler(ready), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		go func() {
			if err := ms.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
		defer ms.Close()
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		srv.Close()
		return err
	case <-ctx.Done():
		srv.Close()
	case sig := <-stop:
		drain(ctx, srv, log, sig, rl.current.Load().Server.DrainTimeoutDuration(), stop)
	}
	return <-served
}

// reloadOnHangup reloads the policy on each SIGHUP, then has the Vault
// grants, validated against the new policy, reloaded too.
func reloadOnHangup(ctx context.Context, rl *reloader, hup <-chan os.Signal, grants chan<- os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-hup:
			_ = rl.reload(ctx, "SIGHUP")
			select {
			case grants <- sig:
			default: // a reload is pending already
			}
		}
	}
}

// drain shuts srv down gracefully within timeout; another signal on stop,
// or ctx's end, closes every session at once.
func drain(ctx context.Context, srv *proxy.Server, log *slog.Logger, sig os.Signal, timeout time.Duration, stop <-chan os.Signal) {
	log.Info("draining", "signal", sig.String(), "sessions", srv.Sessions(), "timeout", timeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-stop:
			log.Warn("second signal: closing every session now", "signal", sig.String())
		case <-ctx.Done():
		case <-done:
			return
		}
		srv.Close()
	}()
	// An error is the drain timeout: the sessions left were closed.
	timedOut := srv.Shutdown(dctx) != nil
	log.Info("drained", "timed_out", timedOut)
}

// trailFlushTimeout bounds writing out the audit records still queued at
// exit: an output that takes no data (a hung syslog server or network
// file system) must not keep the process from exiting.
const trailFlushTimeout = 10 * time.Second

func closeTrail(trail *audit.Logger, log *slog.Logger) {
	done := make(chan error, 1)
	go func() { done <- trail.Close() }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("closing the audit trail", "err", err)
		}
	case <-time.After(trailFlushTimeout):
		log.Error("the audit trail's output takes no data: records still queued at exit are lost", "waited", trailFlushTimeout.String())
	}
}
