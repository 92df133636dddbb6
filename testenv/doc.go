// Package testenv owns the real PostgreSQL and Vault that pgcloak's tests run against.
//
// Tests get one server per test binary, started lazily by the first Postgres call and
// stopped by Run, and a fresh empty database per Postgres call. The server comes from the
// first source that works, in this order:
//
//  1. PGCLOAK_TEST_DSN: a superuser DSN of a server someone else runs ("env");
//  2. Docker, through testcontainers-go's postgres module, postgres:15 ("docker") — tried
//     only when a Docker engine answers on its socket, so a machine without one falls
//     through in well under two seconds;
//  3. the PostgreSQL server binaries of this machine, in a throwaway data directory
//     ("local"); see StartLocalServer.
//
// PGCLOAK_TEST_SOURCE=env|docker|local restricts the choice to one source.
// When no source works a test is skipped, or fails when PGCLOAK_TEST_REQUIRE=1; either way
// the message gives the reason of every source tried.
//
// Vault works alike: one server per test binary, started by the first Vault call and
// stopped by Run, and a fresh KV v2 mount and transit mount (with the KEK) per call. Its
// sources, in order: VAULT_ADDR + VAULT_TOKEN (+ VAULT_CACERT) ("env"); Docker with
// hashicorp/vault in dev mode ("docker"); a vault binary on PATH, or else Vault built from
// Go modules into <user cache dir>/pgcloak/vault/<version> ("local": TLS, file storage,
// initialised and unsealed here, so VaultEnv.Stop and Start keep its data). The first build
// takes 5-30 minutes and about 4 GB of module cache; later runs reuse the binary.
// PGCLOAK_TEST_VAULT_SOURCE=env|docker|binary|build restricts the choice to one source;
// PGCLOAK_TEST_REQUIRE applies as for PostgreSQL.
//
// The local PostgreSQL server itself lives in internal/pglocal (its process helpers in
// internal/procgroup, its TLS files in internal/localca), which `pgcloak demo` uses
// directly so that the release binary links none of this package's test machinery;
// StartLocalServer, LocalServer and the rest re-export it for tests.
package testenv
