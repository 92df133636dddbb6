package keymap

import (
	"bytes"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/pgcloak/pgcloak/policy"
)

// Keyset operations both stores share: a keyset is stored encrypted under a
// key-encryption AEAD (the local master key, or Vault transit), with the key
// name as associated data so that a keyset moved under another name does
// not open.

func newKeyset(kind policy.KeyKind) (*keyset.Handle, error) {
	tmpl, err := templateFor(kind)
	if err != nil {
		return nil, err
	}
	h, err := keyset.NewHandle(tmpl)
	if err != nil {
		return nil, fmt.Errorf("generating keyset: %w", err)
	}
	return h, nil
}

func wrapKeyset(h *keyset.Handle, kek tink.AEAD, name string) ([]byte, error) {
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), kek, []byte(name)); err != nil {
		return nil, fmt.Errorf("encrypting keyset: %w", err)
	}
	return buf.Bytes(), nil
}

func unwrapKeyset(wrapped []byte, kek tink.AEAD, name string) (*keyset.Handle, error) {
	return keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), kek, []byte(name))
}

// rotateKeyset adds a new key version to h and makes it the primary; the
// older versions stay, so values written under them still decrypt.
func rotateKeyset(h *keyset.Handle, kind policy.KeyKind) (*keyset.Handle, error) {
	tmpl, err := templateFor(kind)
	if err != nil {
		return nil, err
	}
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(tmpl)
	if err != nil {
		return nil, fmt.Errorf("adding key version: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, fmt.Errorf("promoting key version: %w", err)
	}
	return m.Handle()
}
