package testenv

import (
	"context"

	"github.com/pgcloak/pgcloak/internal/pglocal"
)

// The local server lives in internal/pglocal, which `pgcloak demo` uses too without
// linking testenv's test machinery (testcontainers, Docker). These names keep testenv's API
// for tests and tools that configure a server of their own.

// LocalServerOptions configures StartLocalServer; see pglocal.Options.
type LocalServerOptions = pglocal.Options

// LocalServer is a PostgreSQL server run from this machine's binaries; see pglocal.Server.
type LocalServer = pglocal.Server

// EnvBinDir names the environment variable that pins the directory of initdb and postgres.
const EnvBinDir = pglocal.EnvBinDir

// The login roles to which a local server's pg_hba.conf gives one password method each;
// see pglocal.RoleMD5.
const (
	RoleMD5      = pglocal.RoleMD5
	RolePassword = pglocal.RolePassword
	RoleSCRAM    = pglocal.RoleSCRAM
)

// StartLocalServer initialises a cluster and starts it, returning once it accepts
// connections; ctx bounds the server's life. See pglocal.Start.
func StartLocalServer(ctx context.Context, opts LocalServerOptions) (*LocalServer, error) {
	return pglocal.Start(ctx, opts)
}

// FindBinDir returns the directory holding the PostgreSQL server binaries; see
// pglocal.FindBinDir.
func FindBinDir(ctx context.Context) (string, error) { return pglocal.FindBinDir(ctx) }
