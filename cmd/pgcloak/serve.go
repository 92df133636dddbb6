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

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
)

func newServeCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, g, cfg)
		},
	}
}

func serve(ctx context.Context, g *globalFlags, cfg *policy.Config) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	pcfg := proxy.Config{
		Server:   cfg.Server,
		Upstream: cfg.Upstream,
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keymap.NewKeyring(st, cacheTTL(cfg)),
		Logger:   log,
	}
	grants, err := grantsFromVault(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	if grants != nil {
		pcfg.Grants = grants
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go grants.Run(ctx, grantsInterval(cfg), hup)
		log.Info("role grants come from Vault", "path", cfg.Keystore.Vault.GrantsPath, "interval", grantsInterval(cfg).String())
	}
	srv, err := proxy.NewServer(pcfg)
	if err != nil {
		return err
	}
	if cfg.Server.MetricsListen != "" {
		// Listen before serving so that a bad address fails the start
		// instead of leaving the proxy without its metrics.
		mln, err := net.Listen("tcp", cfg.Server.MetricsListen)
		if err != nil {
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
		ms := &http.Server{Handler: promhttp.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ms.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
		defer ms.Close()
	}
	return srv.ListenAndServe(ctx)
}
