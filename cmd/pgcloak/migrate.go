package main

import (
	"context"
	"encoding/binary"
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

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// A column migration moves a column's rows between plaintext and
// ciphertext, in place, in batches. Plaintext rests in the bytea column as
// the UTF-8 text form of the value (as PostgreSQL prints it with TimeZone
// UTC and DateStyle ISO); ciphertext is pgcloak's format. Every batch is a
// transaction that updates a row only if it still holds the value read
// (compare and set), so a run can be interrupted at any point and run
// again, and applications writing through the proxy meanwhile are never
// overwritten. The state of a migration is kept in pgcloak.column_migrations
// for proxies to see.

type migrateAction string

const (
	actionEncrypt   migrateAction = "encrypt"
	actionReencrypt migrateAction = "reencrypt"
	actionDecrypt   migrateAction = "decrypt"
)

// migrateOptions are the flags of encrypt, reencrypt and decrypt.
type migrateOptions struct {
	table, column string
	dsn           string
	batch         int
	settle        time.Duration
	progress      string // auto | bar | log
}

func newMigrateCommands(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{
		migrateCommand(g, actionEncrypt, "Turn a column of plaintext into ciphertext in place (resumable)"),
		migrateCommand(g, actionReencrypt, "Move a column's rows to its key's newest version after a rotation (resumable)"),
		migrateCommand(g, actionDecrypt, "Turn an encrypted column back into plaintext of its logical type (resumable)"),
	}
}

func migrateCommand(g *globalFlags, action migrateAction, short string) *cobra.Command {
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
				defer m.conn.Close(context.Background())
				return m.run(cmd.Context(), cmd.OutOrStdout())
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

// migration is one run of encrypt, reencrypt or decrypt.
type migration struct {
	action migrateAction
	opts   *migrateOptions
	log    *slog.Logger
	errOut io.Writer

	conn *pgx.Conn
	// adminRole is policy.admin_role: the only owner, with superusers,
	// whose pgcloak.column_migrations the proxies believe.
	adminRole string
	rule      *policy.ColumnRule
	keys      keymap.Store
	// keyCacheTTL is how long proxies keep a keyset (keystore.cache_ttl).
	keyCacheTTL time.Duration
	cipher      *keymap.ColumnCipher
	primaryID   []byte // for reencrypt: see primaryKeyID
	codec       *keymap.Codec
	tc          *keymap.TextContext

	qualified string   // "schema"."table"
	column    string   // "column"
	pk        []string // quoted primary key columns
	pkTypes   []string

	// afterBatch, when set, is called after each committed batch (tests
	// interrupt runs with it).
	afterBatch func(changed int)
}

func newMigration(ctx context.Context, cfg *policy.Config, st *store, action migrateAction, o *migrateOptions, log *slog.Logger, errOut io.Writer) (*migration, error) {
	schema, table, ok := strings.Cut(o.table, ".")
	if !ok {
		schema, table = "public", o.table
	}
	rule := policy.NewIndex(cfg.Policy).Column(schema, table, o.column)
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
	conn, err := connectForMigration(ctx, cfg, o.dsn)
	if err != nil {
		return nil, err
	}
	m := &migration{
		action: action, opts: o, log: log, errOut: errOut,
		conn: conn, adminRole: cfg.Policy.AdminRole, rule: rule, keys: st, keyCacheTTL: cacheTTL(cfg), cipher: c, codec: keymap.CodecFor(rule.Type),
		tc:        &keymap.TextContext{Location: time.UTC},
		qualified: pgx.Identifier{schema, table}.Sanitize(),
		column:    pgx.Identifier{o.column}.Sanitize(),
	}
	if action == actionReencrypt {
		if m.primaryID, err = primaryKeyID(c); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	if err := m.loadPrimaryKey(ctx, policy.NewIndex(cfg.Policy)); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return m, nil
}

func connectForMigration(ctx context.Context, cfg *policy.Config, dsn string) (*pgx.Conn, error) {
	pc, err := parseCheckDSN(cfg, dsn)
	if err != nil {
		return nil, err
	}
	// Plaintext is moved in its text form, which these settings fix.
	pc.RuntimeParams["TimeZone"] = "UTC"
	pc.RuntimeParams["DateStyle"] = "ISO, MDY"
	pc.RuntimeParams["extra_float_digits"] = "1"
	pc.RuntimeParams["bytea_output"] = "hex"
	pc.RuntimeParams["lock_timeout"] = "10s"
	pc.RuntimeParams["application_name"] = "pgcloak-migrate"
	return pgx.ConnectConfig(ctx, pc)
}

func (m *migration) loadPrimaryKey(ctx context.Context, idx *policy.Index) error {
	rows, err := m.conn.Query(ctx, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, m.qualified)
	if err != nil {
		return fmt.Errorf("reading the primary key of %s: %w", m.qualified, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return err
		}
		if idx.Column(m.rule.Schema, m.rule.Table, name) != nil {
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

// ciphertextHead is how every pgcloak ciphertext starts (magic, version).
var ciphertextHead = keymap.CiphertextHeader()

// run performs the migration: prepare the column, sweep until nothing is
// left to do and the settle time has passed, finish the column.
func (m *migration) run(ctx context.Context, out io.Writer) error {
	start := time.Now()
	done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	if done {
		fmt.Fprintf(out, "%s of %s.%s: already done\n", m.action, m.qualified, m.column)
		return nil
	}
	if err := m.awaitProxies(ctx); err != nil {
		return err
	}
	total := 0
	for pass := 1; ; pass++ {
		n, err := m.sweep(ctx, pass)
		total += n
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted after %d rows; run the same command again to resume", total)
			}
			return err
		}
		if n == 0 && time.Since(start) >= m.opts.settle {
			break
		}
		if n == 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("interrupted after %d rows; run the same command again to resume", total)
			case <-time.After(min(time.Second, m.opts.settle)):
			}
		}
	}
	if err := m.finish(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s of %s.%s done: %d rows changed\n", m.action, m.qualified, m.column, total)
	return nil
}

// awaitProxies waits, before the first sweep, until every proxy can find
// the rows the sweep converts. reencrypt moves rows to the newest key
// version, which a proxy's equality searches include only once its key
// cache has expired after the rotation (plus --settle for a reload in
// flight, which takes up to the key store's timeout); decrypt turns rows
// into text forms, which a proxy looks for once it has seen the migration
// (its catalog refresh, covered by --settle). encrypt needs no wait: until
// a proxy sees it, the proxy refuses searches on the column.
func (m *migration) awaitProxies(ctx context.Context) error {
	var until time.Time
	switch m.action {
	case actionReencrypt:
		infos, err := m.keys.List(ctx)
		if err != nil {
			return err
		}
		for _, k := range infos {
			if k.Name == m.rule.KeyName && !k.Rotated.IsZero() {
				until = k.Rotated.Add(m.keyCacheTTL + m.opts.settle)
			}
		}
	case actionDecrypt:
		until = time.Now().Add(m.opts.settle)
	}
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	m.log.Info("waiting for proxies to catch up before the first sweep", "column", m.rule.Name(), "action", string(m.action), "wait", wait.Round(time.Second))
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted before the first sweep; run the same command again to resume")
	case <-time.After(wait):
		return nil
	}
}

// begin records the migration and, for encrypt, turns the column into
// bytea holding each value's text form, in the same transaction: a proxy
// sees the column either of its own type with no migration (writes
// refused) or bytea being encrypted, never a bytea it takes for plain. It
// reports done for a decrypt that has nothing left to do, and refuses an
// action the column's recorded state does not allow.
func (m *migration) begin(ctx context.Context) (done bool, err error) {
	if _, err := m.conn.Exec(ctx, migrationsDDL); err != nil {
		return false, fmt.Errorf("creating pgcloak.column_migrations: %w", err)
	}
	if err := checkMigrationsTrusted(ctx, m.conn, m.adminRole); err != nil {
		return false, err
	}
	err = pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		prev, err := m.recorded(ctx, tx)
		if err != nil {
			return err
		}
		typ, err := m.columnType(ctx, tx)
		if err != nil {
			return err
		}
		alter := false
		switch m.action {
		case actionReencrypt:
			if prev.unfinished() && prev.action != string(actionReencrypt) {
				return fmt.Errorf("%s has an unfinished pgcloak %s: run it again to finish it first", m.rule.Name(), prev.baseAction())
			}
			if typ != "bytea" || prev.is(actionDecrypt, true) {
				return fmt.Errorf("%s holds plaintext (%s): run pgcloak encrypt first", m.rule.Name(), typ)
			}
		case actionDecrypt:
			if prev.is(actionDecrypt, true) && (typ != "bytea" || m.rule.Type == policy.TypeBytea) {
				done = true
				return nil
			}
			if typ != "bytea" {
				return fmt.Errorf("%s is %s in PostgreSQL: it holds no ciphertext to decrypt", m.rule.Name(), typ)
			}
		case actionEncrypt:
			// Text forms are there already while an encrypt or decrypt
			// is unfinished; otherwise the column gets them.
			migrating := prev.unfinished() && prev.action != string(actionReencrypt)
			alter = !migrating && (typ != "bytea" || m.rule.Type == policy.TypeBytea)
		}
		if m.action == actionDecrypt {
			// Text forms are about to be written: the ciphertext
			// check goes first.
			if err := dropCiphertextCheck(ctx, tx, m.rule); err != nil {
				return err
			}
		}
		if err := m.record(ctx, tx, string(m.action)); err != nil {
			return err
		}
		if !alter {
			return nil
		}
		// A bytea column of logical type bytea holds raw plaintext: it
		// gets text forms too, so that proxies and the sweep read every
		// unconverted value the same way. Ciphertexts (a column encrypted
		// before) stay.
		using := fmt.Sprintf(`pg_catalog.convert_to(%s::text, 'UTF8')`, m.column)
		if typ == "bytea" {
			using = fmt.Sprintf(`CASE WHEN pg_catalog.substr(%[1]s, 1, %[3]d) = '\x%[4]x'::bytea THEN %[1]s ELSE %[2]s END`,
				m.column, using, len(ciphertextHead), ciphertextHead)
		}
		m.log.Info("changing the column to bytea (text form of each value)", "column", m.rule.Name(), "from", typ)
		_, err = tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN %s TYPE bytea USING %s`, m.qualified, m.column, using))
		return err
	})
	return done, err
}

// recordedMigration is a column's row in pgcloak.column_migrations.
type recordedMigration struct {
	action   string // "" when there is none
	finished bool
}

func (r recordedMigration) unfinished() bool { return r.action != "" && !r.finished }

func (r recordedMigration) is(a migrateAction, finished bool) bool {
	return r.baseAction() == string(a) && r.finished == finished
}

// baseAction is the action, decrypt for decrypt-finishing.
func (r recordedMigration) baseAction() string {
	if r.action == actionDecryptFinishing {
		return string(actionDecrypt)
	}
	return r.action
}

// recorded reads the column's migration row, locking it.
func (m *migration) recorded(ctx context.Context, tx pgx.Tx) (recordedMigration, error) {
	var r recordedMigration
	err := tx.QueryRow(ctx, `SELECT action, finished IS NOT NULL FROM pgcloak.column_migrations
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3 FOR UPDATE`,
		m.rule.Schema, m.rule.Table, m.rule.Column).Scan(&r.action, &r.finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return recordedMigration{}, nil
	}
	return r, err
}

// record writes the migration's row with action, unfinished. A run that
// resumes the same action keeps its start time.
func (m *migration) record(ctx context.Context, tx pgx.Tx, action string) error {
	_, err := tx.Exec(ctx, `INSERT INTO pgcloak.column_migrations AS cm (schema_name, table_name, column_name, action, key_name, started)
		VALUES ($1, $2, $3, $4, $5, now())
		ON CONFLICT (schema_name, table_name, column_name) DO UPDATE SET action = EXCLUDED.action, key_name = EXCLUDED.key_name,
			started = CASE WHEN cm.finished IS NULL AND cm.action = EXCLUDED.action THEN cm.started ELSE now() END, finished = NULL`,
		m.rule.Schema, m.rule.Table, m.rule.Column, action, m.rule.KeyName)
	return err
}

const migrationsDDL = `CREATE SCHEMA IF NOT EXISTS pgcloak;
CREATE TABLE IF NOT EXISTS pgcloak.column_migrations (
  schema_name name NOT NULL,
  table_name  name NOT NULL,
  column_name name NOT NULL,
  action      text NOT NULL,
  key_name    text NOT NULL,
  started     timestamptz NOT NULL,
  finished    timestamptz,
  PRIMARY KEY (schema_name, table_name, column_name)
);
GRANT USAGE ON SCHEMA pgcloak TO PUBLIC;
GRANT SELECT ON pgcloak.column_migrations TO PUBLIC;`

// checkMigrationsTrusted refuses to record a migration where the proxies
// would not believe it: in a pgcloak schema or table that someone else
// made (a role allowed to create schemas could have, to fake states), or
// that others may write.
func checkMigrationsTrusted(ctx context.Context, conn *pgx.Conn, adminRole string) error {
	var exists, trusted bool
	if err := conn.QueryRow(ctx, dbguard.MigrationsTrustQuery(adminRole)).Scan(&exists, &trusted); err != nil {
		return fmt.Errorf("checking pgcloak.column_migrations: %w", err)
	}
	if !exists || !trusted {
		who := "a superuser"
		if adminRole != "" {
			who = fmt.Sprintf("policy.admin_role %q or a superuser", adminRole)
		}
		return fmt.Errorf("pgcloak.column_migrations and schema pgcloak must be a table and a schema owned by %s, writable by no other role; "+
			"run migrations as that role, and drop or re-own a pgcloak schema someone else created", who)
	}
	return nil
}

func (m *migration) columnType(ctx context.Context, tx pgx.Tx) (string, error) {
	var typ string
	err := tx.QueryRow(ctx, `SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
		WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped`, m.qualified, m.rule.Column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("column %s does not exist", m.rule.Name())
	}
	return typ, err
}

// finish marks the migration done. decrypt also gives the column back its
// logical type, in two steps: first it records that it is finishing, which
// makes proxies refuse writes and searches on the column, and waits the
// settle time so that every proxy has seen that; then, after a last sweep,
// it changes the type and marks the migration finished in one transaction.
// A proxy that wrote a bytea into the column after its type changed would
// store the bytea's hex text in a text column.
func (m *migration) finish(ctx context.Context) error {
	if m.action == actionDecrypt {
		if err := m.finishDecrypt(ctx); err != nil {
			return err
		}
	}
	if m.action == actionEncrypt {
		// Every row is a ciphertext now: the column gets its check back.
		err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error { return restoreCiphertextCheck(ctx, tx, m.rule) })
		if err != nil {
			return err
		}
	}
	_, err := m.conn.Exec(ctx, `UPDATE pgcloak.column_migrations SET finished = now()
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`, m.rule.Schema, m.rule.Table, m.rule.Column)
	return err
}

// awaitOlderTransactions waits until no other client session of the
// database is in a transaction that began before since: at REPEATABLE
// READ or SERIALIZABLE such a transaction still reads the migration state
// from before, so a proxy reloading its catalog in it would not see the
// finishing phase. (Sessions of other roles show no transaction start
// unless the migration's role may read all statistics; those are not
// waited for.)
func (m *migration) awaitOlderTransactions(ctx context.Context, since time.Time) error {
	logged := false
	for {
		var n int
		if err := m.conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
			WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
			  AND backend_type = 'client backend' AND xact_start < $1`, since).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if !logged {
			m.log.Info("waiting for transactions that began before the finishing phase to end", "column", m.rule.Name(), "transactions", n)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted before the column got its type back; run the same command again to resume")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// actionDecryptFinishing is recorded while decrypt waits for proxies to stop
// writing before its ALTER (see finish). The proxy knows it by this name.
const actionDecryptFinishing = "decrypt-finishing"

func (m *migration) finishDecrypt(ctx context.Context) error {
	if err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		return m.record(ctx, tx, actionDecryptFinishing)
	}); err != nil {
		return err
	}
	var recorded time.Time
	if err := m.conn.QueryRow(ctx, `SELECT pg_catalog.clock_timestamp()`).Scan(&recorded); err != nil {
		return err
	}
	m.log.Info("waiting for proxies to stop writing the column before changing its type", "column", m.rule.Name(), "wait", m.opts.settle)
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted before the column got its type back; run the same command again to resume")
	case <-time.After(m.opts.settle):
	}
	if err := m.awaitOlderTransactions(ctx, recorded); err != nil {
		return err
	}
	if _, err := m.sweep(ctx, 0); err != nil {
		return err
	}
	m.log.Info("changing the column back to its logical type", "column", m.rule.Name(), "type", sqlType(m.rule.Type))
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s`,
			m.qualified, m.column, sqlType(m.rule.Type), fromTextForm(m.column, m.rule.Type))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE pgcloak.column_migrations SET action = $4, finished = now()
			WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`, m.rule.Schema, m.rule.Table, m.rule.Column, string(actionDecrypt))
		return err
	})
}

// sqlType is the PostgreSQL type a decrypted column gets back.
func sqlType(t policy.LogicalType) string {
	if t == policy.TypeChar {
		return "bpchar" // plain "char" would be char(1)
	}
	return string(t)
}

// fromTextForm converts a bytea column holding text forms to type t.
func fromTextForm(col string, t policy.LogicalType) string {
	text := "pg_catalog.convert_from(" + col + ", 'UTF8')"
	if t == policy.TypeBytea {
		return "pg_catalog.decode(substring(" + text + " from 3), 'hex')"
	}
	return text + "::" + sqlType(t)
}

// todo is the condition of the rows a sweep must change.
func (m *migration) todo() string {
	head := "substring(" + m.column + " from 1 for 5)"
	switch m.action {
	case actionEncrypt:
		return m.column + " IS NOT NULL AND " + head + " IS DISTINCT FROM $1"
	case actionReencrypt:
		// The key id follows the header and Tink's start byte.
		return head + " = $1 AND substring(" + m.column + " from 7 for 4) IS DISTINCT FROM $2"
	default:
		return head + " = $1"
	}
}

// sweep walks the whole table once in primary-key order, changing every
// row that needs it, one transaction per batch. It returns the rows
// changed.
func (m *migration) sweep(ctx context.Context, pass int) (int, error) {
	remaining, err := m.count(ctx)
	if err != nil || remaining == 0 {
		return 0, err
	}
	bar := m.newProgress(remaining, pass)
	defer bar.done()
	var after []string // primary key of the last row seen, as text
	changed := 0
	for {
		rows, last, err := m.nextBatch(ctx, after)
		if err != nil {
			return changed, err
		}
		if len(rows) == 0 {
			return changed, nil
		}
		n, err := m.apply(ctx, rows)
		if err != nil {
			return changed, err
		}
		changed += n
		bar.add(len(rows))
		after = last
		if m.afterBatch != nil {
			m.afterBatch(n)
		}
	}
}

func (m *migration) params() []any {
	switch m.action {
	case actionReencrypt:
		return []any{ciphertextHead, m.primaryID}
	default:
		return []any{ciphertextHead}
	}
}

// primaryKeyID is the id of the key version new values are encrypted
// under, big-endian, as ciphertexts carry it.
func primaryKeyID(c *keymap.ColumnCipher) ([]byte, error) {
	ct, err := c.Encrypt(nil)
	if err != nil {
		return nil, err
	}
	id, ok := keymap.KeyID(ct)
	if !ok {
		return nil, errors.New("the key's ciphertexts have an unknown layout")
	}
	return binary.BigEndian.AppendUint32(nil, id), nil
}

func (m *migration) count(ctx context.Context) (int, error) {
	var n int
	err := m.conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s`, m.qualified, m.todo()), m.params()...).Scan(&n)
	return n, err
}

// row is one row to change: its key (text), the value read and the new one.
type row struct {
	key      []string
	old, new []byte
}

func (m *migration) nextBatch(ctx context.Context, after []string) ([]row, []string, error) {
	keys := strings.Join(m.pk, ", ")
	textKeys := make([]string, len(m.pk))
	for i, k := range m.pk {
		textKeys[i] = k + "::text"
	}
	cursor := "true"
	if after != nil {
		casts := make([]string, len(m.pk))
		for i := range m.pk {
			casts[i] = fmt.Sprintf("($%d::text[])[%d]::%s", len(m.params())+1, i+1, m.pkTypes[i])
		}
		cursor = "(" + keys + ") > (" + strings.Join(casts, ", ") + ")"
	}
	args := m.params()
	if after != nil {
		args = append(args, after)
	}
	q := fmt.Sprintf(`SELECT %s, %s FROM %s WHERE %s AND %s ORDER BY %s LIMIT %d`,
		strings.Join(textKeys, ", "), m.column, m.qualified, cursor, m.todo(), keys, m.opts.batch)
	rs, err := m.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		vals := make([]any, len(m.pk)+1)
		key := make([]string, len(m.pk))
		for i := range key {
			vals[i] = &key[i]
		}
		var old []byte
		vals[len(m.pk)] = &old
		if err := rs.Scan(vals...); err != nil {
			return nil, nil, err
		}
		nv, err := m.convert(old)
		if err != nil {
			return nil, nil, fmt.Errorf("row (%s) = (%s): %w", keys, strings.Join(key, ", "), err)
		}
		out = append(out, row{key: key, old: old, new: nv})
	}
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	if len(out) == 0 {
		return nil, nil, nil
	}
	return out, out[len(out)-1].key, nil
}

// convert computes a row's new value. Errors never include the value.
func (m *migration) convert(old []byte) ([]byte, error) {
	switch m.action {
	case actionEncrypt:
		canonical, err := m.codec.Canonical(0, old, m.tc)
		if err != nil {
			return nil, err
		}
		return m.cipher.Encrypt(canonical)
	case actionReencrypt:
		canonical, err := m.cipher.Decrypt(old)
		if err != nil {
			return nil, err
		}
		return m.cipher.Encrypt(canonical)
	default:
		canonical, err := m.cipher.Decrypt(old)
		if err != nil {
			return nil, err
		}
		return m.codec.AppendText(nil, canonical, m.tc)
	}
}

// apply writes a batch in one transaction; a row changed since it was read
// (by an application through the proxy) is left alone.
func (m *migration) apply(ctx context.Context, rows []row) (int, error) {
	keyArrays := make([]any, len(m.pk))
	for i := range m.pk {
		col := make([]string, len(rows))
		for j, r := range rows {
			col[j] = r.key[i]
		}
		keyArrays[i] = col
	}
	olds := make([][]byte, len(rows))
	news := make([][]byte, len(rows))
	for j, r := range rows {
		olds[j], news[j] = r.old, r.new
	}
	names := make([]string, len(m.pk))
	match := make([]string, len(m.pk))
	for i := range m.pk {
		names[i] = fmt.Sprintf("k%d", i)
		match[i] = fmt.Sprintf("t.%s = v.k%d::%s", m.pk[i], i, m.pkTypes[i])
	}
	args := append(keyArrays, olds, news)
	unnest := make([]string, len(args))
	for i := range args {
		unnest[i] = fmt.Sprintf("$%d", i+1)
	}
	for i := range m.pk {
		unnest[i] += "::text[]"
	}
	unnest[len(m.pk)] += "::bytea[]"
	unnest[len(m.pk)+1] += "::bytea[]"
	q := fmt.Sprintf(`UPDATE %s AS t SET %s = v.new FROM unnest(%s) AS v(%s, old, new)
		WHERE %s AND t.%s = v.old`,
		m.qualified, m.column, strings.Join(unnest, ", "), strings.Join(names, ", "), strings.Join(match, " AND "), m.column)
	tag, err := m.conn.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
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

func (m *migration) newProgress(total, pass int) *progress {
	what := fmt.Sprintf("%s %s (pass %d)", m.action, m.rule.Name(), pass)
	if pass == 0 {
		what = fmt.Sprintf("%s %s (final pass)", m.action, m.rule.Name())
	}
	p := &progress{log: m.log, what: what, max: total}
	useBar := m.opts.progress == "bar"
	if m.opts.progress == "auto" {
		f, ok := m.errOut.(*os.File)
		useBar = ok && term.IsTerminal(int(f.Fd()))
	}
	if useBar {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(m.errOut), progressbar.OptionSetDescription(p.what),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
	}
	return p
}

func (p *progress) add(n int) {
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

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
