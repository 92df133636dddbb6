package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	srv, err := proxy.NewServer(proxy.Config{
		Server:   cfg.Server,
		Upstream: cfg.Upstream,
		Policy:   policy.NewIndex(cfg.Policy),
		Keyring:  keymap.NewKeyring(store, cacheTTL(cfg)),
		Logger:   log,
	})
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
