package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/scramauth"
)

// verifierTimeout bounds the wait for a role's verifier.
const verifierTimeout = 10 * time.Second

// terminateSCRAM answers PostgreSQL's SASL request when the proxy
// terminates SCRAM. It starts the exchange with PostgreSQL first, as the
// SCRAM client of the role (bound to PostgreSQL's certificate on TLS):
// PostgreSQL's salt and iteration count tell whether the verifier the
// proxy looked up is still the role's, and are what the client is shown
// for a role without one (as PostgreSQL would show them). Then it is the
// SCRAM server for the client (offering SCRAM-SHA-256-PLUS over its own
// certificate on TLS), checking the proof against the verifier, and
// finally proves the role to PostgreSQL with the ClientKey the client's
// proof revealed. It returns once PostgreSQL has accepted, before its
// AuthenticationOk.
func (ss *session) terminateSCRAM(upstreamMechanisms []string) error {
	role := ss.user
	up, err := scramauth.NewClientExchange(upstreamMechanisms, ss.upstreamCert())
	if err != nil {
		return ss.authFailed(role, err)
	}
	if err := ss.uw.send(&pgproto3.SASLInitialResponse{AuthMechanism: up.Mechanism(), Data: up.First()}); err != nil {
		return err
	}
	if err := ss.uw.flush(); err != nil {
		return err
	}
	s1, err := ss.upstreamSASL(authSASLContinue)
	if err != nil {
		return ss.authFailed(role, err)
	}
	if err := up.ReadServerFirst(s1); err != nil {
		return ss.authFailed(role, err)
	}
	v, err := ss.roleVerifier(up)
	if err != nil {
		return ss.authFailed(role, err)
	}
	x := scramauth.NewServerExchange(v, ss.clientBinding())
	creds, err := ss.scramWithClient(x)
	if err != nil {
		return ss.authFailed(role, err)
	}
	if err := ss.proveUpstream(up, creds); err != nil {
		return ss.authFailed(role, err)
	}
	return ss.cw.send(&pgproto3.AuthenticationSASLFinal{Data: x.ServerFinal()})
}

// roleVerifier is the verifier to check the client against: the role's,
// or PostgreSQL's mock one when the role has none that matches what
// PostgreSQL asked with.
func (ss *session) roleVerifier(up *scramauth.ClientExchange) (*scramauth.Verifier, error) {
	ctx, cancel := context.WithTimeout(context.Background(), verifierTimeout)
	defer cancel()
	v, err := ss.srv.verifiers.Verifier(ctx, roleName(ss.user), up.KeyFactors())
	if err != nil {
		ss.srv.log.Warn("looking up a SCRAM verifier", "session", ss.id, "role", ss.user, "err", err)
		code := "28000"
		if errors.Is(err, errTooManyLookups) {
			code = "53300"
		}
		return nil, &scramauth.Error{Code: code, Msg: "cannot look up the role's credentials; see the pgcloak log"}
	}
	if !up.Matches(v) {
		return up.MockVerifier(), nil
	}
	return v, nil
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
	var tl *tooLargeError
	if errors.As(err, &tl) {
		// PostgreSQL fails the login as it fails a wrong password.
		ss.cr.discard(tl, maxDiscardedAuthBytes)
		return nil, scramauth.ErrWrongPassword
	}
	if err != nil {
		return nil, err
	}
	if typ != wire.ClientPassword {
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("expected SASL response, got message type %q", byte(typ))}
	}
	return body, nil
}

// proveUpstream finishes the exchange with PostgreSQL.
func (ss *session) proveUpstream(up *scramauth.ClientExchange, creds *scramauth.Credentials) error {
	c2, err := up.Final(creds)
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
	return up.Verify(s2)
}

// errUpstreamRefused is PostgreSQL ending the exchange with an
// ErrorResponse, which has been passed to the client.
var errUpstreamRefused = errors.New("authentication failed upstream")

// upstreamSASL reads PostgreSQL's next SASL message, of kind code, and
// returns its data. An ErrorResponse goes to the client as it is.
func (ss *session) upstreamSASL(code authRequest) ([]byte, error) {
	typ, body, err := ss.ur.next()
	if err != nil {
		return nil, err
	}
	switch {
	case typ == wire.ServerErrorResponse:
		ss.cw.raw(typ, body)
		ss.cw.flush()
		return nil, errUpstreamRefused
	case typ != wire.ServerAuthentication || len(body) < 4:
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("unexpected message %q from PostgreSQL during SCRAM", byte(typ))}
	}
	switch c := authCode(body); c {
	case code:
		return body[4:], nil
	default:
		return nil, &scramauth.Error{Code: "08P01", Msg: fmt.Sprintf("unexpected authentication request %d from PostgreSQL during SCRAM", uint32(c))}
	}
}

// authFailed ends a failed login: PostgreSQL's own error text for a wrong
// password (the same for a role that does not exist), counted.
func (ss *session) authFailed(role string, err error) error {
	metrics.LoginFailures.Inc()
	if errors.Is(err, errUpstreamRefused) {
		return err
	}
	var se *scramauth.Error
	switch {
	case errors.As(err, &se) && se.Code == "28P01":
		// PostgreSQL's words, with the name as it reads it, unescaped.
		ss.fatal("28P01", `password authentication failed for user "`+roleName(role)+`"`)
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

func authCode(body []byte) authRequest {
	return authRequest(uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3]))
}
