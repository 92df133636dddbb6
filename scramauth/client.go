package scramauth

import (
	"crypto/hmac"
	"crypto/rand"
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
// client of PostgreSQL.
type ClientExchange struct {
	creds       *Credentials
	mechanism   string
	gs2Header   string
	bindingData []byte
	nonce       string
	authMessage string
}

// Upstream starts the exchange with PostgreSQL, which offers mechanisms.
// serverCert is PostgreSQL's TLS certificate when the connection to it is
// TLS, else nil: then SCRAM-SHA-256-PLUS is used whenever offered, bound
// to that certificate.
func (c *Credentials) Upstream(mechanisms []string, serverCert *x509.Certificate) (*ClientExchange, error) {
	if c == nil {
		return nil, errNoExchange
	}
	x := &ClientExchange{creds: c}
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

// Final takes PostgreSQL's server-first-message and returns the
// client-final-message, with the proof made from the ClientKey.
func (x *ClientExchange) Final(serverFirst []byte) ([]byte, error) {
	s1 := string(serverFirst)
	fields := strings.Split(s1, ",")
	if len(fields) < 3 {
		return nil, protocolError("malformed SCRAM message from PostgreSQL")
	}
	nonce, ok1 := strings.CutPrefix(fields[0], "r=")
	saltText, ok2 := strings.CutPrefix(fields[1], "s=")
	iterText, ok3 := strings.CutPrefix(fields[2], "i=")
	if !ok1 || !ok2 || !ok3 || len(nonce) <= len(x.nonce) || !strings.HasPrefix(nonce, x.nonce) {
		return nil, protocolError("malformed SCRAM message from PostgreSQL")
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	iterations, err2 := strconv.Atoi(iterText)
	if err != nil || err2 != nil {
		return nil, protocolError("malformed SCRAM message from PostgreSQL")
	}
	v := x.creds.verifier
	if iterations != v.iterations || !hmac.Equal(salt, v.salt) {
		return nil, ErrVerifierChanged
	}
	binding := append([]byte(x.gs2Header), x.bindingData...)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(binding) + ",r=" + nonce
	x.authMessage = x.clientFirstBare() + "," + s1 + "," + withoutProof
	proof := xor(x.creds.clientKey, hmacSHA256(v.storedKey, x.authMessage))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks PostgreSQL's server-final-message: its signature proves
// that it holds the role's verifier too.
func (x *ClientExchange) Verify(serverFinal []byte) error {
	sig, ok := strings.CutPrefix(string(serverFinal), "v=")
	if !ok || x.authMessage == "" {
		return protocolError("PostgreSQL's SCRAM exchange did not end with a server signature")
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, hmacSHA256(x.creds.verifier.serverKey, x.authMessage)) {
		return protocolError("PostgreSQL's SCRAM server signature is wrong")
	}
	return nil
}
