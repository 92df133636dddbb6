package scramauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/xdg-go/scram"
)

// Mechanism names, as PostgreSQL offers them.
const (
	MechanismSHA256     = "SCRAM-SHA-256"
	MechanismSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// Error is a failed exchange, with the SQLSTATE PostgreSQL gives for it:
// 28P01 for a wrong password (or an unknown role), 08P01 for a malformed
// message or a channel binding that does not check.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// SQLState returns the error's SQLSTATE.
func (e *Error) SQLState() string { return e.Code }

// ErrWrongPassword is the failure of a proof.
var ErrWrongPassword = &Error{Code: "28P01", Msg: "password authentication failed"}

func protocolError(msg string) *Error { return &Error{Code: "08P01", Msg: msg} }

// ChannelBinding is the tls-server-end-point binding of a TLS certificate
// (RFC 5929): the certificate's hash under its signature's hash function.
type ChannelBinding struct {
	cb scram.ChannelBinding
}

// ServerEndpoint returns the binding of cert, the leaf certificate a TLS
// server presents; nil when its signature algorithm has no binding.
func ServerEndpoint(cert *x509.Certificate) *ChannelBinding {
	if cert == nil {
		return nil
	}
	cb, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	if err != nil {
		return nil
	}
	return &ChannelBinding{cb: cb}
}

// ServerExchange is one SCRAM-SHA-256 exchange in which the proxy is the
// server, checking the client's proof against a Verifier.
type ServerExchange struct {
	conv      *scram.ServerConversation
	verifier  *Verifier
	binding   *ChannelBinding
	mechanism string
	c1        string
	s1        string
	s2        string
	creds     *Credentials
}

// NewServerExchange starts an exchange for a role with verifier v (the
// upstream exchange's MockVerifier for a role without one). binding is the proxy's own
// certificate's when the client connection is TLS, else nil: only then is
// SCRAM-SHA-256-PLUS offered.
func NewServerExchange(v *Verifier, binding *ChannelBinding) *ServerExchange {
	lookup := func(string) (scram.StoredCredentials, error) {
		// PostgreSQL ignores the SCRAM user name: the role is the startup
		// packet's, whose verifier this is.
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(v.salt), Iters: v.iterations},
			StoredKey:  v.storedKey,
			ServerKey:  v.serverKey,
		}, nil
	}
	srv, err := scram.SHA256.NewServer(lookup)
	if err != nil {
		// Only a nil hash function fails.
		panic(err)
	}
	x := &ServerExchange{verifier: v, binding: binding}
	if binding != nil {
		x.conv = srv.NewConversationWithChannelBinding(binding.cb)
	} else {
		x.conv = srv.NewConversation()
	}
	return x
}

// Mechanisms are the SASL mechanisms to offer, PostgreSQL's order.
func (x *ServerExchange) Mechanisms() []string {
	if x.binding != nil {
		return []string{MechanismSHA256Plus, MechanismSHA256}
	}
	return []string{MechanismSHA256}
}

// First takes the client's chosen mechanism and client-first-message and
// returns the server-first-message.
func (x *ServerExchange) First(mechanism string, clientFirst []byte) ([]byte, error) {
	c1 := string(clientFirst)
	switch {
	case mechanism == MechanismSHA256Plus && x.binding != nil:
		if !strings.HasPrefix(c1, "p=") {
			return nil, protocolError("channel binding is required with SCRAM-SHA-256-PLUS")
		}
	case mechanism == MechanismSHA256:
		if strings.HasPrefix(c1, "p=") {
			return nil, protocolError("channel binding is not expected with SCRAM-SHA-256")
		}
	default:
		return nil, protocolError("client selected an invalid SASL authentication mechanism")
	}
	if parts := strings.SplitN(c1, ",", 3); len(parts) == 3 && parts[1] != "" {
		return nil, protocolError("client uses authorization identity, but it is not supported")
	}
	x.mechanism = mechanism
	s1, err := x.conv.Step(c1)
	if err != nil {
		return nil, serverError(s1)
	}
	x.c1, x.s1 = c1, s1
	return []byte(s1), nil
}

// Final takes the client-final-message and checks its proof. Then
// Credentials prove the same role to PostgreSQL, and ServerFinal is the
// server-final-message, to send once PostgreSQL has accepted.
func (x *ServerExchange) Final(clientFinal []byte) error {
	c2 := string(clientFinal)
	s2, err := x.conv.Step(c2)
	if err != nil || !x.conv.Valid() {
		return serverError(s2)
	}
	clientKey, err := recoverClientKey(x.verifier, x.c1, x.s1, c2)
	if err != nil {
		return err
	}
	x.creds = &Credentials{verifier: x.verifier, clientKey: clientKey}
	x.s2 = s2
	return nil
}

// ServerFinal is the server-final-message, once Final succeeded.
func (x *ServerExchange) ServerFinal() []byte { return []byte(x.s2) }

// Credentials are what the exchange proved, once Final succeeded; nil
// before.
func (x *ServerExchange) Credentials() *Credentials { return x.creds }

// serverError maps xdg-go/scram's server-error attribute to PostgreSQL's
// SQLSTATEs.
func serverError(attr string) error {
	switch attr {
	case scram.ErrInvalidProof:
		return ErrWrongPassword
	case scram.ErrChannelBindingsDontMatch:
		return protocolError("SCRAM channel binding check failed")
	case scram.ErrServerDoesSupportChannelBinding:
		return protocolError("SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server does not")
	case scram.ErrChannelBindingNotSupported, scram.ErrUnsupportedChannelBindingType:
		return protocolError("unsupported SCRAM channel-binding type")
	}
	return protocolError("malformed SCRAM message")
}

// recoverClientKey is RFC 5802's check from the other side: ClientProof is
// ClientKey XOR HMAC(StoredKey, AuthMessage). xdg-go/scram has checked the
// messages' form and the proof.
func recoverClientKey(v *Verifier, c1, s1, c2 string) ([]byte, error) {
	fields := strings.SplitN(c1, ",", 3)
	cut := strings.LastIndex(c2, ",p=")
	if len(fields) != 3 || cut < 0 {
		return nil, protocolError("malformed SCRAM message")
	}
	proof, err := base64.StdEncoding.DecodeString(c2[cut+len(",p="):])
	if err != nil || len(proof) != sha256.Size {
		return nil, protocolError("malformed SCRAM message")
	}
	authMessage := fields[2] + "," + s1 + "," + c2[:cut]
	key := xor(proof, hmacSHA256(v.storedKey, authMessage))
	if sum := sha256.Sum256(key); !hmac.Equal(sum[:], v.storedKey) {
		return nil, ErrWrongPassword
	}
	return key, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] ^ b[i]
	}
	return out
}

var errNoExchange = errors.New("scramauth: no successful exchange")
