package audit

import "time"

// Record is one statement that touched an encrypted column, as one JSON
// line of the audit trail. It holds names, counts and the statement's
// Fingerprint, never a value.
type Record struct {
	// Time is when the statement ran; Write stamps it if zero and the
	// line gives it in UTC (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// Session is the proxy's id of the client session.
	Session uint64 `json:"session"`
	// User is the login role; Role the effective role (after SET ROLE),
	// whose grants decided what the statement saw.
	User string `json:"user"`
	Role string `json:"role"`
	// Client is the client's remote address.
	Client      string `json:"client"`
	Database    string `json:"database"`
	Application string `json:"application,omitempty"`
	// Statement is the statement's Fingerprint.
	Statement string   `json:"statement"`
	Kind      Kind     `json:"kind"`
	Columns   []Column `json:"columns"`
	Outcome   Outcome  `json:"outcome"`
	// SQLState and Reason say why a statement was refused or failed.
	// Reason is the proxy's own words: PostgreSQL's message and detail
	// can quote values ("Key (ssn)=(…) already exists"), so they never go
	// here.
	SQLState string `json:"sqlstate,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Column is what a statement did with one encrypted column.
type Column struct {
	// Table is "schema.table", as the policy names it.
	Table  string `json:"table"`
	Column string `json:"column"`
	// Key is the policy key that encrypts the column.
	Key    string `json:"key"`
	Action Action `json:"action"`
	// Rows is how many values the action applied to (rows decrypted,
	// denied or encrypted; 0 for a search).
	Rows int64 `json:"rows"`
}

// Kind is the statement's kind.
type Kind string

// Kinds of statements.
const (
	KindSelect Kind = "select"
	KindInsert Kind = "insert"
	KindUpdate Kind = "update"
	KindDelete Kind = "delete"
	KindCopy   Kind = "copy"
	KindOther  Kind = "other"
)

// Action is what happened to an encrypted column's values.
type Action string

// Actions on a column.
const (
	// Decrypted: values were decrypted for the client (read grant).
	Decrypted Action = "decrypted"
	// Denied: values were withheld as the role's on_denied says.
	Denied Action = "denied"
	// Encrypted: values the client sent were encrypted (write grant).
	Encrypted Action = "encrypted"
	// Searched: the column was compared with an encrypted search value.
	Searched Action = "searched"
)

// Outcome is how the statement ended.
type Outcome string

// Outcomes of a statement.
const (
	OutcomeOK      Outcome = "ok"
	OutcomeRefused Outcome = "refused" // by the proxy, before PostgreSQL saw it
	OutcomeError   Outcome = "error"   // by PostgreSQL, or while mapping its results
)
