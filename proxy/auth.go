package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/scramauth"
)

// Message type bytes of the authentication exchange.
const (
	msgAuthentication byte = 'R' // backend: AuthenticationXxx
	msgPasswordFamily byte = 'p' // frontend: SASLInitialResponse, SASLResponse, PasswordMessage
	msgError          byte = 'E' // backend: ErrorResponse
)

// Authentication request codes (the first word of an 'R' message).
const (
	authOK           uint32 = 0
	authSASL         uint32 = 10
	authSASLContinue uint32 = 11
	authSASLFinal    uint32 = 12
)

// terminateSCRAM answers PostgreSQL's SASL request when the proxy
// terminates SCRAM: it is the SCRAM server for the client (offering
// SCRAM-SHA-256-PLUS over its own certificate on TLS), checking the proof
// against the role's verifier, and then the SCRAM client of PostgreSQL
// (bound to PostgreSQL's certificate on TLS), proving the same role with
// the ClientKey the client's proof revealed. It returns once PostgreSQL
// has accepted, before its AuthenticationOk.
func (ss *session) terminateSCRAM(upstreamMechanisms []string) error {
	role := ss.user
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	v, err := ss.srv.verifiers.Verifier(ctx, role, ss.database)
	if err != nil {
		ss.srv.log.Warn("looking up a SCRAM verifier", "session", ss.id, "role", role, "err", err)
		ss.fatal("28000", "cannot look up the role's credentials; see the pgcloak log")
		return fmt.Errorf("verifier lookup: %w", err)
	}
	if v == nil {
		v = scramauth.MockVerifier(ss.srv.mockSecret, role)
	}
	x := scramauth.NewServerExchange(v, ss.clientBinding())
	creds, err := ss.scramWithClient(x)
	if err != nil {
		return ss.authFailed(role, err)
	}
	up, err := creds.Upstream(upstreamMechanisms, ss.upstreamCert())
	if err != nil {
		return ss.authFailed(role, err)
	}
	if err := ss.scramWithUpstream(up); err != nil {
		if errors.Is(err, scramauth.ErrVerifierChanged) {
			ss.srv.verifiers.forget(role, ss.database)
		}
		return ss.authFailed(role, err)
	}
	return ss.cw.send(&pgproto3.AuthenticationSASLFinal{Data: x.ServerFinal()})
}

// scramWithClient runs the client's side of the exchange up to its
// client-final-message and the check of its proof.
func (ss *session) scramWithClient(x *scramauth.ServerExchange) (*scramauth.Credentials, error) {
	if err := ss.cw.send(&pgproto3.AuthenticationSASL{AuthMechanisms: x.Mechanisms()}); err != nil {
		return nil, err
	}
	if err := ss.cw.flush(); err != nil {
		return nil, err
	}
	body, err := ss.clientAuthMessage()
	if err != nil {
		return nil, err
	}
	var initial pgproto3.SASLInitialResponse
	if err := initial.Decode(body); err != nil {
		return nil, &scramauth.Error{Code: "08P01", Msg: "malformed SASLInitialResponse"}
	}
	s1, err := x.First(initial.AuthMechanism, initial.Data)
	if err != nil {
		return nil, err
	}
	if err := ss.cw.send(&pgproto3.AuthenticationSASLContinue{Data: s1}); err != nil {
		return nil, err
	}
	if err := ss.cw.flush(); err != nil {
		return nil, err
	}
	if body, err = ss.clientAuthMessage(); err != nil {
		return nil, err
	}
	var resp pgproto3.SASLResponse
	if err := resp.Decode(body); err != nil {
		return nil, &scramauth.Error{Code: "08P01", Msg: "malformed SASLResponse"}
	}
	if err := x.Final(resp.Data); err != nil {
		return nil, err
	}
	return x.Credentials(), nil
}

// clientAuthMessage reads the client's next authentication message.
func (ss *session) clientAuthMessage() ([]byte, error) {
	typ, body, err := ss.cr.next()
	if err != nil {
		return nil, err
	}
	if typ != msgPasswordFamily {
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("expected SASL response, got message type %q", typ)}
	}
	return body, nil
}

// scramWithUpstream proves the role to PostgreSQL.
func (ss *session) scramWithUpstream(x *scramauth.ClientExchange) error {
	if err := ss.uw.send(&pgproto3.SASLInitialResponse{AuthMechanism: x.Mechanism(), Data: x.First()}); err != nil {
		return err
	}
	if err := ss.uw.flush(); err != nil {
		return err
	}
	s1, err := ss.upstreamSASL(authSASLContinue)
	if err != nil {
		return err
	}
	c2, err := x.Final(s1)
	if err != nil {
		return err
	}
	if err := ss.uw.send(&pgproto3.SASLResponse{Data: c2}); err != nil {
		return err
	}
	if err := ss.uw.flush(); err != nil {
		return err
	}
	s2, err := ss.upstreamSASL(authSASLFinal)
	if err != nil {
		return err
	}
	return x.Verify(s2)
}

// errUpstreamRefused is PostgreSQL ending the exchange with an
// ErrorResponse, which has been passed to the client.
var errUpstreamRefused = errors.New("authentication failed upstream")

// upstreamSASL reads PostgreSQL's next SASL message, of kind code, and
// returns its data. An ErrorResponse goes to the client as it is.
func (ss *session) upstreamSASL(code uint32) ([]byte, error) {
	typ, body, err := ss.ur.next()
	if err != nil {
		return nil, err
	}
	switch {
	case typ == msgError:
		ss.cw.raw(typ, body)
		ss.cw.flush()
		return nil, errUpstreamRefused
	case typ != msgAuthentication || len(body) < 4:
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("unexpected message %q from PostgreSQL during SCRAM", typ)}
	}
	switch c := authCode(body); c {
	case code:
		return body[4:], nil
	default:
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("unexpected authentication request %d from PostgreSQL during SCRAM", c)}
	}
}

// authFailed ends a failed login: PostgreSQL's own error text for a wrong
// password (the same for a role that does not exist), counted.
func (ss *session) authFailed(role string, err error) error {
	metricLoginFailures.Inc()
	if errors.Is(err, errUpstreamRefused) {
		return err
	}
	var se *scramauth.Error
	switch {
	case errors.As(err, &se) && se.Code == "28P01":
		ss.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", role))
	case errors.As(err, &se):
		ss.fatal(se.Code, se.Msg)
	}
	return fmt.Errorf("SCRAM authentication of %q: %w", role, err)
}

// clientBinding is the channel binding of the client's connection: the
// proxy's certificate, when the client is on TLS.
func (ss *session) clientBinding() *scramauth.ChannelBinding {
	if _, ok := ss.client.(*tls.Conn); !ok {
		return nil
	}
	return ss.srv.clientBinding
}

// upstreamCert is PostgreSQL's certificate when the upstream connection is
// TLS.
func (ss *session) upstreamCert() *x509.Certificate {
	tc, ok := ss.upstream.(*tls.Conn)
	if !ok {
		return nil
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0]
	}
	return nil
}

func authCode(body []byte) uint32 {
	return uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3])
}
