package scramauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
)

// Credentials are a role's verifier and the ClientKey its client proved
// knowing: enough to prove the role to PostgreSQL, whose verifier for it
// is the same.
type Credentials struct {
	verifier  *Verifier
	clientKey []byte
}

// ErrVerifierChanged is PostgreSQL asking with another salt or iteration
// count than the verifier the client proved against: the password changed
// after the proxy looked it up.
var ErrVerifierChanged = &Error{Code: "28P01", Msg: "password authentication failed (the role's password changed during the login)"}

// nonceBytes is the client nonce's length before base64, as libpq's.
const nonceBytes = 18

// ClientExchange is one SCRAM-SHA-256 exchange in which the proxy is the
// client of PostgreSQL. It starts before the client's own exchange: the
// salt and iteration count PostgreSQL sends are the role's, or, for a role
// without a SCRAM verifier, PostgreSQL's own mock ones, which the proxy
// then shows the client (MockVerifier), so that it answers exactly as
// PostgreSQL would.
type ClientExchange struct {
	mechanism   string
	gs2Header   string
	bindingData []byte
	nonce       string

	serverFirst string
	serverNonce string
	salt        []byte
	iterations  int
	authMessage string
	verifier    *Verifier
}

// Usable reports whether the proxy can complete a SASL exchange with
// PostgreSQL offering mechanisms, with serverCert as for
// NewClientExchange; when it cannot (OAUTHBEARER only, say), the exchange
// is better relayed.
func Usable(mechanisms []string, serverCert *x509.Certificate) bool {
	return slices.Contains(mechanisms, MechanismSHA256) ||
		ServerEndpoint(serverCert) != nil && slices.Contains(mechanisms, MechanismSHA256Plus)
}

// NewClientExchange starts the exchange with PostgreSQL, which offers
// mechanisms. serverCert is PostgreSQL's TLS certificate when the
// connection to it is TLS, else nil: then SCRAM-SHA-256-PLUS is used
// whenever offered, bound to that certificate.
func NewClientExchange(mechanisms []string, serverCert *x509.Certificate) (*ClientExchange, error) {
	x := &ClientExchange{}
	binding := ServerEndpoint(serverCert)
	switch {
	case binding != nil && slices.Contains(mechanisms, MechanismSHA256Plus):
		x.mechanism = MechanismSHA256Plus
		x.gs2Header = "p=" + string(binding.cb.Type) + ",,"
		x.bindingData = binding.cb.Data
	case slices.Contains(mechanisms, MechanismSHA256):
		x.mechanism = MechanismSHA256
		// "y": the proxy could bind, but PostgreSQL offered no -PLUS.
		x.gs2Header = "n,,"
		if binding != nil {
			x.gs2Header = "y,,"
		}
	default:
		return nil, &Error{Code: "28000", Msg: "PostgreSQL offers SASL mechanisms " + strings.Join(mechanisms, ", ") + ", none of which pgcloak can use"}
	}
	raw := make([]byte, nonceBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	x.nonce = base64.StdEncoding.EncodeToString(raw)
	return x, nil
}

// Mechanism is the SASL mechanism chosen.
func (x *ClientExchange) Mechanism() string { return x.mechanism }

// First is the client-first-message. The user name is empty: PostgreSQL
// takes the startup packet's.
func (x *ClientExchange) First() []byte {
	return []byte(x.gs2Header + x.clientFirstBare())
}

func (x *ClientExchange) clientFirstBare() string { return "n=,r=" + x.nonce }

// ReadServerFirst takes PostgreSQL's server-first-message.
func (x *ClientExchange) ReadServerFirst(serverFirst []byte) error {
	s1 := string(serverFirst)
	fields := strings.Split(s1, ",")
	if len(fields) < 3 {
		return protocolError("malformed SCRAM message from PostgreSQL")
	}
	nonce, ok1 := strings.CutPrefix(fields[0], "r=")
	saltText, ok2 := strings.CutPrefix(fields[1], "s=")
	iterText, ok3 := strings.CutPrefix(fields[2], "i=")
	if !ok1 || !ok2 || !ok3 || len(nonce) <= len(x.nonce) || !strings.HasPrefix(nonce, x.nonce) {
		return protocolError("malformed SCRAM message from PostgreSQL")
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	iterations, err2 := strconv.Atoi(iterText)
	if err != nil || err2 != nil || len(salt) == 0 || iterations < 1 {
		return protocolError("malformed SCRAM message from PostgreSQL")
	}
	x.serverFirst, x.serverNonce, x.salt, x.iterations = s1, nonce, salt, iterations
	return nil
}

// KeyFactors names the salt and iteration count PostgreSQL asked with,
// once ReadServerFirst has read them.
func (x *ClientExchange) KeyFactors() string {
	return strconv.Itoa(x.iterations) + ":" + base64.StdEncoding.EncodeToString(x.salt)
}

// Matches reports whether v has the salt and iteration count PostgreSQL
// asked with: whether it can be the role's verifier as PostgreSQL holds it.
func (x *ClientExchange) Matches(v *Verifier) bool {
	return v != nil && x.serverFirst != "" && v.iterations == x.iterations && hmac.Equal(v.salt, x.salt)
}

// MockVerifier is the verifier to check the client against when the proxy
// has none for the role that matches (no such role, no SCRAM password):
// PostgreSQL's salt and iteration count, so the client sees what it would
// see from PostgreSQL, and keys that no password matches, so the exchange
// fails as a wrong password does.
func (x *ClientExchange) MockVerifier() *Verifier {
	keys := make([]byte, 2*sha256.Size)
	if _, err := rand.Read(keys); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &Verifier{iterations: x.iterations, salt: slices.Clone(x.salt), storedKey: keys[:sha256.Size], serverKey: keys[sha256.Size:]}
}

// Final returns the client-final-message, with the proof made from the
// ClientKey of c. c's verifier must match PostgreSQL's salt and iteration
// count (ErrVerifierChanged).
func (x *ClientExchange) Final(c *Credentials) ([]byte, error) {
	if c == nil || x.serverFirst == "" {
		return nil, errNoExchange
	}
	if !x.Matches(c.verifier) {
		return nil, ErrVerifierChanged
	}
	binding := append([]byte(x.gs2Header), x.bindingData...)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(binding) + ",r=" + x.serverNonce
	x.authMessage = x.clientFirstBare() + "," + x.serverFirst + "," + withoutProof
	x.verifier = c.verifier
	proof := xor(c.clientKey, hmacSHA256(c.verifier.storedKey, x.authMessage))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks PostgreSQL's server-final-message: its signature proves
// that it holds the role's verifier too.
func (x *ClientExchange) Verify(serverFinal []byte) error {
	sig, ok := strings.CutPrefix(string(serverFinal), "v=")
	if !ok || x.verifier == nil {
		return protocolError("PostgreSQL's SCRAM exchange did not end with a server signature")
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, hmacSHA256(x.verifier.serverKey, x.authMessage)) {
		return protocolError("PostgreSQL's SCRAM server signature is wrong")
	}
	return nil
}
