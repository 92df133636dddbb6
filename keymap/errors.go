package keymap

import (
	"errors"
	"fmt"

	"github.com/pgcloak/pgcloak/policy"
)

// Errors a Store wraps. Callers test for them with errors.Is.
var (
	ErrKeyNotFound      = errors.New("key not found")
	ErrKeyDisabled      = errors.New("key is disabled")
	ErrKeyDestroyed     = errors.New("key is destroyed")
	ErrKeyExists        = errors.New("key already exists")
	ErrStoreUnavailable = errors.New("key store unavailable")
	// ErrMasterKey means the master key is missing, malformed or not the one
	// the key store was written with.
	ErrMasterKey = errors.New("master key problem")
	// ErrDecrypt is the only thing a failed decryption reveals: not why, and
	// never the value.
	ErrDecrypt = errors.New("cannot decrypt value")
)

// SQLState codes of the errors clients see (DESIGN.md "Errors the client sees").
const (
	SQLStateKeyUnavailable = "58000"
	SQLStateInvalidValue   = "22P02"
	// SQLStateOutOfRange and SQLStateDatetimeOverflow are PostgreSQL's
	// codes for a number, and a date or time, out of its type's range.
	SQLStateOutOfRange       = "22003"
	SQLStateDatetimeOverflow = "22008"
	// SQLStateDatetimeFormat is PostgreSQL's code for a date or time it
	// cannot read.
	SQLStateDatetimeFormat = "22007"
	// SQLStateInvalidParameter is PostgreSQL's code for a time zone it
	// does not know.
	SQLStateInvalidParameter = "22023"
	// SQLStateUntranslatable is PostgreSQL's code for a \u0000 in jsonb.
	SQLStateUntranslatable = "22P05"
	// SQLStateProtocolViolation is PostgreSQL's code for a binary value
	// shorter than its type; SQLStateBinaryFormat for one longer, or with
	// a field its type does not allow.
	SQLStateProtocolViolation = "08P01"
	SQLStateBinaryFormat      = "22P03"
	// SQLStateBadEncoding is PostgreSQL's code for text that is not valid
	// in the database encoding (or holds a NUL byte).
	SQLStateBadEncoding = "22021"
	// SQLStateInternal is the code of PostgreSQL's internal errors, which
	// some receive functions raise for malformed input.
	SQLStateInternal = "XX000"
)

// KeyError says a column's key cannot be used right now. Its message names the
// key and the reason, never key material.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("key %q is unavailable: %v", e.Key, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// SQLState is the code the proxy reports to the client.
func (e *KeyError) SQLState() string { return SQLStateKeyUnavailable }

// ValueError says a client value is not valid for a column's logical type. It
// deliberately carries no copy of the value: the value is plaintext that must
// not reach logs or PostgreSQL.
type ValueError struct {
	Type   policy.LogicalType
	Reason string
	// Code is the SQLSTATE PostgreSQL gives for the same value ("":
	// SQLStateInvalidValue).
	Code string
}

func (e *ValueError) Error() string {
	switch {
	case e.Code == SQLStateOutOfRange || e.Code == SQLStateDatetimeOverflow:
		return fmt.Sprintf("%s for type %s", e.Reason, e.Type)
	case e.Reason == "":
		return fmt.Sprintf("invalid input syntax for type %s", e.Type)
	}
	return fmt.Sprintf("invalid input syntax for type %s: %s", e.Type, e.Reason)
}

// SQLState is the code the proxy reports to the client: PostgreSQL's for
// the same value.
func (e *ValueError) SQLState() string {
	if e.Code != "" {
		return e.Code
	}
	return SQLStateInvalidValue
}
