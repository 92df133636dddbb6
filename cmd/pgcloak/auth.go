package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/scramauth"
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
			"server.auth.query.database names (the default without --dsn). --print shows the SQL instead.",
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
	auth.AddCommand(install, newAuthVerifierCommand())
	return auth
}

// newAuthVerifierCommand is `pgcloak auth verifier ROLE`: a SCRAM verifier
// for a password read from standard input, as a verifiers_file line, for
// PostgreSQLs where no role may read pg_authid.
func newAuthVerifierCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verifier ROLE",
		Short: "print a server.auth.verifiers_file line for ROLE with a password read from standard input, and the ALTER ROLE that sets the same verifier in PostgreSQL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			password := strings.TrimRight(line, "\r\n")
			if password == "" {
				return errors.New("no password on standard input")
			}
			v, err := scramauth.NewVerifier(password)
			if err != nil {
				return err
			}
			role := args[0]
			fmt.Fprintln(cmd.OutOrStdout(), proxy.AuthFileLine(role, v.String()))
			fmt.Fprintf(cmd.ErrOrStderr(), "set the same verifier in PostgreSQL (it stores it unchanged):\n  ALTER ROLE %s PASSWORD %s;\n",
				pgx.Identifier{role}.Sanitize(), dbguard.QuoteLiteral(v.String()))
			return nil
		},
	}
}

func installAuthFunction(cmd *cobra.Command, cfg *policy.Config, dsn, role, ddl string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	pc, err := parseCheckDSN(cfg, dsn)
	if err != nil {
		return err
	}
	// Without --dsn, the database the auth query uses.
	if db := cfg.Server.Auth.Query.Database; dsn == "" && db != "" {
		pc.Database = db
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if db := cfg.Server.Auth.Query.Database; db != "" && db != conn.Config().Database {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: installing in database %s, but server.auth.query.database is %s\n", conn.Config().Database, db)
	}
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
