// Package migrator runs pgcloak's column migrations (pgcloak encrypt,
// reencrypt and decrypt): it moves a column's rows between plaintext and
// ciphertext, in place, in batches, while applications keep using the
// column through the proxy.
//
// Plaintext rests in the bytea column as the text form of the value (see
// colmigrate); ciphertext is pgcloak's format. Every batch is a
// transaction that updates a row only if it still holds the value read
// (compare and set), so a run can be interrupted at any point and run
// again, and applications writing through the proxy meanwhile are never
// overwritten. The state of a migration is kept in
// pgcloak.column_migrations (colmigrate's contract) for proxies to see,
// and the run waits, where the proxies need it, for them to have seen it.
//
// Its surface is Open, Migration.Run and CheckTrusted; flags, output and
// progress display are the caller's.
package migrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// Config is what one run of a migration works on and with.
type Config struct {
	Action colmigrate.Action
	// Rule is the policy column to migrate; Policy is the whole policy
	// (its admin role, and the other policy columns, none of which may be
	// in the table's primary key).
	Rule   *policy.ColumnRule
	Policy *policy.Index
	// Cipher is the column's cipher; reencrypt moves rows to its primary
	// key version.
	Cipher *keymap.ColumnCipher
	// Keys is the key store, asked when the column's key was last rotated;
	// KeyCacheTTL is how long proxies keep a keyset (keystore.cache_ttl).
	Keys        keymap.Store
	KeyCacheTTL time.Duration
	// Checks are the column's ciphertext check, which decrypt drops and
	// encrypt restores; nil when there are none to manage.
	Checks Checks
	// Conn is where to connect, as the admin role or a superuser. Open
	// adds the settings text forms are printed under to a copy.
	Conn *pgx.ConnConfig
	// Batch is the number of rows per transaction.
	Batch int
	// Settle is how long proxies take to see a migration (their catalog
	// refresh): sweeping goes on this long, and decrypt waits this long
	// before its first sweep and before changing the column's type.
	Settle time.Duration
	Log    *slog.Logger
	// Progress, when set, is called at the start of each sweep with what
	// it does and the rows it expects to change.
	Progress func(what string, total int) Progress
	// AfterBatch, when set, is called after each committed batch with the
	// rows it changed (a caller may cancel the run there; tests do).
	AfterBatch func(changed int)
}

// Checks manage the ciphertext checks pgcloak policy apply installs on
// encrypted columns (when it has): decrypt drops the column's before it
// writes text forms, encrypt restores it once every row is a ciphertext
// again. Both run in the migration's transaction.
type Checks interface {
	Drop(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error
	Restore(ctx context.Context, tx pgx.Tx, rule *policy.ColumnRule) error
}

type noChecks struct{}

func (noChecks) Drop(context.Context, pgx.Tx, *policy.ColumnRule) error    { return nil }
func (noChecks) Restore(context.Context, pgx.Tx, *policy.ColumnRule) error { return nil }

// Progress follows one sweep.
type Progress interface {
	// Add counts rows the sweep has handled (changed or found changed
	// meanwhile).
	Add(rows int)
	// Done ends the sweep.
	Done()
}

// Result is what a completed run did.
type Result struct {
	// AlreadyDone: there was nothing to do (a decrypt run again).
	AlreadyDone bool
	// Changed is the number of rows the run changed.
	Changed int
}

// Migration is one run of a column migration, with its own connection.
type Migration struct {
	cfg       Config
	conn      *pgx.Conn
	primaryID []byte // for reencrypt: see primaryKeyID

	qualified string   // "schema"."table"
	column    string   // "column"
	pk        []string // quoted primary key columns
	pkTypes   []string
}

// Open connects and checks that the column's table can be migrated (it
// has a primary key without policy columns). It records nothing: Run
// does.
func Open(ctx context.Context, cfg Config) (*Migration, error) {
	if cfg.Batch <= 0 {
		return nil, errors.New("the batch size must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Checks == nil {
		cfg.Checks = noChecks{}
	}
	cc := cfg.Conn.Copy()
	maps.Copy(cc.RuntimeParams, colmigrate.SessionSettings())
	cc.RuntimeParams["lock_timeout"] = "10s"
	cc.RuntimeParams["application_name"] = "pgcloak-migrate"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	m := &Migration{
		cfg: cfg, conn: conn,
		qualified: pgx.Identifier{cfg.Rule.Schema, cfg.Rule.Table}.Sanitize(),
		column:    pgx.Identifier{cfg.Rule.Column}.Sanitize(),
	}
	if cfg.Action == colmigrate.ActionReencrypt {
		if m.primaryID, err = primaryKeyID(cfg.Cipher); err != nil {
			m.Close()
			return nil, err
		}
	}
	if err := m.loadPrimaryKey(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close closes the migration's connection.
func (m *Migration) Close() error {
	return m.conn.Close(context.Background())
}

func (m *Migration) loadPrimaryKey(ctx context.Context) error {
	rows, err := m.conn.Query(ctx, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, m.qualified)
	if err != nil {
		return fmt.Errorf("reading the primary key of %s: %w", m.qualified, err)
	}
	defer rows.Close()
	rule := m.cfg.Rule
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return err
		}
		if m.cfg.Policy.Column(rule.Schema, rule.Table, name) != nil {
			// Rows are named by their key in progress and errors.
			return fmt.Errorf("the primary key of %s includes policy column %s: migrations walk rows by a primary key that is not encrypted", m.qualified, name)
		}
		m.pk = append(m.pk, pgx.Identifier{name}.Sanitize())
		m.pkTypes = append(m.pkTypes, typ)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(m.pk) == 0 {
		return fmt.Errorf("%s has no primary key: migrations walk rows in primary-key order", m.qualified)
	}
	return nil
}

// Run performs the migration: prepare the column, sweep until nothing is
// left to do and the settle time has passed, finish the column. An
// interrupted run (ctx cancelled) is resumed by running it again.
func (m *Migration) Run(ctx context.Context) (Result, error) {
	start := time.Now()
	done, err := m.begin(ctx)
	if err != nil || done {
		return Result{AlreadyDone: done}, err
	}
	if err := m.awaitProxies(ctx); err != nil {
		return Result{}, err
	}
	total := 0
	for pass := 1; ; pass++ {
		n, err := m.sweep(ctx, pass)
		total += n
		if err != nil {
			if ctx.Err() != nil {
				return Result{Changed: total}, fmt.Errorf("interrupted after %d rows; run the same command again to resume", total)
			}
			return Result{Changed: total}, err
		}
		if n == 0 && time.Since(start) >= m.cfg.Settle {
			break
		}
		if n == 0 {
			select {
			case <-ctx.Done():
				return Result{Changed: total}, fmt.Errorf("interrupted after %d rows; run the same command again to resume", total)
			case <-time.After(min(time.Second, m.cfg.Settle)):
			}
		}
	}
	if err := m.finish(ctx); err != nil {
		return Result{Changed: total}, err
	}
	return Result{Changed: total}, nil
}

// awaitProxies waits, before the first sweep, until every proxy can find
// the rows the sweep converts. reencrypt moves rows to the newest key
// version, which a proxy's equality searches include only once its key
// cache has expired after the rotation (plus the settle time for a reload
// in flight, which takes up to the key store's timeout); decrypt turns
// rows into text forms, which a proxy looks for once it has seen the
// migration (its catalog refresh, covered by the settle time). encrypt
// needs no wait: until a proxy sees it, the proxy refuses searches on the
// column.
func (m *Migration) awaitProxies(ctx context.Context) error {
	var until time.Time
	switch m.cfg.Action {
	case colmigrate.ActionReencrypt:
		infos, err := m.cfg.Keys.List(ctx)
		if err != nil {
			return err
		}
		for _, k := range infos {
			if k.Name == m.cfg.Rule.KeyName && !k.Rotated.IsZero() {
				until = k.Rotated.Add(m.cfg.KeyCacheTTL + m.cfg.Settle)
			}
		}
	case colmigrate.ActionDecrypt:
		until = time.Now().Add(m.cfg.Settle)
	}
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	m.cfg.Log.Info("waiting for proxies to catch up before the first sweep", "column", m.cfg.Rule.Name(), "action", string(m.cfg.Action), "wait", wait.Round(time.Second))
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted before the first sweep; run the same command again to resume")
	case <-time.After(wait):
		return nil
	}
}
