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
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
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

// verifierIterations and verifierSaltBytes are PostgreSQL's defaults for
// the verifiers it makes (scram_iterations, SCRAM_DEFAULT_SALT_LEN).
const (
	verifierIterations = 4096
	verifierSaltBytes  = 16
)

// NewVerifier makes a verifier for password with a fresh salt, as
// PostgreSQL's password_encryption = scram-sha-256 does: the password is
// SASLprep-normalised where it can be, and used as it is otherwise. Set
// as the role's password (ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'),
// PostgreSQL stores it unchanged, so a copy in a verifiers file matches.
func NewVerifier(password string) (*Verifier, error) {
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		if client, err = scram.SHA256.NewClientUnprepped("", password, ""); err != nil {
			return nil, err
		}
	}
	salt := make([]byte, verifierSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	sc, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: verifierIterations})
	if err != nil {
		return nil, err
	}
	return &Verifier{iterations: verifierIterations, salt: salt, storedKey: sc.StoredKey, serverKey: sc.ServerKey}, nil
}
