package migrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/policy"
)

// begin records the migration and, for encrypt, turns the column into
// bytea holding each value's text form, in the same transaction: a proxy
// sees the column either of its own type with no migration (writes
// refused) or bytea being encrypted, never a bytea it takes for plain. It
// reports done for a decrypt that has nothing left to do, and refuses an
// action the column's recorded state does not allow.
func (m *Migration) begin(ctx context.Context) (done bool, err error) {
	if _, err := m.conn.Exec(ctx, colmigrate.DDL); err != nil {
		return false, fmt.Errorf("creating %s: %w", colmigrate.Table, err)
	}
	if err := CheckTrusted(ctx, m.conn, m.cfg.Policy.AdminRole()); err != nil {
		return false, err
	}
	rule := m.cfg.Rule
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
		switch m.cfg.Action {
		case colmigrate.ActionReencrypt:
			if prev.Unfinished() && prev.Action != colmigrate.ActionReencrypt {
				return fmt.Errorf("%s has an unfinished pgcloak %s: run it again to finish it first", rule.Name(), prev.Action.Command())
			}
			if typ != "bytea" || prev.Is(colmigrate.ActionDecrypt, true) {
				return fmt.Errorf("%s holds plaintext (%s): run pgcloak encrypt first", rule.Name(), typ)
			}
		case colmigrate.ActionDecrypt:
			if prev.Is(colmigrate.ActionDecrypt, true) && (typ != "bytea" || rule.Type == policy.TypeBytea) {
				done = true
				return nil
			}
			if typ != "bytea" {
				return fmt.Errorf("%s is %s in PostgreSQL: it holds no ciphertext to decrypt", rule.Name(), typ)
			}
		case colmigrate.ActionEncrypt:
			// Text forms are there already while an encrypt or decrypt
			// is unfinished; otherwise the column gets them.
			migrating := prev.Unfinished() && prev.Action != colmigrate.ActionReencrypt
			alter = !migrating && (typ != "bytea" || rule.Type == policy.TypeBytea)
		}
		if m.cfg.Action == colmigrate.ActionDecrypt {
			// Text forms are about to be written: the ciphertext
			// check goes first.
			if err := m.cfg.Checks.Drop(ctx, tx, rule); err != nil {
				return err
			}
		}
		if err := m.record(ctx, tx, m.cfg.Action); err != nil {
			return err
		}
		if !alter {
			return nil
		}
		// A bytea column of logical type bytea holds raw plaintext: it
		// gets text forms too (see colmigrate.ToTextFormSQL).
		m.cfg.Log.Info("changing the column to bytea (text form of each value)", "column", rule.Name(), "from", typ)
		_, err = tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN %s TYPE bytea USING %s`,
			m.qualified, m.column, colmigrate.ToTextFormSQL(m.column, typ)))
		return err
	})
	return done, err
}

// recorded reads the column's migration record, locking its row.
func (m *Migration) recorded(ctx context.Context, tx pgx.Tx) (colmigrate.Record, error) {
	var r colmigrate.Record
	rule := m.cfg.Rule
	err := tx.QueryRow(ctx, colmigrate.LockRecordSQL, rule.Schema, rule.Table, rule.Column).Scan(&r.Action, &r.Finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return colmigrate.Record{}, nil
	}
	return r, err
}

// record writes the migration's row with action, unfinished.
func (m *Migration) record(ctx context.Context, tx pgx.Tx, action colmigrate.Action) error {
	rule := m.cfg.Rule
	_, err := tx.Exec(ctx, colmigrate.StartSQL, rule.Schema, rule.Table, rule.Column, string(action), rule.KeyName)
	return err
}

// CheckTrusted refuses to record a migration where the proxies would not
// believe it: in a pgcloak schema or table that someone else made (a role
// allowed to create schemas could have, to fake states), or that others
// may write.
func CheckTrusted(ctx context.Context, conn *pgx.Conn, adminRole string) error {
	var exists, trusted bool
	if err := conn.QueryRow(ctx, dbguard.MigrationsTrustQuery(adminRole)).Scan(&exists, &trusted); err != nil {
		return fmt.Errorf("checking %s: %w", colmigrate.Table, err)
	}
	if !exists || !trusted {
		who := "a superuser"
		if adminRole != "" {
			who = fmt.Sprintf("policy.admin_role %q or a superuser", adminRole)
		}
		return fmt.Errorf("%s and schema pgcloak must be a table and a schema owned by %s, writable by no other role; "+
			"run migrations as that role, and drop or re-own a pgcloak schema someone else created", colmigrate.Table, who)
	}
	return nil
}

func (m *Migration) columnType(ctx context.Context, tx pgx.Tx) (string, error) {
	var typ string
	err := tx.QueryRow(ctx, `SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
		WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped`, m.qualified, m.cfg.Rule.Column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("column %s does not exist", m.cfg.Rule.Name())
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
func (m *Migration) finish(ctx context.Context) error {
	rule := m.cfg.Rule
	if m.cfg.Action == colmigrate.ActionDecrypt {
		if err := m.finishDecrypt(ctx); err != nil {
			return err
		}
	}
	if m.cfg.Action == colmigrate.ActionEncrypt {
		// Every row is a ciphertext now: the column gets its check back.
		err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error { return m.cfg.Checks.Restore(ctx, tx, rule) })
		if err != nil {
			return err
		}
	}
	_, err := m.conn.Exec(ctx, colmigrate.FinishSQL, rule.Schema, rule.Table, rule.Column)
	return err
}

// awaitOlderTransactions waits until no other client session of the
// database is in a transaction that began before since: at REPEATABLE
// READ or SERIALIZABLE such a transaction still reads the migration state
// from before, so a proxy reloading its catalog in it would not see the
// finishing phase. (Sessions of other roles show no transaction start
// unless the migration's role may read all statistics; those are not
// waited for.)
func (m *Migration) awaitOlderTransactions(ctx context.Context, since time.Time) error {
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
			m.cfg.Log.Info("waiting for transactions that began before the finishing phase to end", "column", m.cfg.Rule.Name(), "transactions", n)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted before the column got its type back; run the same command again to resume")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finishDecrypt records decrypt-finishing, waits for proxies to see it
// and for older transactions to end, sweeps a last time, and gives the
// column its type back.
func (m *Migration) finishDecrypt(ctx context.Context) error {
	rule := m.cfg.Rule
	if err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		return m.record(ctx, tx, colmigrate.ActionDecryptFinishing)
	}); err != nil {
		return err
	}
	var recorded time.Time
	if err := m.conn.QueryRow(ctx, `SELECT pg_catalog.clock_timestamp()`).Scan(&recorded); err != nil {
		return err
	}
	m.cfg.Log.Info("waiting for proxies to stop writing the column before changing its type", "column", rule.Name(), "wait", m.cfg.Settle)
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted before the column got its type back; run the same command again to resume")
	case <-time.After(m.cfg.Settle):
	}
	if err := m.awaitOlderTransactions(ctx, recorded); err != nil {
		return err
	}
	if _, err := m.sweep(ctx, 0); err != nil {
		return err
	}
	typ := colmigrate.SQLType(rule.Type)
	m.cfg.Log.Info("changing the column back to its logical type", "column", rule.Name(), "type", typ)
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s`,
			m.qualified, m.column, typ, colmigrate.FromTextFormSQL(m.column, rule.Type))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, colmigrate.FinishAsSQL, rule.Schema, rule.Table, rule.Column, string(colmigrate.ActionDecrypt))
		return err
	})
}
