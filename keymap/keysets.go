package keymap

import (
	"bytes"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
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

// retireKeyset disables every enabled version of h but the primary and
// returns the keyset and how many it disabled. A disabled version stays in
// the keyset (Tink could enable it again) but no primitive built from the
// keyset uses it: values written under it no longer decrypt, and searches
// stop computing candidates under it.
func retireKeyset(h *keyset.Handle) (*keyset.Handle, int, error) {
	entries, err := enabledEntries(h)
	if err != nil {
		return nil, 0, err
	}
	m := keyset.NewManagerFromHandle(h)
	n := 0
	for _, e := range entries {
		if e.IsPrimary() {
			continue
		}
		if err := m.Disable(e.KeyID()); err != nil {
			return nil, 0, fmt.Errorf("disabling key version %d: %w", e.KeyID(), err)
		}
		n++
	}
	if n == 0 {
		return h, 0, nil
	}
	out, err := m.Handle()
	if err != nil {
		return nil, 0, fmt.Errorf("disabling key versions: %w", err)
	}
	return out, n, nil
}

// enabledVersions counts the enabled versions of h.
func enabledVersions(h *keyset.Handle) int {
	n := 0
	for _, ki := range h.KeysetInfo().GetKeyInfo() {
		if ki.GetStatus() == tinkpb.KeyStatusType_ENABLED {
			n++
		}
	}
	return n
}
