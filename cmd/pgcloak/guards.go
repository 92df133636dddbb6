package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/migrator"
	"github.com/pgcloak/pgcloak/policy"
)

// newPolicyApplyCommand is `pgcloak policy apply`: it installs the database
// guards (see package dbguard) as the admin role.
func newPolicyApplyCommand(g *globalFlags) *cobra.Command {
	var dsn string
	apply := &cobra.Command{
		Use:   "apply",
		Short: "(admin) install the database guards: ciphertext checks on encrypted columns, the trusted pgcloak schema, refusal of renames and moves of policy objects; idempotent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			conn, err := connectForCheck(ctx, cfg, dsn)
			if err != nil {
				return fmt.Errorf("connecting to PostgreSQL: %w", err)
			}
			defer conn.Close(context.Background())
			return applyGuards(ctx, conn, cfg.Policy, cmd.OutOrStdout())
		},
	}
	apply.Flags().StringVar(&dsn, "dsn", "", "PostgreSQL connection string, as the admin role or a superuser (default: upstream.address with PG* environment variables)")
	return apply
}

// applyGuards installs or repairs every guard in one transaction, and says
// per policy column what it did.
func applyGuards(ctx context.Context, conn *pgx.Conn, pol policy.Policy, out io.Writer) error {
	if _, err := conn.Exec(ctx, colmigrate.DDL); err != nil {
		return fmt.Errorf("creating schema pgcloak: %w", err)
	}
	if err := migrator.CheckTrusted(ctx, conn, pol.AdminRole); err != nil {
		return err
	}
	idx := policy.NewIndex(pol)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, dbguard.GuardsDDL); err != nil {
			return fmt.Errorf("creating pgcloak.guarded_columns: %w", err)
		}
		for _, t := range idx.Tables() {
			for _, rule := range t.Columns {
				what, err := guardColumn(ctx, tx, rule)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: %s\n", rule.Name(), what)
			}
		}
		if err := forgetUnguarded(ctx, tx, idx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, dbguard.GuardFunctionDDL(pol.AdminRole)); err != nil {
			return fmt.Errorf("creating pgcloak.guard_ddl: %w", err)
		}
		if _, err := tx.Exec(ctx, dbguard.EventTriggerDDL); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				return fmt.Errorf("creating the event trigger needs a superuser (or rds_superuser and the like): %w", err)
			}
			return fmt.Errorf("creating the event trigger: %w", err)
		}
		fmt.Fprintln(out, "database guards installed")
		return nil
	})
}

// guardColumn records rule's column as guarded and gives it its ciphertext
// check when it holds only ciphertexts (bytea, no migration under way).
func guardColumn(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) (string, error) {
	typ, err := columnTypeOf(ctx, tx, rule)
	if errors.Is(err, pgx.ErrNoRows) {
		return "not in the database: not guarded", nil
	}
	if err != nil {
		return "", err
	}
	if typ != "bytea" {
		return fmt.Sprintf("%s in PostgreSQL, no check until pgcloak encrypt has run", typ), recordGuard(ctx, tx, rule, "", "")
	}
	busy, err := migrating(ctx, tx, rule)
	if err != nil {
		return "", err
	}
	if busy {
		return "being migrated, check added when the migration ends", recordGuard(ctx, tx, rule, "", "")
	}
	if ok, err := checkInPlace(ctx, tx, rule); err != nil || ok {
		return "check in place", err
	}
	if err := addCiphertextCheck(ctx, tx, rule); err != nil {
		return "", err
	}
	return "check added", nil
}

// rowQuerier is what reads one row: a connection or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func columnTypeOf(ctx context.Context, q rowQuerier, rule *policy.ColumnRule) (string, error) {
	return typeOfColumn(ctx, q, rule.Schema, rule.Table, rule.Column)
}

// typeOfColumn is PostgreSQL's name of schema.table.column's type;
// pgx.ErrNoRows when there is no such column.
func typeOfColumn(ctx context.Context, q rowQuerier, schema, table, column string) (string, error) {
	var typ string
	err := q.QueryRow(ctx, `SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped`,
		schema, table, column).Scan(&typ)
	return typ, err
}

// migrating reports an unfinished migration of rule's column.
func migrating(ctx context.Context, q rowQuerier, rule *policy.ColumnRule) (bool, error) {
	var m bool
	err := q.QueryRow(ctx, colmigrate.UnfinishedSQL, rule.Schema, rule.Table, rule.Column).Scan(&m)
	return m, err
}

// constraintDefQuery reads the definition of a column's ciphertext check
// as PostgreSQL prints it.
const constraintDefQuery = `SELECT pg_catalog.pg_get_constraintdef(k.oid) FROM pg_catalog.pg_constraint k
	JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3 AND k.convalidated`

// checkInPlace reports whether rule's column has the check recorded for
// it, unchanged.
func checkInPlace(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) (bool, error) {
	var recorded *string
	err := tx.QueryRow(ctx, `SELECT constraint_def FROM pgcloak.guarded_columns
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`, rule.Schema, rule.Table, rule.Column).Scan(&recorded)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && recorded == nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var def string
	err = tx.QueryRow(ctx, constraintDefQuery, rule.Schema, rule.Table, dbguard.ConstraintName(rule.Column)).Scan(&def)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil && def == *recorded, err
}

// addCiphertextCheck (re)creates rule's ciphertext check, which validates
// every row, and records it.
func addCiphertextCheck(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error {
	table := pgx.Identifier{rule.Schema, rule.Table}.Sanitize()
	name := dbguard.ConstraintName(rule.Column)
	prefix, minLen := keymap.CiphertextPrefix(), keymap.MinCiphertextLen
	if rule.Ordered() {
		prefix, minLen = keymap.OrderedPrefix(), keymap.MinOrderedCiphertextLen
	}
	check := dbguard.CiphertextCheck(pgx.Identifier{rule.Column}.Sanitize(), prefix, minLen)
	_, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s`, table, pgx.Identifier{name}.Sanitize()))
	if err != nil {
		return fmt.Errorf("%s: %w", rule.Name(), err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)`, table, pgx.Identifier{name}.Sanitize(), check))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23514" {
		return fmt.Errorf("%s holds values that are not pgcloak ciphertexts: run pgcloak encrypt on it first", rule.Name())
	}
	if err != nil {
		return fmt.Errorf("%s: adding its ciphertext check: %w", rule.Name(), err)
	}
	var def string
	if err := tx.QueryRow(ctx, constraintDefQuery, rule.Schema, rule.Table, name).Scan(&def); err != nil {
		return fmt.Errorf("%s: reading its ciphertext check: %w", rule.Name(), err)
	}
	return recordGuard(ctx, tx, rule, name, def)
}

// dropCiphertextCheck removes rule's check before its column holds
// plaintext again (pgcloak decrypt), when guards are installed.
func dropCiphertextCheck(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error {
	if installed, err := guardsInstalled(ctx, tx); err != nil || !installed {
		return err
	}
	table := pgx.Identifier{rule.Schema, rule.Table}.Sanitize()
	if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s`, table, pgx.Identifier{dbguard.ConstraintName(rule.Column)}.Sanitize())); err != nil {
		return err
	}
	return recordGuard(ctx, tx, rule, "", "")
}

// restoreCiphertextCheck adds rule's check once its column holds only
// ciphertexts again (the end of pgcloak encrypt), when guards are
// installed.
func restoreCiphertextCheck(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error {
	if installed, err := guardsInstalled(ctx, tx); err != nil || !installed {
		return err
	}
	return addCiphertextCheck(ctx, tx, rule)
}

// guardsInstalled reports whether pgcloak policy apply ran on the database.
func guardsInstalled(ctx context.Context, q rowQuerier) (bool, error) {
	var installed bool
	err := q.QueryRow(ctx, `SELECT pg_catalog.to_regclass('pgcloak.guarded_columns') IS NOT NULL`).Scan(&installed)
	return installed, err
}

// recordGuard records rule's column as guarded, with its check ("" for
// none yet).
func recordGuard(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule, name, def string) error {
	var n, d any
	if name != "" {
		n, d = name, def
	}
	_, err := tx.Exec(ctx, `INSERT INTO pgcloak.guarded_columns (schema_name, table_name, column_name, column_attnum, constraint_name, constraint_def)
		SELECT $1, $2, $3, (SELECT a.attnum FROM pg_catalog.pg_attribute a
			JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
			WHERE ns.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped), $4, $5
		ON CONFLICT (schema_name, table_name, column_name) DO UPDATE SET column_attnum = EXCLUDED.column_attnum,
			constraint_name = EXCLUDED.constraint_name, constraint_def = EXCLUDED.constraint_def`,
		rule.Schema, rule.Table, rule.Column, n, d)
	return err
}

// forgetUnguarded stops guarding columns the policy no longer names.
func forgetUnguarded(ctx context.Context, tx pgx.Tx, idx *policy.Index) error {
	rows, err := tx.Query(ctx, `SELECT schema_name::text, table_name::text, column_name::text, constraint_name::text FROM pgcloak.guarded_columns`)
	if err != nil {
		return err
	}
	type gone struct{ schema, table, column string }
	var stale []gone
	for rows.Next() {
		var g gone
		var constraint *string
		if err := rows.Scan(&g.schema, &g.table, &g.column, &constraint); err != nil {
			return err
		}
		if idx.Column(g.schema, g.table, g.column) == nil {
			stale = append(stale, g)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, g := range stale {
		if _, err := tx.Exec(ctx, `DELETE FROM pgcloak.guarded_columns WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`, g.schema, g.table, g.column); err != nil {
			return err
		}
	}
	return nil
}

// checkGuards is policy check's part: guards installed, and every policy
// column that holds only ciphertexts has its check as installed.
func checkGuards(ctx context.Context, conn *pgx.Conn, pol policy.Policy) []string {
	var table, trigger bool
	if err := conn.QueryRow(ctx, dbguard.GuardsStateQuery).Scan(&table, &trigger); err != nil {
		return []string{fmt.Sprintf("reading the database guards: %v", err)}
	}
	if !table || !trigger {
		return []string{"the database guards are not installed (or the event trigger is disabled): run pgcloak policy apply"}
	}
	var problems []string
	idx := policy.NewIndex(pol)
	for _, t := range idx.Tables() {
		for _, rule := range t.Columns {
			if p := checkColumnGuard(ctx, conn, rule); p != "" {
				problems = append(problems, p)
			}
		}
	}
	return problems
}

func checkColumnGuard(ctx context.Context, conn *pgx.Conn, rule *policy.ColumnRule) string {
	var recordedName, recordedDef *string
	err := conn.QueryRow(ctx, `SELECT constraint_name::text, constraint_def FROM pgcloak.guarded_columns
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`, rule.Schema, rule.Table, rule.Column).Scan(&recordedName, &recordedDef)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Sprintf("%s is not guarded: run pgcloak policy apply", rule.Name())
	case err != nil:
		return fmt.Sprintf("%s: reading its guard: %v", rule.Name(), err)
	case recordedName == nil:
		busy, _ := migrating(ctx, conn, rule)
		if typ, _ := columnTypeOf(ctx, conn, rule); typ == "bytea" && !busy {
			return fmt.Sprintf("%s has no ciphertext check: run pgcloak policy apply", rule.Name())
		}
		return ""
	}
	var def string
	err = conn.QueryRow(ctx, constraintDefQuery, rule.Schema, rule.Table, *recordedName).Scan(&def)
	if err != nil || recordedDef == nil || def != *recordedDef {
		return fmt.Sprintf("%s: its ciphertext check %s is missing or was changed: run pgcloak policy apply", rule.Name(), *recordedName)
	}
	return ""
}
