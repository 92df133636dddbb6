// Package sqlrewrite is pgcloak's pure SQL analysis. It parses statements
// with pg_query_go, resolves which relations and columns are encrypted,
// decides whether a statement is safe (fail closed: anything it cannot show
// to be safe is refused), and produces a Plan: the edits that splice the
// original SQL at AST byte locations (never Deparse), which literals and
// parameters the proxy must encrypt under which column rule, what grants the
// statement needs, and what the statement does to session state.
//
// It does no I/O and holds no keys: the proxy supplies catalog facts through
// Env and performs encryption through the callback of Plan.Rewrite.
package sqlrewrite

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgcloak/pgcloak/policy"
)

// Relation is a table or view that has encrypted columns, as the proxy's
// catalog knows it.
type Relation struct {
	Schema string
	Name   string
	// Columns are all the relation's column names in attribute order, or
	// nil when unknown.
	Columns []string
	// Encrypted maps a column name to its rule. For a view, a column that is
	// a plain reference to an encrypted column carries that column's rule.
	Encrypted map[string]*policy.ColumnRule
	View      bool
}

// Catalog is the database-wide knowledge the analysis needs. The proxy
// implements it over a cache of pg_class/pg_attribute; tests use a map.
type Catalog interface {
	// SchemasWith returns every schema holding a relation (of any kind)
	// named name. Only called for names of relations with encrypted columns.
	SchemasWith(name string) []string
	// Relation returns schema.name if it has encrypted columns, else nil.
	Relation(schema, name string) *Relation
	// EncryptedName reports whether any relation with encrypted columns is
	// named name (the fast path for every other name).
	EncryptedName(name string) bool
}

// Env is the session's view: catalog facts plus session state.
type Env struct {
	Catalog Catalog
	// SearchPath is the effective schema search path, "$user" expanded,
	// without pg_catalog. Temporary tables are not resolved: a name that
	// names both a temporary table and an encrypted relation is taken for
	// the encrypted one (and pinned to it), which can only fail closed.
	SearchPath []string
	// Prepared returns an SQL-level prepared statement (PREPARE name) of
	// this session, for EXECUTE.
	Prepared func(name string) (*Prepared, bool)
	// Next, when set, is called after each statement of a multi-statement
	// string but the last, and returns the Env the statements after it
	// are analyzed in (nil: unchanged): PostgreSQL runs each statement
	// with the role, search_path and prepared statements the earlier ones
	// left.
	Next func(*Statement) *Env
	// OrderVersions returns how many enabled key versions the ordered key
	// of rule has (nil: one): comparisons with its column are shaped for
	// that many (see ordered.go).
	OrderVersions func(rule *policy.ColumnRule) int
	// Limits bounds what analysing the string may cost (see limits.go).
	Limits Limits
	// LexRisk is what may make PostgreSQL lex the text differently from
	// the analysis (see LexRisk): statements on encrypted data it could
	// change are refused.
	LexRisk LexRisk
}

// Plan is the analysis of one SQL string (one or more statements).
type Plan struct {
	SQL        string
	Statements []*Statement
	// Edits are the splices to apply to SQL, sorted and non-overlapping.
	Edits []Edit
	// Params maps $n (index n-1) to the column rule its value must be
	// encrypted under; nil entries are plain parameters. Without hidden
	// parameters its length is the highest encrypted parameter number.
	// With them (ClientParams > 0), Params[:ClientParams] are the client's
	// parameters and each entry after is a hidden parameter the proxy adds
	// and fills ($ClientParams+1, …; see ParamRule.Source).
	Params []*ParamRule
	// ClientParams is, for a plan with hidden parameters, how many
	// parameters the client binds: the highest $n the SQL uses, or more
	// after SetClientParams. PostgreSQL gets ClientParams+len(Hidden())
	// parameters. It is 0 for a plan without hidden parameters.
	ClientParams int
	// OrderVersions maps the name of each ordered key whose order the
	// plan relies on (Statement.Orders) to the number of enabled
	// versions it was shaped for; the proxy refuses to run it once the
	// key has another number.
	OrderVersions map[string]int
}

// CandidateSlots is how many hidden bytea parameters carry the candidates
// of a single-value parameter compared with a deterministic column (see
// ParamRule.Candidates). A fixed number, not one bytea[] parameter, so
// that PostgreSQL can choose a generic plan for a prepared statement:
// with an array parameter, whose length the planner cannot know, it
// re-plans at every execution. Eight covers the primary and several
// older key versions, and the text form during a migration.
const CandidateSlots = 8

// ParamRule says how the proxy must treat one bind parameter.
type ParamRule struct {
	Rule *policy.ColumnRule
	// Write is true when the value is stored (needs the write grant),
	// false when it is only compared (needs the read grant).
	Write bool
	// Compared is true when the value is compared as its one ciphertext
	// under the key's primary version somewhere in the SQL (forms not
	// rewritten to candidates: row comparisons, IN (VALUES …), subquery
	// constants), which misses values stored under other versions.
	Compared bool
	// Source, set on a hidden parameter only, is the number n of the
	// client's parameter $n whose value the proxy computes it from.
	Source int
	// Candidates marks a hidden parameter that carries every ciphertext
	// the source's value may be stored as in Rule's column (one per
	// enabled key version, primary first; see
	// keymap.ColumnCipher.Candidates). For an Array source it is one
	// bytea[] (see Array). For a single value they are CandidateSlots
	// consecutive bytea parameters, Slot 0 to CandidateSlots-1, written
	// ARRAY[$a, …, $a+7]::bytea[]: slot k holds the k-th candidate, or
	// a copy of the first when there are fewer (a copy changes neither
	// = ANY nor <> ALL), or a value no stored value equals when there
	// is none; every slot is NULL when the source is. A value with more
	// candidates than slots cannot be bound.
	Candidates bool
	// Slot is the position of a single value's hidden candidate
	// parameter among its CandidateSlots (see Candidates).
	Slot int
	// BoundsOnly marks a client's parameter used only through the range
	// ends of its hidden parameters (Bound): it appears nowhere in the
	// SQL and goes to PostgreSQL as NULL (declared bytea).
	BoundsOnly bool
	// Bound, set on a hidden parameter only, asks for one end of the
	// range of Rule's ordered ciphertexts the source's value stands for
	// (see ordered.go).
	Bound *OrderBound
	// Casts are the casts written on the parameter, innermost first;
	// with the type the client declares, they say what value the
	// parameter stands for (see ValueSource).
	Casts    []Cast
	castsSet bool
	// Array marks a parameter holding an array whose elements are
	// compared with Rule's column (col = ANY($n), col <> ALL($n)), and
	// its hidden parameter. Casts are then the element types of the
	// array casts written on it ($n::varchar(3)[] has Casts [varchar(3)]).
	// The client's parameter no longer appears in the SQL and goes to
	// PostgreSQL as NULL (declared bytea); its hidden parameter carries
	// the candidates of every element, in one flat bytea[], with a NULL
	// element for each NULL element, or is NULL when the array is.
	Array bool
}

// ValueSource says what PostgreSQL would take a constant or parameter as
// before it meets an encrypted column's type: its own type and the
// casts written on it. The proxy applies those conversions, as the
// column is bytea in PostgreSQL.
type ValueSource struct {
	// OID is the constant's type: int4, int8 or numeric for a number,
	// bool, or unknown (705) for a string literal, which the innermost
	// cast's type or else the column's reads.
	OID uint32
	// Casts are the casts written on the value, innermost first.
	Casts []Cast
}

// Cast is a cast to a type PostgreSQL has built in, with its modifiers as
// written: varchar(3) has Mods [3].
type Cast struct {
	OID  uint32
	Mods []int32
}

// Edit replaces SQL[Start:End] with Text, or, when Literal is set, with the
// encrypted form of Literal's value, or, when Parts is set, with the
// concatenation of the parts.
type Edit struct {
	Start, End int
	Text       string
	Literal    *Literal
	Parts      []Part
}

// Part is a piece of an Edit's replacement: Text, or a Literal the proxy
// renders, or (Hidden > 0) the plan's hidden parameter number Hidden,
// written $n with n = ClientParams+Hidden.
type Part struct {
	Text    string
	Literal *Literal
	Hidden  int
}

// Literal is a constant the proxy must encrypt before PostgreSQL sees it.
type Literal struct {
	Rule *policy.ColumnRule
	// Value is the constant as PostgreSQL would read it: the string's
	// content with quoting and escapes resolved, or a number's text.
	Value string
	// Write is true when the value is stored, false when compared.
	Write bool
	// Compared is true for a value compared as its one ciphertext (see
	// ParamRule.Compared).
	Compared bool
	// Candidates asks for every ciphertext the value may be stored as
	// (see ParamRule.Candidates), as an array:
	// ARRAY['\x…'::bytea, '\x…'::bytea].
	Candidates bool
	// Slots, with Candidates, asks instead for the values of a
	// parameter's CandidateSlots hidden parameters, as EXECUTE
	// arguments: Slots bytea constants separated by commas, filled as
	// ParamRule.Candidates says (NULL::bytea each for NULL).
	Slots int
	// Array marks an array constant compared with = ANY or <> ALL: Value
	// is its text ('{…}'), Source the type and casts of its elements, and
	// the candidates of every element (NULL elements kept) make one array.
	Array bool
	// Source is the constant's type and casts.
	Source ValueSource
	// Bound asks for one end of the range of Rule's ordered ciphertexts
	// the constant stands for, as one bytea constant (see ordered.go).
	Bound *OrderBound
}

// Hidden returns the hidden parameters, which the proxy adds after the
// client's: Hidden()[i] is $ClientParams+i+1.
func (p *Plan) Hidden() []*ParamRule {
	if p.ClientParams == 0 || p.ClientParams > len(p.Params) {
		return nil
	}
	return p.Params[p.ClientParams:]
}

// HasHidden reports whether a hidden parameter is computed from the
// client's parameter $n.
func (p *Plan) HasHidden(n int) bool {
	for _, h := range p.Hidden() {
		if h.Source == n {
			return true
		}
	}
	return false
}

// SetClientParams records that the client binds n parameters, when that
// is more than the SQL uses (a Parse may declare more parameter types):
// the hidden parameters move after them. It does nothing to a plan
// without hidden parameters, or for n not above ClientParams.
func (p *Plan) SetClientParams(n int) {
	hidden := p.Hidden()
	if len(hidden) == 0 || n <= p.ClientParams {
		return
	}
	params := make([]*ParamRule, n, n+len(hidden))
	copy(params, p.Params[:p.ClientParams])
	p.Params = append(params, hidden...)
	p.ClientParams = n
}

// Touches reports whether the plan involves encrypted data at all.
func (p *Plan) Touches() bool {
	if len(p.Params) > 0 {
		return true
	}
	for _, e := range p.Edits {
		if e.Literal != nil {
			return true
		}
		for _, part := range e.Parts {
			if part.Literal != nil || part.Hidden > 0 {
				return true
			}
		}
	}
	for _, s := range p.Statements {
		if len(s.Writes) > 0 || len(s.Searches) > 0 || len(s.Outputs) > 0 || s.Copy != nil {
			return true
		}
	}
	return false
}

// Rewrite applies the edits. encrypt returns the SQL text that replaces a
// literal (for example '\x…'::bytea); its error aborts the rewrite.
func (p *Plan) Rewrite(encrypt func(*Literal) (string, error)) (string, error) {
	if len(p.Edits) == 0 {
		return p.SQL, nil
	}
	out := make([]byte, 0, len(p.SQL)+64*len(p.Edits))
	last := 0
	for i := range p.Edits {
		e := &p.Edits[i]
		out = append(out, p.SQL[last:e.Start]...)
		s := e.Text
		switch {
		case e.Literal != nil:
			var err error
			if s, err = encrypt(e.Literal); err != nil {
				return "", err
			}
		case len(e.Parts) > 0:
			var err error
			if s, err = p.renderParts(e.Parts, encrypt); err != nil {
				return "", err
			}
		}
		out = appendSeparated(out, s, p.SQL[e.End:])
		last = e.End
	}
	out = append(out, p.SQL[last:]...)
	return string(out), nil
}

// renderParts renders an edit's parts.
func (p *Plan) renderParts(parts []Part, encrypt func(*Literal) (string, error)) (string, error) {
	var b strings.Builder
	for _, part := range parts {
		switch {
		case part.Literal != nil:
			s, err := encrypt(part.Literal)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		case part.Hidden > 0:
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p.ClientParams + part.Hidden))
		default:
			b.WriteString(part.Text)
		}
	}
	return b.String(), nil
}

// appendSeparated appends a replacement, with a space on either side where
// it would otherwise run into an adjacent word ('x'AND is valid SQL, but
// its replacement '\x…'::byteaAND is not).
func appendSeparated(out []byte, s, rest string) []byte {
	if len(s) == 0 {
		return out
	}
	if len(out) > 0 && isIdentChar(out[len(out)-1]) && isIdentChar(s[0]) {
		out = append(out, ' ')
	}
	out = append(out, s...)
	if len(rest) > 0 && isIdentChar(s[len(s)-1]) && isIdentChar(rest[0]) {
		out = append(out, ' ')
	}
	return out
}

// Kind classifies a statement by what the proxy must do around it.
type Kind int

const (
	KindOther       Kind = iota // passes through; no session effect
	KindSelect                  // SELECT, VALUES, TABLE, WITH … SELECT
	KindInsert                  //
	KindUpdate                  //
	KindDelete                  //
	KindCopy                    // COPY … FROM STDIN / TO STDOUT (Copy is nil when no encrypted column is involved)
	KindTransaction             // BEGIN, COMMIT, ROLLBACK, SAVEPOINT …
	KindSet                     // SET / RESET / SET ROLE / SET SESSION AUTHORIZATION / DISCARD
	KindPrepare                 // SQL-level PREPARE
	KindExecute                 // SQL-level EXECUTE
	KindDeallocate              // SQL-level DEALLOCATE
	KindDDL                     // may change relations or columns: refresh the catalog after it
)

// TxOp is a transaction-control statement.
type TxOp int

const (
	TxNone TxOp = iota
	TxBegin
	TxCommit
	TxRollback
	TxSavepoint
	TxRelease
	TxRollbackTo
	TxPrepare // PREPARE TRANSACTION: ends the transaction like COMMIT for session state
)

// Statement is one statement of a Plan.
type Statement struct {
	Kind Kind
	// Start and End are the statement's byte range in Plan.SQL.
	Start, End int

	Tx        TxOp
	Savepoint string // for TxSavepoint, TxRelease, TxRollbackTo

	// Effects are the session settings the statement changes when it
	// completes successfully, in order.
	Effects []Effect

	// ServerCode names the server-side code the statement creates or runs
	// ("DO", "CREATE FUNCTION", "CALL", …; "" for none): code whose SQL
	// the proxy never sees, which only roles allowed server-side code may
	// send.
	ServerCode string

	// Unlistens: UNLISTEN or DISCARD ALL, which also end the proxy's own
	// LISTEN on the session.
	Unlistens bool

	// ChangesCatalog: DDL that names a relation with encrypted columns
	// (or a name like one), which may change what every session's
	// catalog snapshot holds. DDL naming none, or creating only
	// temporary objects, changes only the session's own.
	ChangesCatalog bool

	// Writes are columns the statement stores values in (write grant);
	// Searches are columns compared with an encrypted literal or
	// parameter (read grant); Outputs are encrypted columns the statement
	// may return (for on_denied: error). Writes include columns set to
	// NULL or copied from another column of the same key (not DEFAULT).
	// For KindPrepare they are on Prepare.Statement; for KindExecute they
	// are copied from the prepared statement.
	Writes   []*policy.ColumnRule
	Searches []*policy.ColumnRule
	Outputs  []*policy.ColumnRule
	// Orders are ordered columns whose ciphertexts' byte order the
	// statement relies on (range comparisons, ORDER BY, MIN/MAX); each is
	// also in Searches. See Plan.OrderVersions.
	Orders []*policy.ColumnRule
	// Copies are the encrypted columns whose stored values the statement
	// copies into a column (one of Writes, under the same key).
	Copies []*policy.ColumnRule
	// Columns is, for a statement returning rows, the rule of each result
	// column that carries a ciphertext (nil for plain ones), by position.
	// PostgreSQL reports no column of origin for some (UNION, INTERSECT,
	// EXCEPT), which the proxy then decrypts by position.
	Columns []*policy.ColumnRule

	Copy       *CopyPlan
	Prepare    *Prepared // for KindPrepare
	Execute    string    // for KindExecute: the prepared statement's name
	Deallocate string    // for KindDeallocate: name, or "" for ALL
}

// Setting names a session setting the proxy tracks.
type Setting string

const (
	SettingRole                 Setting = "role"
	SettingSessionAuthorization Setting = "session_authorization"
	SettingSearchPath           Setting = "search_path"
	SettingTimeZone             Setting = "timezone"
	SettingExtraFloatDigits     Setting = "extra_float_digits"
	SettingByteaOutput          Setting = "bytea_output"
	SettingAll                  Setting = "all" // RESET ALL
	SettingDiscardAll           Setting = "discard all"
)

// Effect is one change to a tracked session setting.
type Effect struct {
	Setting Setting
	// Values: for role and session_authorization one name; for
	// search_path the schema list.
	Values []string
	// Reset means back to the session's default (RESET x, SET x TO
	// DEFAULT, SET ROLE NONE, SET SESSION AUTHORIZATION DEFAULT).
	Reset bool
	// Local is SET LOCAL (or set_config(…, true)): undone at transaction end.
	Local bool
	// Claimed marks an effect of a set_config call. Unlike SET, a function
	// call is resolved by PostgreSQL through the session's search_path, so
	// the call may reach another function (a schema of the role's own put
	// first, or an overload that wins for unknown-typed literals): the
	// effect is only what the text claims until PostgreSQL confirms it.
	Claimed bool
	// Unknown: the value is not in the text (a set_config parameter);
	// Values is empty.
	Unknown bool
}

// Prepared is an SQL-level prepared statement.
type Prepared struct {
	Name   string
	Params []*ParamRule
	// OrderVersions is Plan.OrderVersions for the keys of
	// Statement.Orders, as the body was shaped.
	OrderVersions map[string]int
	// ClientParams is, as for Plan, the number of parameters EXECUTE
	// passes when the statement has hidden parameters (0 otherwise):
	// EXECUTE must then add one argument per hidden parameter.
	ClientParams int
	// Statement is the analysis of the prepared statement's body.
	Statement *Statement
}

// CopyPlan describes a COPY through STDIN/STDOUT on a relation with
// encrypted columns.
type CopyPlan struct {
	Relation *Relation
	From     bool // COPY … FROM STDIN (else TO STDOUT)
	// Columns are the copied columns in order; Rules[i] is the rule of
	// Columns[i] or nil.
	Columns []string
	Rules   []*policy.ColumnRule
	Format  CopyFormat
}

// CopyFormat is the data format of a COPY as its options give it, with
// PostgreSQL's defaults filled in. Quote and Escape are only set for csv;
// binary uses none of the fields but Kind and Header.
type CopyFormat struct {
	Kind      string // "text", "csv" or "binary"
	Delimiter byte
	Null      string
	Header    bool
	Quote     byte
	Escape    byte
}

// Error is a refusal: the statement is not sent upstream. Messages never
// contain literal values.
type Error struct {
	Code    string // SQLSTATE
	Message string
	// Column names the encrypted column concerned, when there is one.
	Column string
	// Position is where in the statement text the error is, as PostgreSQL
	// counts it (1-based, in characters), or 0.
	Position int
}

func (e *Error) Error() string { return e.Message }

// ErrorPosition returns Position: the cursor position of the ErrorResponse.
func (e *Error) ErrorPosition() int { return e.Position }

// SQLState returns the error's SQLSTATE.
func (e *Error) SQLState() string { return e.Code }

// SQLSTATEs of refusals.
const (
	CodeFeatureNotSupported = "0A000" // would need plaintext inside PostgreSQL
	CodeInsufficientPriv    = "42501"
	CodeSyntaxError         = "42601"
	CodeInvalidText         = "22P02"
	// Statements too large or too deep to analyse safely (limits.go).
	CodeProgramLimitExceeded = "54000"
	CodeStatementTooComplex  = "54001"
)

func refuse(column, format string, args ...any) *Error {
	return &Error{Code: CodeFeatureNotSupported, Column: column, Message: fmt.Sprintf(format, args...)}
}

func syntaxRefusal(format string, args ...any) *Error {
	return &Error{Code: CodeSyntaxError, Message: fmt.Sprintf(format, args...)}
}

// at sets the error's Position to byte offset off of sql, counted as
// PostgreSQL counts it: in characters, from 1.
func (e *Error) at(sql string, off int) *Error {
	if off < 0 || off > len(sql) {
		return e
	}
	e.Position = utf8.RuneCountInString(sql[:off]) + 1
	return e
}
