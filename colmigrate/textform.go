package colmigrate

import (
	"fmt"
	"time"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// While a column is migrated, a plaintext value rests in its bytea column
// as its text form: the UTF-8 text PostgreSQL prints for the value with
// SessionSettings. The migrator writes text forms in PostgreSQL (the
// ALTERs of ToTextFormSQL and FromTextFormSQL) and in Go (the decrypt
// sweep); the proxy writes them during decrypt and reads and searches
// them during both. All of them must print a value alike, byte for byte,
// or searches miss it.

// SessionSettings are the settings under which PostgreSQL prints and
// parses values as text forms: the migrator's connection runs with them.
func SessionSettings() map[string]string {
	return map[string]string{
		"TimeZone":           "UTC",
		"DateStyle":          "ISO, MDY",
		"extra_float_digits": "1",
		"bytea_output":       "hex",
	}
}

// TextContext is keymap's text context matching SessionSettings.
func TextContext() *keymap.TextContext {
	return &keymap.TextContext{Location: time.UTC}
}

// TextForm is the text form of a canonical plaintext of type t.
func TextForm(t policy.LogicalType, canonical []byte) ([]byte, error) {
	return keymap.CodecFor(t).AppendText(nil, canonical, TextContext())
}

// ParseTextForm is the canonical plaintext a text form of type t holds.
func ParseTextForm(t policy.LogicalType, form []byte) ([]byte, error) {
	return keymap.CodecFor(t).Canonical(keymap.TextFormat, form, TextContext())
}

// SQLType is the PostgreSQL type of a column of logical type t that holds
// plaintext: the type decrypt gives it back.
func SQLType(t policy.LogicalType) string {
	if p, ok := t.PGType(); ok {
		return p.Name() // bpchar for char: plain char would be char(1)
	}
	return string(t)
}

// ToTextFormSQL is the USING expression of the ALTER that turns column (a
// quoted identifier) from PostgreSQL type pgType into bytea of text
// forms. A column that is bytea already holds raw plaintext bytea, which
// gets text forms too, so that every unconverted value reads the same
// way, and ciphertexts, which stay.
func ToTextFormSQL(column, pgType string) string {
	using := fmt.Sprintf(`pg_catalog.convert_to(%s::text, 'UTF8')`, column)
	if pgType != "bytea" {
		return using
	}
	head := keymap.CiphertextHeader()
	return fmt.Sprintf(`CASE WHEN pg_catalog.substr(%[1]s, 1, %[3]d) = '\x%[4]x'::bytea THEN %[1]s ELSE %[2]s END`,
		column, using, len(head), head)
}

// FromTextFormSQL is the USING expression of the ALTER that turns column
// (a quoted identifier), bytea of text forms, into type t.
func FromTextFormSQL(column string, t policy.LogicalType) string {
	text := "pg_catalog.convert_from(" + column + ", 'UTF8')"
	if t == policy.TypeBytea {
		return "pg_catalog.decode(substring(" + text + " from 3), 'hex')"
	}
	return text + "::" + SQLType(t)
}
