package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/policy"
)

// newAuthCommand is `pgcloak auth`: what the proxy needs in PostgreSQL to
// terminate SCRAM.
func newAuthCommand(g *globalFlags) *cobra.Command {
	auth := &cobra.Command{Use: "auth", Short: "authentication through pgcloak (server.auth)"}
	var dsn, role string
	var printSQL bool
	install := &cobra.Command{
		Use:   "install",
		Short: "(superuser) install " + dbguard.AuthFunction + ", through which server.auth.query.user looks up SCRAM verifiers; idempotent",
		Long: "Creates " + dbguard.AuthFunction + "(role) in the database of --dsn: a SECURITY DEFINER function that returns the SCRAM verifier " +
			"of a login role that is not a superuser, executable only by the auth role. Run it as a superuser in the database " +
			"server.auth.query.database names (or in every database clients use, when that is empty). --print shows the SQL instead.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			if role == "" {
				role = cfg.Server.Auth.Query.User
			}
			if role == "" {
				return errors.New("no auth role: set server.auth.query.user or pass --role")
			}
			ddl := dbguard.AuthFunctionDDL(role)
			if printSQL {
				_, err := fmt.Fprint(cmd.OutOrStdout(), ddl)
				return err
			}
			return installAuthFunction(cmd, cfg, dsn, role, ddl)
		},
	}
	install.Flags().StringVar(&dsn, "dsn", "", "PostgreSQL connection string, as a superuser (default: upstream.address with PG* environment variables)")
	install.Flags().StringVar(&role, "role", "", "the role the proxy looks verifiers up as (default: server.auth.query.user)")
	install.Flags().BoolVar(&printSQL, "print", false, "print the SQL instead of running it")
	auth.AddCommand(install)
	return auth
}

func installAuthFunction(cmd *cobra.Command, cfg *policy.Config, dsn, role, ddl string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	conn, err := connectForCheck(ctx, cfg, dsn)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user").Scan(&super); err != nil {
		return err
	}
	if !super {
		return errors.New("pgcloak auth install must run as a superuser: the function reads pg_authid")
	}
	if _, err := conn.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("installing %s: %w", dbguard.AuthFunction, err)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "installed %s in database %s, executable by %s\n", dbguard.AuthFunction, conn.Config().Database, role)
	return err
}
