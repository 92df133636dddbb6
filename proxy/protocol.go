package proxy

import "fmt"

// Named values of the PostgreSQL wire protocol (protocol version 3.0).
// Each kind has its own type: the same byte means different things in each
// direction ('S' is Sync from the client, ParameterStatus from the server),
// and the compiler keeps them apart.

// msgType is the type byte of a framed message, either direction.
type msgType interface{ ~byte }

// frontendType is the type byte of a message from the client.
type frontendType byte

const (
	feQuery        frontendType = 'Q'
	feParse        frontendType = 'P'
	feBind         frontendType = 'B'
	feDescribe     frontendType = 'D'
	feExecute      frontendType = 'E'
	feClose        frontendType = 'C'
	feSync         frontendType = 'S'
	feFlush        frontendType = 'H'
	feCopyData     frontendType = 'd'
	feCopyDone     frontendType = 'c'
	feCopyFail     frontendType = 'f'
	feTerminate    frontendType = 'X'
	feFunctionCall frontendType = 'F'
	// fePassword is PasswordMessage, SASLInitialResponse and SASLResponse
	// alike: which one the server asked for tells them apart.
	fePassword frontendType = 'p'
)

func (t frontendType) String() string {
	switch t {
	case feQuery:
		return "Query"
	case feParse:
		return "Parse"
	case feBind:
		return "Bind"
	case feDescribe:
		return "Describe"
	case feExecute:
		return "Execute"
	case feClose:
		return "Close"
	case feSync:
		return "Sync"
	case feFlush:
		return "Flush"
	case feCopyData:
		return "CopyData"
	case feCopyDone:
		return "CopyDone"
	case feCopyFail:
		return "CopyFail"
	case feTerminate:
		return "Terminate"
	case feFunctionCall:
		return "FunctionCall"
	case fePassword:
		return "PasswordMessage"
	}
	return fmt.Sprintf("frontend message %q", byte(t))
}

// backendType is the type byte of a message from the server.
type backendType byte

const (
	beAuthentication           backendType = 'R'
	beParameterStatus          backendType = 'S'
	beBackendKeyData           backendType = 'K'
	beReadyForQuery            backendType = 'Z'
	beRowDescription           backendType = 'T'
	beDataRow                  backendType = 'D'
	beCommandComplete          backendType = 'C'
	beEmptyQueryResponse       backendType = 'I'
	beErrorResponse            backendType = 'E'
	beNoticeResponse           backendType = 'N'
	beNotificationResponse     backendType = 'A'
	beParseComplete            backendType = '1'
	beBindComplete             backendType = '2'
	beCloseComplete            backendType = '3'
	beNoData                   backendType = 'n'
	bePortalSuspended          backendType = 's'
	beParameterDescription     backendType = 't'
	beCopyInResponse           backendType = 'G'
	beCopyOutResponse          backendType = 'H'
	beCopyBothResponse         backendType = 'W'
	beCopyData                 backendType = 'd'
	beCopyDone                 backendType = 'c'
	beNegotiateProtocolVersion backendType = 'v'
	beFunctionCallResponse     backendType = 'V'
)

func (t backendType) String() string {
	switch t {
	case beAuthentication:
		return "Authentication"
	case beParameterStatus:
		return "ParameterStatus"
	case beBackendKeyData:
		return "BackendKeyData"
	case beReadyForQuery:
		return "ReadyForQuery"
	case beRowDescription:
		return "RowDescription"
	case beDataRow:
		return "DataRow"
	case beCommandComplete:
		return "CommandComplete"
	case beEmptyQueryResponse:
		return "EmptyQueryResponse"
	case beErrorResponse:
		return "ErrorResponse"
	case beNoticeResponse:
		return "NoticeResponse"
	case beNotificationResponse:
		return "NotificationResponse"
	case beParseComplete:
		return "ParseComplete"
	case beBindComplete:
		return "BindComplete"
	case beCloseComplete:
		return "CloseComplete"
	case beNoData:
		return "NoData"
	case bePortalSuspended:
		return "PortalSuspended"
	case beParameterDescription:
		return "ParameterDescription"
	case beCopyInResponse:
		return "CopyInResponse"
	case beCopyOutResponse:
		return "CopyOutResponse"
	case beCopyBothResponse:
		return "CopyBothResponse"
	case beCopyData:
		return "CopyData"
	case beCopyDone:
		return "CopyDone"
	case beNegotiateProtocolVersion:
		return "NegotiateProtocolVersion"
	case beFunctionCallResponse:
		return "FunctionCallResponse"
	}
	return fmt.Sprintf("backend message %q", byte(t))
}

// txStatus is the transaction status a ReadyForQuery reports.
type txStatus byte

const (
	txIdle    txStatus = 'I' // not in a transaction block
	txInBlock txStatus = 'T' // in a transaction block
	txFailed  txStatus = 'E' // in a failed transaction block
)

func (s txStatus) String() string {
	switch s {
	case txIdle:
		return "idle"
	case txInBlock:
		return "in transaction"
	case txFailed:
		return "in failed transaction"
	}
	return fmt.Sprintf("transaction status %q", byte(s))
}

// describeTarget is what a Describe or Close names: a prepared statement
// or a portal.
type describeTarget byte

const (
	targetStatement describeTarget = 'S'
	targetPortal    describeTarget = 'P'
)

func (t describeTarget) String() string {
	switch t {
	case targetStatement:
		return "statement"
	case targetPortal:
		return "portal"
	}
	return fmt.Sprintf("object type %q", byte(t))
}

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
