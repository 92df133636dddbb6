package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

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
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, g, cfg, watch)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch-config", false, "reload the policy when the config file changes (as SIGHUP does)")
	return cmd
}

func serve(ctx context.Context, g *globalFlags, cfg *policy.Config, watch bool) error {
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
	pcfg := proxy.Config{
		Server:   cfg.Server,
		Upstream: cfg.Upstream,
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keyring,
		Logger:   log,
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
		ms := &http.Server{Handler: opsHandler(ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ms.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
		defer ms.Close()
	}
	return srv.ListenAndServe(ctx)
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
