// Package colmigrate is the contract between pgcloak's column migrations
// (pgcloak encrypt, reencrypt and decrypt, run by package migrator) and
// the proxy, which must treat a column the way the migration left it:
//
//   - the table pgcloak.column_migrations that records the migrations: its
//     DDL and every statement that reads or writes it;
//   - the actions recorded there (Action) and a column's row (Record);
//   - what a policy column holds, from its type in PostgreSQL and its row
//     (Mode), which decides how the proxy reads, writes and searches it;
//   - the text form in which plaintext rests in a bytea column while a
//     migration runs, and the SQL that converts a column to and from it.
//
// The table's DDL is here, not in dbguard: the columns it defines are the
// ones Query, Decode and the migrator's statements name, and keeping them
// in one file keeps the two sides in step. dbguard keeps when the table is
// to be trusted (dbguard.MigrationsTrustQuery), a rule it shares with
// pgcloak's other objects in schema pgcloak.
//
// The package does no I/O: SQL text, types and pure functions.
package colmigrate

import (
	"fmt"

	"github.com/pgcloak/pgcloak/policy"
)

// Action is what pgcloak.column_migrations records for a column: the
// command that last ran on it, or the phase of one.
type Action string

const (
	ActionEncrypt   Action = "encrypt"
	ActionReencrypt Action = "reencrypt"
	ActionDecrypt   Action = "decrypt"
	// ActionDecryptFinishing is recorded while decrypt waits for proxies
	// to stop writing the column before the ALTER that gives it its type
	// back; that ALTER records ActionDecrypt, finished.
	ActionDecryptFinishing Action = "decrypt-finishing"
)

// Command is the command an action belongs to: decrypt for
// decrypt-finishing, the action itself otherwise.
func (a Action) Command() Action {
	if a == ActionDecryptFinishing {
		return ActionDecrypt
	}
	return a
}

// Record is a column's row in pgcloak.column_migrations. The zero Record
// stands for a column no migration ever ran on.
type Record struct {
	Action   Action
	Finished bool
}

// Unfinished reports a migration that was started and has not finished.
func (r Record) Unfinished() bool { return r.Action != "" && !r.Finished }

// Is reports whether r records command a (any of its phases), finished or
// not as asked.
func (r Record) Is(a Action, finished bool) bool {
	return r.Action.Command() == a && r.Finished == finished
}

// Column names a column by what the table keys its rows on.
type Column struct {
	Schema, Table, Column string
}

// Records are the rows of pgcloak.column_migrations by column; a column
// without a row gets the zero Record.
type Records map[Column]Record

// Query reads pgcloak.column_migrations in the form Decode takes. It runs
// in client sessions, under a search_path of pg_catalog only, so every
// type is qualified.
const Query = `SELECT schema_name::pg_catalog.text, table_name::pg_catalog.text, column_name::pg_catalog.text,
  action::pg_catalog.text, (finished IS NULL)::pg_catalog.text
FROM pgcloak.column_migrations`

// queryColumns is the number of columns of Query's rows.
const queryColumns = 5

// Decode turns Query's rows, as text, into Records.
func Decode(rows [][]string) (Records, error) {
	out := Records{}
	for _, row := range rows {
		if len(row) != queryColumns {
			return nil, fmt.Errorf("migrations query returned %d columns", len(row))
		}
		col := Column{Schema: row[0], Table: row[1], Column: row[2]}
		out[col] = Record{Action: Action(row[3]), Finished: row[4] != "true"}
	}
	return out, nil
}

// Mode is what a policy column holds in the database, from its type and
// its Record.
type Mode uint8

const (
	// ModeEncrypted: bytea of ciphertexts, the normal case.
	ModeEncrypted Mode = iota
	// ModeMixedEncrypt, ModeMixedDecrypt: bytea in the middle of an
	// encrypt or decrypt migration, holding ciphertexts and the text
	// forms of plaintext values. Reads accept both; writes store
	// ciphertext during encrypt, the text form during decrypt; searches
	// look for both.
	ModeMixedEncrypt
	ModeMixedDecrypt
	// ModeDecryptFinishing: the end of a decrypt, before its ALTER gives
	// the column its type back: read as mixed, but writes and searches
	// are refused, since a proxy that has not yet seen the ALTER would
	// send a bytea where PostgreSQL now wants the logical type.
	ModeDecryptFinishing
	// ModeUnconverted: of another type than bytea (or bytea holding
	// plaintext after decrypt): reads pass through, writes and searches
	// are refused. encrypt records itself and turns the column into
	// bytea in one transaction, so a column of its own type is never
	// written through the proxy, even by a proxy with an old snapshot.
	ModeUnconverted
)

// Mixed reports a column in the middle of an encrypt or decrypt, which
// holds ciphertexts and text forms.
func (m Mode) Mixed() bool {
	return m == ModeMixedEncrypt || m == ModeMixedDecrypt || m == ModeDecryptFinishing
}

// ModeOf works out what a policy column of logical type t holds, from
// whether PostgreSQL has it as bytea and its migration record. A
// reencrypt, running or not, changes nothing: the column holds
// ciphertexts throughout.
func ModeOf(t policy.LogicalType, bytea bool, r Record) Mode {
	switch {
	case !bytea:
		return ModeUnconverted
	case r.Unfinished() && r.Action == ActionEncrypt:
		return ModeMixedEncrypt
	case r.Unfinished() && r.Action == ActionDecrypt:
		return ModeMixedDecrypt
	case r.Unfinished() && r.Action == ActionDecryptFinishing:
		return ModeDecryptFinishing
	case r.Finished && r.Action == ActionDecrypt && t == policy.TypeBytea:
		// A bytea column decrypt left holding plaintext bytea.
		return ModeUnconverted
	default:
		return ModeEncrypted
	}
}
