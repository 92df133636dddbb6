// Package scramauth owns pgcloak's side of SCRAM-SHA-256 authentication
// (RFC 5802, RFC 7677) when the proxy terminates it: PostgreSQL's stored
// verifiers, the exchange in which the proxy is the SCRAM server for a
// client (xdg-go/scram, with SCRAM-SHA-256-PLUS over the proxy's own TLS
// certificate, RFC 5929 tls-server-end-point), and the exchange in which it
// is the SCRAM client of PostgreSQL for the same role, proving with the
// ClientKey recovered from the client's proof, as PgBouncer does. No
// password is ever known to the proxy, and no key leaves this package.
//
// It does no I/O: callers carry the messages.
package scramauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Verifier is a role's SCRAM-SHA-256 secret as PostgreSQL stores it in
// pg_authid.rolpassword: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
type Verifier struct {
	iterations int
	salt       []byte
	storedKey  []byte
	serverKey  []byte
}

const verifierPrefix = "SCRAM-SHA-256$"

// ErrNotSCRAM is returned by ParseVerifier for a secret that is not a
// SCRAM-SHA-256 verifier (an md5 hash, say).
var ErrNotSCRAM = errors.New("not a SCRAM-SHA-256 verifier")

// ParseVerifier reads a verifier in PostgreSQL's format. Its error never
// quotes the secret.
func ParseVerifier(s string) (*Verifier, error) {
	rest, ok := strings.CutPrefix(s, verifierPrefix)
	if !ok {
		return nil, ErrNotSCRAM
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("malformed SCRAM verifier: no keys")
	}
	iterText, saltText, ok := strings.Cut(factors, ":")
	if !ok {
		return nil, errors.New("malformed SCRAM verifier: no salt")
	}
	storedText, serverText, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, errors.New("malformed SCRAM verifier: no server key")
	}
	iterations, err := strconv.Atoi(iterText)
	if err != nil || iterations < 1 {
		return nil, errors.New("malformed SCRAM verifier: bad iteration count")
	}
	v := &Verifier{iterations: iterations}
	for _, f := range []struct {
		text string
		dst  *[]byte
		size int // 0: any non-empty
	}{{saltText, &v.salt, 0}, {storedText, &v.storedKey, sha256.Size}, {serverText, &v.serverKey, sha256.Size}} {
		b, err := base64.StdEncoding.DecodeString(f.text)
		if err != nil || len(b) == 0 || f.size != 0 && len(b) != f.size {
			return nil, errors.New("malformed SCRAM verifier: bad salt or key")
		}
		*f.dst = b
	}
	return v, nil
}

// String returns the verifier in PostgreSQL's format.
func (v *Verifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s%d:%s$%s:%s", verifierPrefix, v.iterations, b64(v.salt), b64(v.storedKey), b64(v.serverKey))
}

// Equal reports whether two verifiers are the same secret.
func (v *Verifier) Equal(o *Verifier) bool {
	return v.iterations == o.iterations && bytes.Equal(v.salt, o.salt) &&
		hmac.Equal(v.storedKey, o.storedKey) && hmac.Equal(v.serverKey, o.serverKey)
}

// mockIterations is PostgreSQL's default scram_iterations, which its mock
// verifiers use too.
const mockIterations = 4096

// MockVerifier is the verifier of a role that does not exist or has no
// SCRAM password: as PostgreSQL does, the exchange runs to the end and
// fails like a wrong password, with a salt that is stable for the role
// (derived from secret, the proxy's own), so that neither the error nor
// the salt tells an unknown role from a known one.
func MockVerifier(secret []byte, role string) *Verifier {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("salt\x00" + role))
	salt := mac.Sum(nil)[:16]
	mac.Reset()
	mac.Write([]byte("keys\x00" + role))
	keys := mac.Sum(nil)
	// No ClientKey hashes to this StoredKey that anyone can find.
	mac.Reset()
	mac.Write(keys)
	return &Verifier{iterations: mockIterations, salt: salt, storedKey: keys, serverKey: mac.Sum(nil)}
}
