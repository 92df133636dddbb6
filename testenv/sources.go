package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
)

// sourceConfig is what the environment says about sources.
type sourceConfig struct {
	dsn  string // PGCLOAK_TEST_DSN
	only string // PGCLOAK_TEST_SOURCE
}

func sourceConfigFromEnv() sourceConfig {
	return sourceConfig{dsn: os.Getenv(EnvDSN), only: os.Getenv(EnvSource)}
}

type source struct {
	name  string
	start func(context.Context) (*server, error)
	// final: when this source is configured but fails, later sources are not tried, so a
	// broken PGCLOAK_TEST_DSN is reported rather than silently replaced.
	final bool
	// notConfigured, when set, is why the source is not tried.
	notConfigured string
}

// acquire tries the sources in order and returns the first server, or why none.
func acquire(ctx context.Context, cfg sourceConfig) (*server, []string) {
	var reasons []string
	for _, src := range sources(cfg) {
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

func sources(cfg sourceConfig) []source {
	all := []source{
		{name: SourceEnv, final: true, start: func(ctx context.Context) (*server, error) { return envSource(ctx, cfg.dsn) }},
		{name: SourceDocker, start: dockerSource},
		{name: SourceLocal, start: localSource},
	}
	if cfg.dsn == "" {
		all[0].notConfigured = EnvDSN + " not set"
	}
	valid := false
	for i := range all {
		valid = valid || all[i].name == cfg.only
		if cfg.only != "" && all[i].name != cfg.only {
			all[i].notConfigured = fmt.Sprintf("not selected (%s=%s)", EnvSource, cfg.only)
		}
	}
	if cfg.only != "" && !valid {
		return []source{{name: EnvSource, notConfigured: fmt.Sprintf("%q is none of env, docker, local", cfg.only)}}
	}
	return all
}

func envSource(ctx context.Context, dsn string) (*server, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvDSN, err)
	}
	pg := PG{Host: cfg.Host, Port: int(cfg.Port), Superuser: cfg.User, Password: cfg.Password, Source: SourceEnv}
	return newServer(ctx, pg, cfg, nil)
}

// localSource starts a server from this machine's binaries with everything the proxy's
// tests inspect: a statement log and TLS.
func localSource(ctx context.Context) (*server, error) {
	ls, err := StartLocalServer(ctx, LocalServerOptions{LogStatements: true, TLS: true})
	if err != nil {
		return nil, err
	}
	pg := PG{
		Host:             ls.Host,
		Port:             ls.Port,
		Superuser:        ls.Superuser,
		StatementLogPath: ls.LogPath,
		CACertFile:       ls.CACertFile,
		Source:           SourceLocal,
	}
	cfg, err := pgx.ParseConfig(ls.DSN("postgres"))
	if err != nil {
		return nil, errors.Join(err, ls.Stop())
	}
	srv, err := newServer(ctx, pg, cfg, ls.Stop)
	if err != nil {
		return nil, errors.Join(err, ls.Stop())
	}
	return srv, nil
}
