package proxy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// Statement kinds of metrics.Statements and of audit records: a bounded
// set, whatever the client sends.
const (
	kindSelect      = "select"
	kindInsert      = "insert"
	kindUpdate      = "update"
	kindDelete      = "delete"
	kindMerge       = "merge"
	kindCopy        = "copy"
	kindDDL         = "ddl"
	kindTransaction = "transaction"
	kindSet         = "set"
	kindOther       = "other"
)

// kindByWord maps a command tag's (or a statement's) first word to its
// kind.
var kindByWord = map[string]string{
	"SELECT": kindSelect, "VALUES": kindSelect, "TABLE": kindSelect, "WITH": kindSelect, "FETCH": kindSelect, "MOVE": kindSelect,
	"INSERT": kindInsert, "UPDATE": kindUpdate, "DELETE": kindDelete, "MERGE": kindMerge, "COPY": kindCopy,
	"CREATE": kindDDL, "ALTER": kindDDL, "DROP": kindDDL, "TRUNCATE": kindDDL, "COMMENT": kindDDL, "GRANT": kindDDL, "REVOKE": kindDDL,
	"BEGIN": kindTransaction, "START": kindTransaction, "COMMIT": kindTransaction, "END": kindTransaction, "ROLLBACK": kindTransaction,
	"ABORT": kindTransaction, "SAVEPOINT": kindTransaction, "RELEASE": kindTransaction, "PREPARE": kindTransaction,
	"SET": kindSet, "RESET": kindSet, "DISCARD": kindSet,
}

// statementCounters are metrics.Statements' counters by kind and outcome,
// resolved once: every statement counts.
var statementCounters = func() map[[2]string]prometheus.Counter {
	m := map[[2]string]prometheus.Counter{}
	for _, k := range []string{kindSelect, kindInsert, kindUpdate, kindDelete, kindMerge, kindCopy, kindDDL, kindTransaction, kindSet, kindOther} {
		for _, o := range []string{metrics.StatementPassed, metrics.StatementRewritten, metrics.StatementRefused} {
			m[[2]string{k, o}] = metrics.Statements.WithLabelValues(k, o)
		}
	}
	return m
}()

// kindOf is the kind of a command tag or of SQL text, by its first word.
func kindOf(text string) string {
	text = strings.TrimLeft(text, " \t\r\n(")
	end := strings.IndexFunc(text, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') })
	if end < 0 {
		end = len(text)
	}
	if k, ok := kindByWord[strings.ToUpper(text[:end])]; ok {
		return k
	}
	return kindOther
}

// tagRows is the row count a command tag ends with ("INSERT 0 5": 5), or
// 0.
func tagRows(tag string) int64 {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// columnUse is what a statement did with one encrypted column.
type columnUse struct {
	rule   *policy.ColumnRule
	action string // metrics.Value* or useSearched
	rows   int64
}

// useSearched: the column was compared with an encrypted value.
const useSearched = "searched"

// uses lists what st did with encrypted columns, given the shape its
// result was decrypted with (nil if none), the rows returned through that
// shape, and the rows its command tag reports.
func uses(st *sqlrewrite.Statement, shape *resultShape, returned, tagged int64) []columnUse {
	var out []columnUse
	if shape != nil {
		for i := range shape.actions {
			a := &shape.actions[i]
			if a.rule == nil {
				continue
			}
			action := metrics.ValueDecrypted
			if a.cipher == nil {
				action = metrics.ValueDenied
			}
			out = append(out, columnUse{rule: a.rule, action: action, rows: returned})
		}
	}
	if st == nil {
		return out
	}
	if shape == nil && st.Kind == sqlrewrite.KindCopy {
		// COPY TO decrypts as it streams; its tag counts the rows.
		for _, r := range st.Outputs {
			out = append(out, columnUse{rule: r, action: metrics.ValueDecrypted, rows: tagged})
		}
	}
	for _, r := range st.Writes {
		out = append(out, columnUse{rule: r, action: metrics.ValueEncrypted, rows: tagged})
	}
	for _, r := range st.Searches {
		out = append(out, columnUse{rule: r, action: useSearched, rows: tagged})
	}
	return out
}

// statementEnd is how a statement's result ended.
type statementEnd struct {
	tag      string // CommandComplete's tag ("" when it failed or was suspended)
	sqlstate string // the server's error, when it failed
}

// account counts a statement whose result has just ended (CommandComplete,
// ErrorResponse, PortalSuspended) and writes its audit record. It runs in
// the backend loop, before the result's shape is dropped.
func (ss *session) account(p *pending, end statementEnd) {
	st := statementOf(p)
	var shape *resultShape
	var returned int64
	if f := flowOf(p); f != nil {
		shape, returned = f.shape, f.rows
		f.rows = 0
	}
	kind := kindOf(end.tag)
	if end.tag == "" {
		kind = kindOfStatement(st)
	}
	used := uses(st, shape, returned, tagRows(end.tag))
	outcome := metrics.StatementPassed
	if len(used) > 0 {
		outcome = metrics.StatementRewritten
	}
	statementCounters[[2]string{kind, outcome}].Inc()
	for _, u := range used {
		if u.action != useSearched && u.rows > 0 && end.sqlstate == "" {
			metrics.Values.WithLabelValues(u.rule.KeyName, u.action).Add(float64(u.rows))
		}
	}
	if len(used) > 0 {
		ss.audit(p, st, kind, used, end)
	}
}

// kindOfStatement is a statement's kind when no command tag says it.
func kindOfStatement(st *sqlrewrite.Statement) string {
	if st == nil {
		return kindOther
	}
	switch st.Kind {
	case sqlrewrite.KindSelect:
		return kindSelect
	case sqlrewrite.KindInsert:
		return kindInsert
	case sqlrewrite.KindUpdate:
		return kindUpdate
	case sqlrewrite.KindDelete:
		return kindDelete
	case sqlrewrite.KindCopy:
		return kindCopy
	case sqlrewrite.KindDDL:
		return kindDDL
	case sqlrewrite.KindTransaction:
		return kindTransaction
	case sqlrewrite.KindSet:
		return kindSet
	}
	return kindOther
}

// errorCode is an ErrorResponse's SQLSTATE.
func errorCode(body []byte) string {
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil || e.Code == "" {
		return "XX000"
	}
	return e.Code
}

// countRefused counts a statement the proxy refused and writes its audit
// record.
func (ss *session) countRefused(err error) {
	code := sqlState(err)
	metrics.StatementsRefused.WithLabelValues(code).Inc()
	kind := kindOf(ss.lastSQL)
	statementCounters[[2]string{kind, metrics.StatementRefused}].Inc()
	ss.auditRefusal(kind, code, err)
}

// audit writes the audit record of a statement that used encrypted
// columns.
func (ss *session) audit(p *pending, st *sqlrewrite.Statement, kind string, used []columnUse, end statementEnd) {
	if !ss.srv.cfg.Audit.Enabled() {
		return
	}
	r := ss.auditRecord(kind, ss.fingerprint(statementSQL(p, st), end.sqlstate != ""))
	for _, u := range used {
		r.Columns = append(r.Columns, audit.Column{
			Table: u.rule.Schema + "." + u.rule.Table, Column: u.rule.Column, Key: u.rule.KeyName,
			Action: audit.Action(u.action), Rows: u.rows,
		})
	}
	r.Outcome = audit.OutcomeOK
	if end.sqlstate != "" {
		r.Outcome, r.SQLState = audit.OutcomeError, end.sqlstate
	}
	ss.srv.cfg.Audit.WriteUnless(r, ss.done)
}

// auditRefusal writes the audit record of a refused statement.
func (ss *session) auditRefusal(kind, code string, err error) {
	if !ss.srv.cfg.Audit.Enabled() {
		return
	}
	r := ss.auditRecord(kind, ss.fingerprint(ss.lastSQL, true))
	r.Outcome, r.SQLState = audit.OutcomeRefused, code
	if reasonIsValueFree[code] {
		r.Reason = err.Error()
	}
	ss.srv.cfg.Audit.WriteUnless(r, ss.done)
}

// reasonIsValueFree are the SQLSTATEs of the proxy's refusals whose
// messages name columns, keys, roles and operations but never a value.
// Others (22xxx invalid values, 42601 syntax errors near a token) may quote
// the client's SQL, and are audited by SQLSTATE alone.
var reasonIsValueFree = map[string]bool{
	"0A000": true, "42501": true, "55000": true, "58000": true, "54000": true,
	"40001": true, "26000": true, "25P02": true,
}

// auditRecord starts a record for the session's current statement.
func (ss *session) auditRecord(kind, fingerprint string) *audit.Record {
	ss.mu.Lock()
	role := ss.state.current.currentRole()
	app := ss.params["application_name"]
	ss.mu.Unlock()
	return &audit.Record{
		Session: ss.id, User: ss.user, Role: role, Client: ss.client.RemoteAddr().String(),
		Database: ss.database, Application: app, Statement: fingerprint, Kind: audit.Kind(kind),
	}
}

// statementSQL is the client's SQL of statement st, whose result p carries.
func statementSQL(p *pending, st *sqlrewrite.Statement) string {
	switch {
	case p.Kind == pipeline.Query:
		if f := flowOf(p); f != nil && f.plan != nil && st != nil && st.End <= len(f.plan.SQL) {
			return f.plan.SQL[st.Start:st.End]
		}
	case p.Portal != nil && p.Portal.stmt != nil && p.Portal.stmt.plan != nil:
		return p.Portal.stmt.plan.SQL
	}
	return ""
}

// maxFingerprint bounds a fingerprint in a record: a bulk INSERT's is as
// long as the statement.
const maxFingerprint = 4096

// maxCachedSQL bounds the SQL texts the fingerprint cache keeps: a bulk
// statement is seldom run again, and 128 of them at max_message_bytes
// would hold gigabytes.
const maxCachedSQL = 8 << 10

// fingerprint is audit.Fingerprint of sql, remembered for the statements
// a session runs again and again; for a statement that failed or was
// refused (failed), audit.Shape, whose identifiers may be values in the
// wrong quotes. Both loops call it (the backend for statements, the
// frontend for refusals): fpMu guards the cache. SQL over
// server.max_statement_bytes, which the proxy refuses without analysing,
// is not lexed either: the lexer's tokens cost many times its size.
func (ss *session) fingerprint(sql string, failed bool) string {
	if len(sql) > ss.srv.policy().limits.StatementBytesLimit() {
		return fmt.Sprintf("<statement over server.max_statement_bytes, %d bytes>", len(sql))
	}
	if failed {
		return bounded(audit.Shape(sql))
	}
	ss.fpMu.Lock()
	defer ss.fpMu.Unlock()
	if fp, ok := ss.fingerprints[sql]; ok {
		return fp
	}
	fp := bounded(audit.Fingerprint(sql))
	if len(sql) > maxCachedSQL {
		return fp
	}
	if len(ss.fingerprints) >= 128 || ss.fingerprints == nil {
		ss.fingerprints = map[string]string{}
	}
	ss.fingerprints[sql] = fp
	return fp
}

// bounded cuts a fingerprint to maxFingerprint bytes.
func bounded(fp string) string {
	if len(fp) <= maxFingerprint {
		return fp
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(fp[:maxFingerprint], ""), len(fp))
}
