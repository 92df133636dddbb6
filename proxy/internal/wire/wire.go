// Package wire names the values of the PostgreSQL wire protocol (version
// 3.0) that the proxy reads and writes: message types by direction, the
// transaction status, describe targets. Each kind has its own type: the
// same byte means different things in each direction ('S' is Sync from the
// client, ParameterStatus from the server), and the compiler keeps them
// apart.
package wire

import "fmt"

// ClientType is the type byte of a message from the client.
type ClientType byte

const (
	ClientQuery        ClientType = 'Q'
	ClientParse        ClientType = 'P'
	ClientBind         ClientType = 'B'
	ClientDescribe     ClientType = 'D'
	ClientExecute      ClientType = 'E'
	ClientClose        ClientType = 'C'
	ClientSync         ClientType = 'S'
	ClientFlush        ClientType = 'H'
	ClientCopyData     ClientType = 'd'
	ClientCopyDone     ClientType = 'c'
	ClientCopyFail     ClientType = 'f'
	ClientTerminate    ClientType = 'X'
	ClientFunctionCall ClientType = 'F'
	// ClientPassword is PasswordMessage, SASLInitialResponse and SASLResponse
	// alike: which one the server asked for tells them apart.
	ClientPassword ClientType = 'p'
)

func (t ClientType) String() string {
	switch t {
	case ClientQuery:
		return "Query"
	case ClientParse:
		return "Parse"
	case ClientBind:
		return "Bind"
	case ClientDescribe:
		return "Describe"
	case ClientExecute:
		return "Execute"
	case ClientClose:
		return "Close"
	case ClientSync:
		return "Sync"
	case ClientFlush:
		return "Flush"
	case ClientCopyData:
		return "CopyData"
	case ClientCopyDone:
		return "CopyDone"
	case ClientCopyFail:
		return "CopyFail"
	case ClientTerminate:
		return "Terminate"
	case ClientFunctionCall:
		return "FunctionCall"
	case ClientPassword:
		return "PasswordMessage"
	}
	return fmt.Sprintf("frontend message %q", byte(t))
}

// ServerType is the type byte of a message from the server.
type ServerType byte

const (
	ServerAuthentication           ServerType = 'R'
	ServerParameterStatus          ServerType = 'S'
	ServerBackendKeyData           ServerType = 'K'
	ServerReadyForQuery            ServerType = 'Z'
	ServerRowDescription           ServerType = 'T'
	ServerDataRow                  ServerType = 'D'
	ServerCommandComplete          ServerType = 'C'
	ServerEmptyQueryResponse       ServerType = 'I'
	ServerErrorResponse            ServerType = 'E'
	ServerNoticeResponse           ServerType = 'N'
	ServerNotificationResponse     ServerType = 'A'
	ServerParseComplete            ServerType = '1'
	ServerBindComplete             ServerType = '2'
	ServerCloseComplete            ServerType = '3'
	ServerNoData                   ServerType = 'n'
	ServerPortalSuspended          ServerType = 's'
	ServerParameterDescription     ServerType = 't'
	ServerCopyInResponse           ServerType = 'G'
	ServerCopyOutResponse          ServerType = 'H'
	ServerCopyBothResponse         ServerType = 'W'
	ServerCopyData                 ServerType = 'd'
	ServerCopyDone                 ServerType = 'c'
	ServerNegotiateProtocolVersion ServerType = 'v'
	ServerFunctionCallResponse     ServerType = 'V'
)

func (t ServerType) String() string {
	switch t {
	case ServerAuthentication:
		return "Authentication"
	case ServerParameterStatus:
		return "ParameterStatus"
	case ServerBackendKeyData:
		return "BackendKeyData"
	case ServerReadyForQuery:
		return "ReadyForQuery"
	case ServerRowDescription:
		return "RowDescription"
	case ServerDataRow:
		return "DataRow"
	case ServerCommandComplete:
		return "CommandComplete"
	case ServerEmptyQueryResponse:
		return "EmptyQueryResponse"
	case ServerErrorResponse:
		return "ErrorResponse"
	case ServerNoticeResponse:
		return "NoticeResponse"
	case ServerNotificationResponse:
		return "NotificationResponse"
	case ServerParseComplete:
		return "ParseComplete"
	case ServerBindComplete:
		return "BindComplete"
	case ServerCloseComplete:
		return "CloseComplete"
	case ServerNoData:
		return "NoData"
	case ServerPortalSuspended:
		return "PortalSuspended"
	case ServerParameterDescription:
		return "ParameterDescription"
	case ServerCopyInResponse:
		return "CopyInResponse"
	case ServerCopyOutResponse:
		return "CopyOutResponse"
	case ServerCopyBothResponse:
		return "CopyBothResponse"
	case ServerCopyData:
		return "CopyData"
	case ServerCopyDone:
		return "CopyDone"
	case ServerNegotiateProtocolVersion:
		return "NegotiateProtocolVersion"
	case ServerFunctionCallResponse:
		return "FunctionCallResponse"
	}
	return fmt.Sprintf("backend message %q", byte(t))
}

// TxStatus is the transaction status a ReadyForQuery reports.
type TxStatus byte

const (
	TxIdle    TxStatus = 'I' // not in a transaction block
	TxInBlock TxStatus = 'T' // in a transaction block
	TxFailed  TxStatus = 'E' // in a failed transaction block
)

func (s TxStatus) String() string {
	switch s {
	case TxIdle:
		return "idle"
	case TxInBlock:
		return "in transaction"
	case TxFailed:
		return "in failed transaction"
	}
	return fmt.Sprintf("transaction status %q", byte(s))
}

// Target is what a Describe or Close names: a prepared statement
// or a portal.
type Target byte

const (
	TargetStatement Target = 'S'
	TargetPortal    Target = 'P'
)

func (t Target) String() string {
	switch t {
	case TargetStatement:
		return "statement"
	case TargetPortal:
		return "portal"
	}
	return fmt.Sprintf("object type %q", byte(t))
}
