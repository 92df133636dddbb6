// Package keymap owns pgcloak's keys and what is done with them: key stores
// (the local encrypted file here; Vault behind the same Store interface), the
// keyset cache (Keyring), the per-column ciphers that turn a canonical value
// into a stored bytea and back, the on-disk ciphertext format, and the
// canonicalisation of client values per logical type (Codec) so that equal
// values encrypt alike whatever wire format a client used.
//
// Ordered keys (ordered.go) store an order-preserving term in front of the
// AES-SIV ciphertext, so that PostgreSQL compares, sorts and indexes the
// stored bytea in the plaintext's order; OrderRanges turns a comparison
// with a constant into ranges of stored values.
//
// keymap never sees SQL and never logs: errors it returns name keys, types and
// files, never key material or values.
package keymap
