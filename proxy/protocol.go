package proxy

import (
	"fmt"
)

// msgType is the type byte of a framed message, either direction
// (wire.ClientType or wire.ServerType).
type msgType interface{ ~byte }

// authRequest is the request code of an Authentication message (its first
// word).
type authRequest uint32

const (
	authOK           authRequest = 0
	authSASL         authRequest = 10
	authSASLContinue authRequest = 11
	authSASLFinal    authRequest = 12
)

func (r authRequest) String() string {
	switch r {
	case authOK:
		return "AuthenticationOk"
	case authSASL:
		return "AuthenticationSASL"
	case authSASLContinue:
		return "AuthenticationSASLContinue"
	case authSASLFinal:
		return "AuthenticationSASLFinal"
	}
	return fmt.Sprintf("authentication request %d", uint32(r))
}

// encAnswer is the single byte that answers an SSLRequest or a
// GSSENCRequest.
type encAnswer byte

const (
	encAccepted encAnswer = 'S'
	encRefused  encAnswer = 'N'
)

func (a encAnswer) String() string {
	switch a {
	case encAccepted:
		return "accepted"
	case encRefused:
		return "refused"
	}
	return fmt.Sprintf("answer %q", byte(a))
}
