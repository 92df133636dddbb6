package migrator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/policy"
)

// Leftovers is what a column holds that would stop decrypting, or be
// lost track of, if its key's versions other than the primary were
// retired (pgcloak keys retire).
type Leftovers struct {
	// Unfinished is the column's migration that has not finished ("" if
	// none): mid-migration, rows are text forms or under any version.
	Unfinished colmigrate.Action
	// OldVersions counts ciphertexts under another version than the
	// primary: reencrypt moves them.
	OldVersions int
	// NotCiphertext counts non-NULL values that are not ciphertexts of
	// the column's format: text forms of an interrupted migration, or a
	// column still of its plaintext type.
	NotCiphertext int
}

// None reports whether nothing stands in the way of retiring.
func (l Leftovers) None() bool {
	return l.Unfinished == "" && l.OldVersions == 0 && l.NotCiphertext == 0
}

// FindLeftovers reads, on conn and bypassing any proxy, what rule's column
// holds besides ciphertexts under the key version primary (a Tink key id).
// It reads the key id from the stored bytes, where a reencrypt's sweep
// does. A column or table that does not exist is an error: the caller
// cannot tell it holds nothing under the old versions (a wrong database,
// say).
func FindLeftovers(ctx context.Context, conn *pgx.Conn, rule *policy.ColumnRule, primary uint32) (Leftovers, error) {
	var l Leftovers
	qualified := pgx.Identifier{rule.Schema, rule.Table}.Sanitize()
	column := pgx.Identifier{rule.Column}.Sanitize()
	var typ string
	err := conn.QueryRow(ctx, `SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
		WHERE attrelid = pg_catalog.to_regclass($1) AND attname = $2 AND NOT attisdropped`, qualified, rule.Column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("column %s does not exist in the database", rule.Name())
	}
	if err != nil {
		return l, err
	}
	var tracked bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass('pgcloak.column_migrations') IS NOT NULL`).Scan(&tracked); err != nil {
		return l, err
	}
	// Without the migrations table no column was ever migrated, and none
	// is mid-way.
	if tracked {
		err := conn.QueryRow(ctx, `SELECT action FROM pgcloak.column_migrations
			WHERE schema_name = $1 AND table_name = $2 AND column_name = $3 AND finished IS NULL`,
			rule.Schema, rule.Table, rule.Column).Scan(&l.Unfinished)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return l, fmt.Errorf("reading %s: %w", colmigrate.Table, err)
		}
	}
	if typ != "bytea" {
		// Plaintext of the column's own type: every value is a leftover.
		err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(%s) FROM %s`, column, qualified)).Scan(&l.NotCiphertext)
		return l, err
	}
	id := binary.BigEndian.AppendUint32(nil, primary)
	q := fmt.Sprintf(`SELECT count(*) FILTER (WHERE %s),
			count(*) FILTER (WHERE substring(%s from 1 for 5) IS DISTINCT FROM $1)
		FROM %s WHERE %s IS NOT NULL`,
		underOtherVersion(column, rule, "$1", "$2"), column, qualified, column)
	err = conn.QueryRow(ctx, q, ciphertextHead(rule), id).Scan(&l.OldVersions, &l.NotCiphertext)
	return l, err
}
