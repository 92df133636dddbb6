package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/migrator"
	"github.com/pgcloak/pgcloak/policy"
)

// The commands encrypt, reencrypt and decrypt run a column migration
// (package migrator): this file is their flags, the migrator's
// configuration from them, and their output.

// migrateOptions are the flags of encrypt, reencrypt and decrypt.
type migrateOptions struct {
	table, column string
	dsn           string
	batch         int
	settle        time.Duration
	progress      string // auto | bar | log

	// afterBatch, when set, is called after each committed batch (tests
	// interrupt runs with it).
	afterBatch func(changed int)
}

func newMigrateCommands(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{
		migrateCommand(g, colmigrate.ActionEncrypt, "Turn a column of plaintext into ciphertext in place (resumable)"),
		migrateCommand(g, colmigrate.ActionReencrypt, "Move a column's rows to its key's newest version after a rotation (resumable)"),
		migrateCommand(g, colmigrate.ActionDecrypt, "Turn an encrypted column back into plaintext of its logical type (resumable)"),
	}
}

func migrateCommand(g *globalFlags, action colmigrate.Action, short string) *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   string(action) + " --table T --column C",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(cfg *policy.Config, st *store) error {
				log, err := g.logger()
				if err != nil {
					return err
				}
				m, err := newMigration(cmd.Context(), cfg, st, action, o, log, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer m.Close()
				return runMigrate(cmd.Context(), m, action, o, cmd.OutOrStdout())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.table, "table", "", "schema-qualified table (public is assumed without a schema)")
	f.StringVar(&o.column, "column", "", "the policy column to migrate")
	f.StringVar(&o.dsn, "dsn", "", "PostgreSQL connection string (default: upstream.address with PG* environment variables)")
	f.IntVar(&o.batch, "batch", 1000, "rows per transaction")
	f.DurationVar(&o.settle, "settle", 35*time.Second,
		"how long proxies take to see a migration (their catalog refresh is 30s): sweeping goes on this long, and decrypt waits this long before its first sweep and before changing the column's type")
	f.StringVar(&o.progress, "progress", "auto", "auto (a bar on a terminal, counts in the log otherwise), bar or log")
	cmd.MarkFlagRequired("table")
	cmd.MarkFlagRequired("column")
	return cmd
}

// schemaTable splits --table, public being the default schema.
func (o *migrateOptions) schemaTable() (schema, table string) {
	schema, table, ok := strings.Cut(o.table, ".")
	if !ok {
		schema, table = "public", o.table
	}
	return schema, table
}

// target names the column in the commands' output.
func (o *migrateOptions) target() string {
	schema, table := o.schemaTable()
	return pgx.Identifier{schema, table}.Sanitize() + "." + pgx.Identifier{o.column}.Sanitize()
}

// newMigration opens the migration o asks for.
func newMigration(ctx context.Context, cfg *policy.Config, st *store, action colmigrate.Action, o *migrateOptions, log *slog.Logger, errOut io.Writer) (*migrator.Migration, error) {
	schema, table := o.schemaTable()
	idx := policy.NewIndex(cfg.Policy)
	rule := idx.Column(schema, table, o.column)
	if rule == nil {
		return nil, fmt.Errorf("%s.%s.%s is not a column of the policy: add it to policy.columns first", schema, table, o.column)
	}
	if o.batch <= 0 {
		return nil, errors.New("--batch must be positive")
	}
	c, err := keymap.NewKeyring(st, time.Hour).Cipher(ctx, rule)
	if err != nil {
		return nil, err
	}
	pc, err := parseCheckDSN(cfg, o.dsn)
	if err != nil {
		return nil, err
	}
	return migrator.Open(ctx, migrator.Config{
		Action: action, Rule: rule, Policy: idx, Cipher: c,
		Keys: st, KeyCacheTTL: cacheTTL(cfg), Checks: ciphertextChecks{},
		Conn: pc, Batch: o.batch, Settle: o.settle, Log: log,
		Progress:   progressReporter(o.progress, log, errOut),
		AfterBatch: o.afterBatch,
	})
}

// runMigrate runs m and says what it did on out.
func runMigrate(ctx context.Context, m *migrator.Migration, action colmigrate.Action, o *migrateOptions, out io.Writer) error {
	res, err := m.Run(ctx)
	if err != nil {
		return err
	}
	if res.AlreadyDone {
		fmt.Fprintf(out, "%s of %s: already done\n", action, o.target())
		return nil
	}
	fmt.Fprintf(out, "%s of %s done: %d rows changed\n", action, o.target(), res.Changed)
	return nil
}

// ciphertextChecks lets the migrator drop and restore the ciphertext
// checks of pgcloak policy apply (guards.go).
type ciphertextChecks struct{}

func (ciphertextChecks) Drop(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error {
	return dropCiphertextCheck(ctx, tx, rule)
}

func (ciphertextChecks) Restore(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error {
	return restoreCiphertextCheck(ctx, tx, rule)
}

// progressReporter shows each sweep as mode (--progress) says: a bar on
// errOut, or counts in the log.
func progressReporter(mode string, log *slog.Logger, errOut io.Writer) func(what string, total int) migrator.Progress {
	useBar := mode == "bar"
	if mode == "auto" {
		f, ok := errOut.(*os.File)
		useBar = ok && term.IsTerminal(int(f.Fd()))
	}
	return func(what string, total int) migrator.Progress {
		p := &progress{log: log, what: what, max: total}
		if useBar {
			p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(errOut), progressbar.OptionSetDescription(what),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
		}
		return p
	}
}

// progress reports a sweep: a bar on a terminal, counts in the log.
type progress struct {
	bar  *progressbar.ProgressBar
	log  *slog.Logger
	what string
	n    int
	max  int
	last time.Time
}

func (p *progress) Add(n int) {
	p.n += n
	if p.bar != nil {
		p.bar.Add(n)
		return
	}
	if time.Since(p.last) >= 2*time.Second || p.n >= p.max {
		p.log.Info(p.what, "rows", p.n, "of", p.max)
		p.last = time.Now()
	}
}

func (p *progress) Done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
