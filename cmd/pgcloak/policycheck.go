package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

func newPolicyCommand(g *globalFlags) *cobra.Command {
	pol := &cobra.Command{Use: "policy", Short: "Work with the column policy"}
	var dsn string
	var offline bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the config strictly, then against the live schema and key store; exit 1 on any problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if offline {
				fmt.Fprintln(out, "config OK (schema and key store not checked: --offline)")
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			log, err := g.logger()
			if err != nil {
				return err
			}
			problems, warnings := checkLive(ctx, cfg, dsn, log)
			for _, w := range warnings {
				fmt.Fprintln(out, "warning:", w)
			}
			for _, p := range problems {
				fmt.Fprintln(out, "problem:", p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d problem(s) found", len(problems))
			}
			fmt.Fprintln(out, "policy OK: config, schema, database guards and key store agree")
			return nil
		},
	}
	check.Flags().StringVar(&dsn, "dsn", "", "PostgreSQL connection string for the schema check (default: upstream.address with PG* environment variables)")
	check.Flags().BoolVar(&offline, "offline", false, "check the config file only")
	pol.AddCommand(check, newPolicyApplyCommand(g))
	return pol
}

// checkLive compares the policy with the database schema and the key
// store. Warnings are what works but should be changed (an ordered
// column without an index); problems fail the check.
func checkLive(ctx context.Context, cfg *policy.Config, dsn string, log *slog.Logger) (problems, warnings []string) {
	idx := policy.NewIndex(cfg.Policy)
	problems = append(problems, checkKeys(ctx, cfg, idx, log)...)
	conn, err := connectForCheck(ctx, cfg, dsn)
	if err != nil {
		return append(problems, fmt.Sprintf("cannot connect to PostgreSQL for the schema check: %v", err)), nil
	}
	defer conn.Close(context.Background())
	problems = append(problems, checkSchema(ctx, conn, cfg.Policy)...)
	problems = append(problems, checkGuards(ctx, conn, cfg.Policy)...)
	return problems, checkOrderedIndexes(ctx, conn, cfg.Policy)
}

// orderedIndexQuery tells whether a column leads a btree index that
// covers every row (no predicate), which range queries and ORDER BY on
// an ordered column need to avoid reading the whole table.
const orderedIndexQuery = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
	JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
	JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
	JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
	JOIN pg_catalog.pg_am am ON am.oid = ic.relam
	JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
	WHERE n.nspname = $1 AND t.relname = $2 AND a.attname = $3 AND am.amname = 'btree' AND i.indpred IS NULL)`

// checkOrderedIndexes warns about ordered columns that no btree index
// leads.
func checkOrderedIndexes(ctx context.Context, conn *pgx.Conn, pol policy.Policy) []string {
	kinds := map[string]policy.KeyKind{}
	for _, k := range pol.Keys {
		kinds[k.Name] = k.Kind
	}
	var warnings []string
	for _, col := range pol.Columns {
		if kinds[col.Key] != policy.Ordered {
			continue
		}
		schema, table, _ := strings.Cut(col.Table, ".")
		var indexed bool
		if err := conn.QueryRow(ctx, orderedIndexQuery, schema, table, col.Column).Scan(&indexed); err != nil {
			warnings = append(warnings, fmt.Sprintf("line %d: reading the indexes of %s: %v", col.Line, col.Table, err))
			continue
		}
		if !indexed {
			warnings = append(warnings, fmt.Sprintf("line %d: ordered column %s.%s has no btree index: range queries and ORDER BY on it read the whole table (CREATE INDEX ON %s (%s))",
				col.Line, col.Table, col.Column, pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{col.Column}.Sanitize()))
		}
	}
	return warnings
}

func connectForCheck(ctx context.Context, cfg *policy.Config, dsn string) (*pgx.Conn, error) {
	pc, err := parseCheckDSN(cfg, dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, pc)
}

// parseCheckDSN is the connection the CLI makes straight to PostgreSQL:
// --dsn, else upstream.address with the PG* environment variables.
func parseCheckDSN(cfg *policy.Config, dsn string) (*pgx.ConnConfig, error) {
	if dsn == "" {
		host, port, err := net.SplitHostPort(cfg.Upstream.Address)
		if err != nil {
			return nil, err
		}
		dsn = fmt.Sprintf("host=%s port=%s", host, port)
	}
	return pgx.ParseConfig(dsn)
}

func checkKeys(ctx context.Context, cfg *policy.Config, idx *policy.Index, log *slog.Logger) []string {
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return []string{fmt.Sprintf("key store: %v", err)}
	}
	defer st.Close()
	infos, err := st.List(ctx)
	if err != nil {
		return []string{fmt.Sprintf("key store: %v", err)}
	}
	byName := map[string]keymap.KeyInfo{}
	for _, k := range infos {
		byName[k.Name] = k
	}
	var problems []string
	for _, k := range idx.Keys() {
		info, ok := byName[k.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("line %d: key %q does not exist in the key store (run: pgcloak keys create %s)", k.Line, k.Name, k.Name))
		case info.Kind != k.Kind:
			problems = append(problems, fmt.Sprintf("line %d: key %q is %s in the key store but %s in the policy", k.Line, k.Name, info.Kind, k.Kind))
		case info.State != keymap.KeyEnabled:
			problems = append(problems, fmt.Sprintf("line %d: key %q is %s", k.Line, k.Name, info.State))
		}
	}
	return problems
}

func checkSchema(ctx context.Context, conn *pgx.Conn, pol policy.Policy) []string {
	var problems []string
	missing := map[string]bool{}
	for _, col := range pol.Columns {
		schema, table, _ := strings.Cut(col.Table, ".")
		if missing[col.Table] {
			continue
		}
		if !tableExists(ctx, conn, schema, table) {
			missing[col.Table] = true
			problems = append(problems, fmt.Sprintf("line %d: table %s does not exist", col.Line, col.Table))
			continue
		}
		typ, err := typeOfColumn(ctx, conn, schema, table, col.Column)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			problems = append(problems, fmt.Sprintf("line %d: column %s.%s does not exist", col.Line, col.Table, col.Column))
		case err != nil:
			problems = append(problems, fmt.Sprintf("line %d: reading column %s.%s: %v", col.Line, col.Table, col.Column, err))
		case typ != "bytea":
			problems = append(problems, fmt.Sprintf("line %d: column %s.%s is %s; encrypted columns must be bytea", col.Line, col.Table, col.Column, typ))
		}
	}
	var migrations, trusted bool
	if err := conn.QueryRow(ctx, dbguard.MigrationsTrustQuery(pol.AdminRole)).Scan(&migrations, &trusted); err != nil {
		problems = append(problems, fmt.Sprintf("reading pgcloak.column_migrations: %v", err))
	} else if migrations && !trusted {
		problems = append(problems, "pgcloak.column_migrations is ignored by the proxy: it or schema pgcloak is not owned by admin_role (or a superuser), is not a table, or other roles may write it")
	}
	for _, r := range pol.Roles {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, r.Role).Scan(&exists); err != nil {
			return append(problems, fmt.Sprintf("reading roles: %v", err))
		}
		if !exists {
			problems = append(problems, fmt.Sprintf("line %d: role %q does not exist in the database", r.Line, r.Role))
		}
	}
	return problems
}

func tableExists(ctx context.Context, conn *pgx.Conn, schema, table string) bool {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))`, schema, table).Scan(&ok)
	return err == nil && ok
}
