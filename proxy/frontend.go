package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

const (
	byteaOID      = 17
	byteaArrayOID = 1001
)

// Names of the proxy's own prepared statements. A refusal or an injected
// abort Parses a statement that is not SQL: the Parse fails whatever
// statements the client has (even one of that name), creates nothing,
// and, being named, leaves the client's unnamed statement alone. The
// failure puts the server in the state the client expects after the
// proxy's own error (transaction aborted, rest of the batch skipped).
const (
	refusedStatement = "pgcloak.refused"
	abortStatement   = "pgcloak.abort"
	notSQL           = "pgcloak refused"
)

// failingParse is a Parse that always fails without side effects.
func failingParse(name string) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: notSQL}
}

// setConfigOID is pg_catalog.set_config, whose changes to role,
// search_path or TimeZone the proxy must see in SQL.
const setConfigOID = 2078

// frontend holds the frontend loop's own state.
type frontend struct {
	skipUntilSync bool
	copy          *copyIn // COPY FROM STDIN in progress
	// copyReq is the request that may have put the server in copy-in
	// mode, until the client ends the COPY: a Sync sent meanwhile is
	// swallowed by the server if the COPY started.
	copyReq *pending
	// barrier is the last request that changes what planning depends
	// on (see needsBarrier) and may not have completed. The frontend
	// waits for it lazily, before the next message it plans, never
	// before relaying COPY data, Sync or Flush, which the request may
	// be waiting for itself.
	barrier *pending
}

// frontendLoop reads client messages until the client leaves.
func (ss *session) frontendLoop() error {
	var fe frontend
	for {
		if !ss.cr.buffered() {
			if err := ss.uw.flush(); err != nil {
				return err
			}
		}
		typ, body, err := ss.cr.next()
		if err != nil {
			return ss.clientGone(&fe, err)
		}
		if fe.skipUntilSync && typ != wire.ClientSync && isExtended(typ) {
			continue
		}
		if typ == wire.ClientTerminate {
			return ss.terminate(&fe, body)
		}
		if !ss.beginMessage() {
			// The proxy is ending the session: the message came too late.
			return errSessionClosed
		}
		err = ss.frontendMessage(&fe, typ, body)
		ss.endMessage()
		if err != nil {
			return err
		}
	}
}

// terminate forwards the client's Terminate, after which nothing follows:
// the session ends as the client asked, whatever the proxy was about to
// end it for.
func (ss *session) terminate(fe *frontend, body []byte) error {
	ss.endAs(metrics.SessionClosed)
	if err := ss.frontendMessage(fe, wire.ClientTerminate, body); err != nil {
		return err
	}
	return ss.uw.flush()
}

func isExtended(typ wire.ClientType) bool {
	switch typ {
	case wire.ClientParse, wire.ClientBind, wire.ClientDescribe, wire.ClientExecute, wire.ClientClose, wire.ClientFlush:
		return true
	}
	return false
}

// isPlanned reports the messages whose handling depends on session state
// (and so waits for a barrier).
func isPlanned(typ wire.ClientType) bool {
	switch typ {
	case wire.ClientQuery, wire.ClientParse, wire.ClientBind, wire.ClientDescribe, wire.ClientExecute, wire.ClientClose, wire.ClientFunctionCall:
		return true
	}
	return false
}

// clientGone handles a read error from the client: an oversized or
// malformed message is reported, and a COPY in progress is failed so the
// server does not wait for data that will never come.
func (ss *session) clientGone(fe *frontend, err error) error {
	// Recorded before the Terminate below, whose effect (PostgreSQL
	// closing) the backend loop may see first.
	ss.endAs(endOutcome(err, metrics.SessionClosed))
	var tl *tooLargeError
	var me *malformedError
	switch {
	case errors.As(err, &tl):
		ss.protocolViolation(tl.Error())
	case errors.As(err, &me):
		ss.protocolViolation(me.Error())
	}
	if fe.copy != nil {
		ss.send(nil, &pgproto3.CopyFail{Message: "pgcloak: client connection lost during COPY"})
	}
	ss.send(nil, &pgproto3.Terminate{})
	ss.uw.flush()
	return err
}

func (ss *session) protocolViolation(msg string) {
	ss.log.Warn("protocol violation", "err", msg)
	ss.cw.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: "pgcloak: " + msg})
	ss.cw.end()
}

func (ss *session) frontendMessage(fe *frontend, typ wire.ClientType, body []byte) error {
	if fe.barrier != nil && isPlanned(typ) {
		dropped, err := ss.settle(fe, typ)
		if err != nil || dropped {
			return err
		}
	}
	if (typ == wire.ClientQuery || typ == wire.ClientParse || typ == wire.ClientBind) && fe.copy == nil && fe.copyReq == nil {
		// (Not in the middle of a COPY FROM STDIN, which waits for the
		// client: the message that ends it must go through.)
		if err := ss.catchUpCatalog(); err != nil {
			return err
		}
	}
	if fe.copy != nil && typ != wire.ClientCopyData && typ != wire.ClientCopyDone && typ != wire.ClientCopyFail && typ != wire.ClientFlush && typ != wire.ClientSync {
		// Anything else ends COPY mode, as it does for the server, which
		// ignores Flush and Sync in copy-in mode.
		fe.copy = nil
	}
	if typ != wire.ClientCopyData && typ != wire.ClientFlush && typ != wire.ClientSync {
		fe.copyReq = nil
	}
	// Timed from here: the waits above are for the server.
	start := time.Now()
	err := ss.dispatch(fe, typ, body)
	latencyToServer.Observe(time.Since(start).Seconds())
	return err
}

// dispatch handles one client message by its type.
func (ss *session) dispatch(fe *frontend, typ wire.ClientType, body []byte) error {
	switch typ {
	case wire.ClientQuery:
		return ss.query(fe, body)
	case wire.ClientParse:
		return ss.parse(fe, body)
	case wire.ClientBind:
		return ss.bind(fe, body)
	case wire.ClientDescribe:
		return ss.describe(body)
	case wire.ClientExecute:
		return ss.execute(fe, body)
	case wire.ClientClose:
		return ss.closeObject(body)
	case wire.ClientSync:
		fe.skipUntilSync = false
		return ss.sendRaw(&pending{Kind: pipeline.Sync, During: fe.copyReq}, typ, body)
	case wire.ClientFlush:
		return ss.sendRaw(nil, typ, body)
	case wire.ClientCopyData, wire.ClientCopyDone, wire.ClientCopyFail:
		return ss.copyMessage(fe, typ, body)
	case wire.ClientTerminate:
		return ss.sendRaw(nil, typ, body)
	case wire.ClientFunctionCall:
		return ss.functionCall(body)
	default:
		ss.protocolViolation(fmt.Sprintf("invalid frontend message type %q", byte(typ)))
		return &malformedError{fmt.Sprintf("invalid frontend message type %q", byte(typ))}
	}
}

// settle waits for fe.barrier's request to complete before a message that
// is planned. When that request is a COPY FROM STDIN the server has
// started and the client did not end, the message is a protocol violation
// that would leave both sides waiting: the server takes it as one (it
// fails the COPY and discards the message), and so does the proxy, which
// then reports dropped.
func (ss *session) settle(fe *frontend, typ wire.ClientType) (dropped bool, err error) {
	b := fe.barrier
	fe.barrier = nil
	if err := ss.uw.flush(); err != nil {
		return false, err
	}
	ss.mu.Lock()
	done := b.Done()
	var copying <-chan struct{} // nil: never ready
	if b == fe.copyReq {
		copying = b.CopyStarted()
	}
	ss.mu.Unlock()
	select {
	case <-done:
		return false, nil
	case <-copying:
		fe.barrier = b
		return true, ss.failCopyForClient(fe, typ)
	case <-ss.done:
		return false, errSessionClosed
	}
}

// failCopyForClient fails the COPY in progress because the client sent a
// message of type typ in the middle of it, as PostgreSQL would.
func (ss *session) failCopyForClient(fe *frontend, typ wire.ClientType) error {
	req := fe.copyReq
	fe.copy, fe.copyReq = nil, nil
	ss.mu.Lock()
	req.Refusal = newSQLError("08P01", "unexpected message type 0x%02X during COPY from stdin", byte(typ))
	ss.mu.Unlock()
	return ss.send(nil, &pgproto3.CopyFail{Message: "pgcloak: protocol violation during COPY"})
}

// holdBarrier makes the next planned message wait for p when stmts change
// what planning depends on. Set before p is queued: the backend may
// release it as soon as it is sent.
func (fe *frontend) holdBarrier(p *pending, stmts ...*sqlrewrite.Statement) {
	if !needsBarrier(stmts) {
		return
	}
	p.Done()
	if hasCopy(stmts...) {
		p.CopyStarted()
	}
	fe.barrier = p
}

func (ss *session) decodeError(what string) error {
	ss.protocolViolation("malformed " + what + " message")
	return &malformedError{"malformed " + what + " message"}
}

// plan analyses SQL, checks the current role's grants and encrypts the
// literals; the error is what the client must see instead. declared is the
// number of parameter types a Parse declares (0 for a Query): hidden
// parameters are numbered after the client's.
func (ss *session) plan(sql string, declared int) (*sqlrewrite.Plan, string, keyVersions, error) {
	if err := ss.relisten(); err != nil {
		return nil, "", nil, err
	}
	ss.refreshCatalogIfStale()
	if err := ss.confirmRole(); err != nil {
		return nil, "", nil, err
	}
	ss.mu.Lock()
	cat := ss.cat
	unknown := ss.catalogUnknownLocked() != nil
	ss.mu.Unlock()
	if !unknown {
		// A catalog the proxy could not reload might name any relation
		// encrypted: no text is plain then (see catalogUnknownLocked).
		if plan, ok := sqlrewrite.PlainPlan(sql, cat); ok {
			return plan, sql, nil, nil
		}
	}
	// Each statement of the string is analysed and authorized in the
	// session state the earlier ones leave (see sequence.go).
	sim := ss.newQuerySim(sql)
	env := sim.env()
	env.LexRisk = ss.lexRisk()
	plan, err := sqlrewrite.Analyze(sql, env)
	if err != nil {
		return nil, "", nil, err
	}
	if err := ss.checkEncoding(plan); err != nil {
		return nil, "", nil, err
	}
	if err := sim.check(plan); err != nil {
		return nil, "", nil, err
	}
	if err := checkZoneOrder(plan); err != nil {
		return nil, "", nil, err
	}
	plan.SetClientParams(declared)
	tc := ss.textContext()
	ciphers := ss.newCiphers().forPlan(plan)
	out, err := plan.Rewrite(func(lit *sqlrewrite.Literal) (string, error) {
		return ss.literalSQL(ciphers, lit, tc)
	})
	if err != nil {
		return nil, "", nil, err
	}
	if ciphers.lits != nil {
		ss.recordPrepareKeys(plan, ciphers.lits)
	}
	return plan, out, ciphers.lits, nil
}

// recordPrepareKeys notes the key versions of the constants in the
// string's SQL PREPAREs (all of the string's, to be safe), which EXECUTE
// checks.
func (ss *session) recordPrepareKeys(plan *sqlrewrite.Plan, kv keyVersions) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, st := range plan.Statements {
		if st.Kind != sqlrewrite.KindPrepare || st.Prepare == nil {
			continue
		}
		if src, ok := ss.prepSrc[st.Prepare]; ok {
			src.keys = kv
			ss.prepSrc[st.Prepare] = src
		}
	}
}

// clientOnlyEncodings are the client encodings whose multibyte characters
// can end in an ASCII byte (PostgreSQL's PG_ENCODING_BE_LAST and after:
// never a server encoding for that reason).
var clientOnlyEncodings = map[string]bool{
	"SJIS": true, "SHIFT_JIS_2004": true, "BIG5": true, "GBK": true, "UHC": true, "GB18030": true, "JOHAB": true,
}

// lexRisk is what the proxy cannot be sure of about how PostgreSQL will
// lex the next statement. The settings are as PostgreSQL last reported
// them, which it does before each ReadyForQuery; with requests in flight,
// any of them (a function, a trigger, a SET) may change either setting
// before the server reads the statement, so both are unknown then.
func (ss *session) lexRisk() sqlrewrite.LexRisk {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var risk sqlrewrite.LexRisk
	if v := keymap.ServerMajor(ss.params["server_version"]); v > 0 && v < 16 {
		risk |= sqlrewrite.RiskPre16Numbers
	}
	if !ss.pl.Idle() {
		return risk | sqlrewrite.RiskBackslashEscapes | sqlrewrite.RiskSplitBackslash
	}
	if ss.params["standard_conforming_strings"] != "on" {
		risk |= sqlrewrite.RiskBackslashEscapes
	}
	if enc := ss.params["client_encoding"]; enc == "" || clientOnlyEncodings[enc] {
		risk |= sqlrewrite.RiskSplitBackslash | sqlrewrite.RiskClientOnlyEncoding
	}
	return risk
}

// checkEncoding refuses encrypted text when the client does not speak
// UTF-8: ciphertexts must hold one canonical encoding for every client.
func (ss *session) checkEncoding(plan *sqlrewrite.Plan) error {
	ss.mu.Lock()
	enc := ss.params["client_encoding"]
	ss.mu.Unlock()
	if enc == "" || enc == "UTF8" || !plan.Touches() {
		return nil
	}
	return newSQLError("0A000", "statements on encrypted columns need client_encoding UTF8, not %s", enc)
}

// roleQuery asks PostgreSQL for the session's roles. CURRENT_USER and
// SESSION_USER are keywords, not functions: no search_path can redirect
// them.
const roleQuery = "SELECT CURRENT_USER, SESSION_USER"

// confirmRole replaces a role claimed by set_config with the one
// PostgreSQL reports, when no request is in flight (the query then runs
// on its own, in the client's transaction if one is open). While requests
// are in flight, or in a failed transaction, the claim stays and
// statements that need grants are refused (errRoleClaimed). err is only
// the session's end.
func (ss *session) confirmRole() error {
	ss.mu.Lock()
	claimed := ss.state.current.roleClaim != 0
	idle := ss.pl.Idle() && ss.pl.Status() != wire.TxFailed
	ss.mu.Unlock()
	if !claimed || !idle {
		return nil
	}
	iq, err := ss.runInternal(roleQuery)
	if err != nil {
		return err
	}
	current, session, ok := roleAnswer(iq)
	if !ok {
		ss.log.Warn("could not confirm the session's role with PostgreSQL; statements on encrypted columns are refused until it is", "err", iq.err)
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if claimed := ss.state.current.currentRole(); claimed != current {
		ss.log.Warn("set_config claimed a role PostgreSQL did not switch to; applying the role PostgreSQL reports", "claimed", claimed, "current_user", current)
	}
	ss.state.confirmRole(current, session)
	return nil
}

// roleAnswer reads roleQuery's answer.
func roleAnswer(iq *internalQuery) (current, session string, ok bool) {
	if iq.err != nil || len(iq.results) == 0 {
		return "", "", false
	}
	rows := iq.results[len(iq.results)-1]
	if len(rows) != 1 || len(rows[0]) != 2 || rows[0][0] == "" || rows[0][1] == "" {
		return "", "", false
	}
	return rows[0][0], rows[0][1], true
}

// authorize checks the current role's grants for what the statements do
// with encrypted columns.
func (ss *session) authorize(stmts []*sqlrewrite.Statement) error {
	ss.mu.Lock()
	who := granteeOf(ss.state.current)
	ss.mu.Unlock()
	return ss.authorizeAs(who, stmts)
}

// errRoleClaimed refuses a statement on encrypted columns while the role
// is one a set_config call claimed and PostgreSQL has not confirmed.
var errRoleClaimed = newSQLError("0A000", "the role was changed by set_config, which pgcloak confirms with PostgreSQL before it applies that role's grants; send statements on encrypted columns after it in a later request (after Sync), or use SET ROLE")

// authorizeAs checks who's grants for what the statements do with
// encrypted columns.
func (ss *session) authorizeAs(who grantee, stmts []*sqlrewrite.Statement) error {
	role := who.role
	g := ss.srv.policy().grants.For(role)
	ss.mu.Lock()
	cat := ss.cat
	ss.mu.Unlock()
	for _, st := range stmts {
		if st == nil {
			continue
		}
		if st.ServerCode != "" && (who.claimed || !g.ServerSideCode) {
			return newSQLError("42501", "role %q may not run server-side code (%s) through pgcloak, which cannot check what it does with encrypted columns; the policy allows it per role with server_side_code: allow", role, st.ServerCode)
		}
		if who.claimed && (len(st.Writes) > 0 || len(st.Searches) > 0 || len(st.Outputs) > 0) {
			return errRoleClaimed
		}
		if err := checkConverted(cat, st); err != nil {
			return err
		}
		for _, r := range st.Writes {
			if !g.CanWrite(r.KeyName) {
				return newSQLError("42501", "role %q may not write column %s (key %q)", role, r.Name(), r.KeyName)
			}
		}
		for _, r := range st.Searches {
			if !g.CanRead(r.KeyName) {
				return newSQLError("42501", "role %q may not search column %s (key %q)", role, r.Name(), r.KeyName)
			}
		}
		for _, r := range st.Outputs {
			if cat.state(r).mode == modeUnconverted {
				// Plaintext in PostgreSQL: passed through as it is.
				continue
			}
			if !g.CanRead(r.KeyName) {
				if g.OnDenied == policy.DeniedError {
					return newSQLError("42501", "role %q may not read column %s (key %q)", role, r.Name(), r.KeyName)
				}
				continue
			}
			// A key that is unavailable now fails the statement before
			// it runs, rather than in the middle of its result.
			if _, err := ss.cipher(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkConverted refuses a statement that writes or searches a policy
// column that is not encrypted in PostgreSQL (and not being encrypted):
// its values would be stored or compared in plaintext where the policy
// wants ciphertext. It also refuses them at the end of a decrypt, whose
// ALTER they could race: a bytea written or compared after it would be
// stored as text or fail.
func checkConverted(cat *catalog, st *sqlrewrite.Statement) error {
	if cat.migrationsUnknown {
		for _, rules := range [][]*policy.ColumnRule{st.Writes, st.Searches} {
			if len(rules) > 0 {
				return newSQLError("0A000", "pgcloak.column_migrations is not readable by this role, so pgcloak cannot tell whether column %s is being migrated; grant SELECT on it and USAGE on schema pgcloak", rules[0].Name())
			}
		}
	}
	if err := checkForms(cat, st); err != nil {
		return err
	}
	for _, rules := range [][]*policy.ColumnRule{st.Writes, st.Searches} {
		for _, r := range rules {
			s := cat.state(r)
			if s.mode == modeDecryptFinishing {
				return newSQLError("0A000", "column %s is being given back its type by pgcloak decrypt; writes and searches on it are refused", r.Name())
			}
			if s.mode == modeUnconverted {
				if s.bytea {
					return newSQLError("0A000", "column %s holds plaintext after pgcloak decrypt; remove it from the policy or run pgcloak encrypt", r.Name())
				}
				return newSQLError("0A000", "column %s is %s in PostgreSQL; run pgcloak encrypt", r.Name(), s.pgType)
			}
		}
	}
	return nil
}

// checkForms refuses a statement that copies a column that is being
// migrated, which holds text forms, into another column of its key, which
// holds only ciphertexts. (A parameter or constant written to several
// columns is stored as a ciphertext unless all of them are being
// decrypted: see ciphers.textFormWrite.)
func checkForms(cat *catalog, st *sqlrewrite.Statement) error {
	for _, w := range st.Writes {
		for _, c := range st.Copies {
			if c != w && cat.state(c).mixed() {
				return newSQLError("0A000", "column %s cannot be copied into %s while pgcloak encrypt or decrypt runs on it", c.Name(), w.Name())
			}
		}
	}
	return nil
}

// needsBarrier reports whether statements change what the analysis of the
// next ones depends on (role, search_path, prepared statements, the
// catalog, transaction state); the frontend then waits for them to finish
// before it plans another message (see frontend.barrier).
func needsBarrier(stmts []*sqlrewrite.Statement) bool {
	for _, st := range stmts {
		if st != nil && changesSession(st) {
			return true
		}
	}
	return false
}

// wait blocks until a request is done or the session ends.
func (ss *session) wait(ch <-chan struct{}) error {
	if err := ss.uw.flush(); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ss.done:
		return errSessionClosed
	}
}

// query handles a simple-protocol Query.
func (ss *session) query(fe *frontend, body []byte) error {
	var q pgproto3.Query
	if q.Decode(body) != nil {
		return ss.decodeError("Query")
	}
	ss.lastSQL = q.String
	plan, sql, _, err := ss.plan(q.String, 0)
	if err != nil {
		return ss.refuse(err, true)
	}
	p := &pending{Kind: pipeline.Query, Data: &resultFlow{plan: plan}}
	ci, err := ss.copyInFor(plan, p)
	if err != nil {
		return ss.refuse(err, true)
	}
	fe.copy = ci
	if hasCopy(plan.Statements...) {
		fe.copyReq = p
	}
	fe.holdBarrier(p, plan.Statements...)
	if sql == q.String {
		return ss.sendRaw(p, wire.ClientQuery, body)
	}
	return ss.send(p, &pgproto3.Query{String: sql})
}

// refuse answers a request with the proxy's error in a way that keeps the
// server's transaction state what the client will expect: the server is
// made to fail too, and that failure is reported as err.
func (ss *session) refuse(err error, simple bool) error {
	ss.log.Info("statement refused", "err", err.Error())
	ss.countRefused(err)
	p := &pending{Kind: pipeline.Refused, Refusal: err, Simple: simple}
	if simple {
		// A syntax error: PostgreSQL runs nothing and aborts an open
		// transaction, exactly as for a refused statement. (Like the
		// client's own Query would, it drops the unnamed statement.)
		return ss.send(p, &pgproto3.Query{String: notSQL})
	}
	return ss.send(p, failingParse(refusedStatement))
}

func (ss *session) refuseExtended(fe *frontend, err error) error {
	fe.skipUntilSync = true
	return ss.refuse(err, false)
}

// functionCall handles a fast-path FunctionCall. set_config would change
// role, search_path or TimeZone unseen, so it is refused; the server is
// made to fail a call to a function that does not exist instead, which,
// like the client's call, ends at ReadyForQuery, is skipped inside a
// failed batch, and leaves the unnamed statement alone.
func (ss *session) functionCall(body []byte) error {
	var fc pgproto3.FunctionCall
	if fc.Decode(body) != nil {
		return ss.decodeError("FunctionCall")
	}
	if fc.Function != setConfigOID {
		return ss.sendRaw(&pending{Kind: pipeline.FunctionCall}, wire.ClientFunctionCall, body)
	}
	err := newSQLError("0A000", "set_config through the fast-path function call interface is not supported: use SELECT set_config(…)")
	ss.log.Info("statement refused", "err", err.Error())
	ss.lastSQL = "SELECT set_config(...)"
	ss.countRefused(err)
	return ss.send(&pending{Kind: pipeline.Refused, Refusal: err, Simple: true}, &pgproto3.FunctionCall{Function: 0})
}

// parse handles Parse: the statement is planned, its literals encrypted,
// and encrypted parameters declared bytea upstream.
func (ss *session) parse(fe *frontend, body []byte) error {
	var msg pgproto3.Parse
	if msg.Decode(body) != nil {
		return ss.decodeError("Parse")
	}
	ss.lastSQL = msg.Query
	if msg.Name != "" {
		if err := ss.settleStatement(msg.Name); err != nil {
			return err
		}
	}
	plan, sql, keys, err := ss.plan(msg.Query, len(msg.ParameterOIDs))
	if err != nil {
		return ss.refuseExtended(fe, err)
	}
	if len(plan.Statements) > 1 {
		// PostgreSQL's own rule; the plan would otherwise be ambiguous.
		return ss.refuseExtended(fe, newSQLError("42601", "cannot insert multiple commands into a prepared statement"))
	}
	// What the client declared, kept apart from what goes upstream.
	declared := slices.Clone(msg.ParameterOIDs)
	oids := slices.Clone(declared)
	for i, pr := range plan.Params {
		if pr == nil {
			continue
		}
		for len(oids) <= i {
			oids = append(oids, 0)
		}
		oids[i] = byteaOID
		if pr.Source > 0 && pr.Array {
			// An array's candidates; a single value's are in bytea
			// slots (sqlrewrite.ParamRule.Candidates).
			oids[i] = byteaArrayOID
		}
	}
	st := &preparedStmt{name: msg.Name, plan: plan, env: ss.planEnvNow(), declared: declared, keys: keys}
	if err := st.checkParamTypes(); err != nil {
		return ss.refuseExtended(fe, err)
	}
	p := &pending{Kind: pipeline.Parse, Name: msg.Name, Stmt: st}
	if sql == msg.Query && len(plan.Params) == 0 {
		return ss.sendRaw(p, wire.ClientParse, body)
	}
	return ss.send(p, &pgproto3.Parse{Name: msg.Name, Query: sql, ParameterOIDs: oids})
}

// bind handles Bind: grants are checked for the current role and encrypted
// parameters are encrypted, sent in binary (bytea) format.
func (ss *session) bind(fe *frontend, body []byte) error {
	var msg pgproto3.Bind
	if msg.Decode(body) != nil {
		return ss.decodeError("Bind")
	}
	if bindSize(&msg) != len(body) {
		// pgproto3 ignores bytes after the result formats, which a
		// Bind the proxy re-encodes would drop; a malformed message
		// ends the session (DESIGN.md, errors).
		return ss.decodeError("Bind")
	}
	if err := ss.settleStatement(msg.PreparedStatement); err != nil {
		return err
	}
	ss.mu.Lock()
	st := ss.pl.Statement(msg.PreparedStatement)
	ss.mu.Unlock()
	ss.lastSQL = ""
	if st != nil {
		ss.lastSQL = st.plan.SQL
	}
	if st == nil {
		// Not one the proxy saw prepared (server-side code can PREPARE):
		// its parameters could be bound for an encrypted column.
		return ss.refuseExtended(fe, newSQLError("26000", "prepared statement %q does not exist (pgcloak did not see it prepared)", msg.PreparedStatement))
	}
	if err := ss.replanned(st); err != nil {
		return ss.refuseExtended(fe, err)
	}
	if err := ss.confirmRole(); err != nil {
		return err
	}
	if err := ss.authorize(st.plan.Statements); err != nil {
		return ss.refuseExtended(fe, err)
	}
	changed, err := ss.encryptParams(st, &msg)
	if err != nil {
		return ss.refuseExtended(fe, err)
	}
	pt := &portal{name: msg.DestinationPortal, stmt: st, resultFormats: msg.ResultFormatCodes}
	if stored := ss.storedFormats(st, msg.ResultFormatCodes); stored != nil {
		pt.stored, msg.ResultFormatCodes = stored, stored
		changed = true
	}
	p := &pending{Kind: pipeline.Bind, Name: msg.DestinationPortal, Portal: pt}
	if !changed {
		return ss.sendRaw(p, wire.ClientBind, body)
	}
	return ss.send(p, &msg)
}

// bindSize is the length of the body msg was decoded from, had it ended
// with its result formats.
func bindSize(msg *pgproto3.Bind) int {
	n := len(msg.DestinationPortal) + 1 + len(msg.PreparedStatement) + 1 +
		2 + 2*len(msg.ParameterFormatCodes) + 2 + 2 + 2*len(msg.ResultFormatCodes)
	for _, p := range msg.Parameters {
		n += 4 + len(p)
	}
	return n
}

// storedFormats asks the server for the encrypted columns of a described
// statement's result in binary where the client reads them as text: the
// proxy decrypts the bytes either way, and bytea's text output (twice the
// size, hex-encoded by the server and decoded here) is work for nothing.
// It returns one format per column, or nil to send the client's: when no
// column gains, the client's codes are ones PostgreSQL refuses (its
// error must stay the client's), or the statement's columns may differ
// from its description (see describedColumnsHold).
func (ss *session) storedFormats(st *preparedStmt, client []int16) []int16 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !st.described || len(st.fields) == 0 || ss.cat == nil || !describedColumnsHold(st.statement()) {
		return nil
	}
	if m := st.stored; m.cat == ss.cat && slices.Equal(m.client, client) {
		return m.answer
	}
	stored := ss.storedFormatsLocked(st.fields, client)
	st.stored = storedFormatsMemo{cat: ss.cat, client: slices.Clone(client), answer: stored}
	return stored
}

// storedFormatsLocked works storedFormats' answer out for a description
// and the client's codes, under the catalog snapshot ss.cat.
func (ss *session) storedFormatsLocked(fields []pgproto3.FieldDescription, client []int16) []int16 {
	if n := len(client); n > 1 && n != len(fields) {
		return nil
	}
	for _, c := range client {
		if c != 0 && c != 1 {
			return nil
		}
	}
	var stored []int16
	for i, f := range fields {
		if formatFor(client, i) != 0 || f.DataTypeOID != byteaOID {
			continue
		}
		rule := ss.cat.column(f.TableOID, f.TableAttributeNumber)
		if rule == nil || ss.cat.readMode(rule, f.DataTypeOID) == readPass {
			continue
		}
		if stored == nil {
			stored = make([]int16, len(fields))
			for j := range stored {
				stored[j] = formatFor(client, j)
			}
		}
		stored[i] = 1
	}
	return stored
}

// describedColumnsHold reports a statement whose result PostgreSQL keeps
// to the types it was described with: a query or DML, which it re-plans
// or refuses ("cached plan must not change result type"). A FETCH or an
// EXECUTE returns whatever the cursor or the statement it names returns
// when it runs: a column described as an encrypted bytea may be another
// column of another type by then, whose binary form the proxy cannot turn
// into the client's text.
func describedColumnsHold(st *sqlrewrite.Statement) bool {
	if st == nil {
		return false
	}
	switch st.Kind {
	case sqlrewrite.KindSelect, sqlrewrite.KindInsert, sqlrewrite.KindUpdate, sqlrewrite.KindDelete:
		return true
	}
	return false
}

// encryptParams encrypts the parameters bound for encrypted columns and
// appends the hidden parameters, computed from the client's values.
func (ss *session) encryptParams(st *preparedStmt, msg *pgproto3.Bind) (bool, error) {
	plan := st.plan
	if len(plan.Params) == 0 {
		return false, nil
	}
	// The Bind is rebuilt below: PostgreSQL's own checks of the format
	// codes come first, or a malformed Bind would get a repaired meaning.
	if err := checkFormatCodes(msg); err != nil {
		return false, err
	}
	hidden := plan.Hidden()
	if len(hidden) > 0 && len(msg.Parameters) != plan.ClientParams {
		// PostgreSQL's own check, made here since the count it sees
		// includes the hidden parameters.
		return false, newSQLError("08P01", "bind message supplies %d parameters, but prepared statement %q requires %d",
			len(msg.Parameters), msg.PreparedStatement, plan.ClientParams)
	}
	formats := make([]int16, len(msg.Parameters), len(msg.Parameters)+len(hidden))
	for i := range formats {
		formats[i] = formatFor(msg.ParameterFormatCodes, i)
	}
	tc := ss.textContext()
	ciphers := ss.newCiphers().forPlan(plan)
	// Hidden parameters first: they are computed from the client's
	// values, which the loop below replaces.
	extra := make([][]byte, len(hidden))
	var slots [][]byte // the slots of the single value being filled
	bounds := boundParams{cs: ciphers, tc: tc}
	for j, h := range hidden {
		src := h.Source - 1
		if src < 0 || src >= len(msg.Parameters) {
			return false, newSQLError("08P01", "bind message lacks parameter $%d", h.Source)
		}
		if h.Bound != nil {
			v, err := bounds.value(h, st.paramValue(src, formats[src], msg.Parameters[src]))
			if err != nil {
				return false, fmt.Errorf("parameter $%d: %w", h.Source, err)
			}
			extra[j] = v
			continue
		}
		if h.Array {
			v, err := ss.arrayCandidatesParam(ciphers, h, st, formats[src], msg.Parameters[src], tc)
			if err != nil {
				return false, fmt.Errorf("parameter $%d: %w", h.Source, err)
			}
			extra[j] = v
			continue
		}
		if h.Slot == 0 {
			// The first of its slots: its candidates, computed once.
			var err error
			slots, err = candidateSlots(ciphers, h.Rule, st.paramValue(src, formats[src], msg.Parameters[src]), tc)
			if err != nil {
				return false, fmt.Errorf("parameter $%d: %w", h.Source, err)
			}
		}
		if h.Slot >= len(slots) {
			return false, fmt.Errorf("parameter $%d: hidden parameter slot %d out of order", h.Source, h.Slot)
		}
		extra[j] = slots[h.Slot]
	}
	for i, pr := range plan.Params {
		if pr != nil && (pr.Array || pr.BoundsOnly) && pr.Source == 0 && i < len(msg.Parameters) {
			// Its elements (or its range ends) are in its hidden
			// parameters; the value itself never reaches PostgreSQL.
			msg.Parameters[i] = nil
			continue
		}
		if pr == nil || pr.Source > 0 || i >= len(msg.Parameters) || msg.Parameters[i] == nil {
			continue
		}
		if pr.Compared {
			if err := ciphers.checkSingle(pr.Rule); err != nil {
				return false, err
			}
		}
		v, err := ciphers.store(pr.Rule, st.paramValue(i, formats[i], msg.Parameters[i]), tc, pr.Write)
		if err != nil {
			return false, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		msg.Parameters[i] = v
		formats[i] = 1
	}
	for _, v := range extra {
		msg.Parameters = append(msg.Parameters, v)
		formats = append(formats, 1)
	}
	msg.ParameterFormatCodes = formats
	return true, nil
}

// checkFormatCodes makes PostgreSQL's checks of a Bind's parameter format
// codes: none, one for all, or one per parameter, each text or binary.
func checkFormatCodes(msg *pgproto3.Bind) error {
	n := len(msg.ParameterFormatCodes)
	if n > 1 && n != len(msg.Parameters) {
		return newSQLError("08P01", "bind message has %d parameter formats but %d parameters", n, len(msg.Parameters))
	}
	for _, f := range msg.ParameterFormatCodes {
		if f != 0 && f != 1 {
			return newSQLError("22023", "unsupported format code: %d", f)
		}
	}
	return nil
}

// byteaArrays decodes bytea[] values (see arrayElements). pgtype.Map is
// not safe for concurrent use; sessions share a pool.
var byteaArrays = sync.Pool{New: func() any { return pgtype.NewMap() }}

// encodeByteaArray encodes an array's hidden parameter (see
// arrayCandidatesParam): elems as a one-dimensional bytea[] in binary
// format (lower bound 1, a nil element NULL), byte for byte what pgtype
// encodes for a [][]byte, or nil (SQL NULL) for nil elems. One
// allocation, where pgtype's reflection took about eight per Bind.
func encodeByteaArray(elems [][]byte) []byte {
	if elems == nil {
		return nil
	}
	size, hasNull := 20, uint32(0)
	for _, e := range elems {
		size += 4 + len(e)
		if e == nil {
			hasNull = 1
		}
	}
	buf := make([]byte, 0, size)
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	buf = binary.BigEndian.AppendUint32(buf, hasNull)
	buf = binary.BigEndian.AppendUint32(buf, byteaOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(elems)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, e := range elems {
		buf = appendField(buf, e, e == nil)
	}
	return buf
}

// candidateSlots returns the values of the sqlrewrite.CandidateSlots
// hidden bytea parameters of a single client value compared with rule's
// deterministic column: its candidates in order, padded with copies of
// the first (a copy changes neither = ANY nor <> ALL), or all NULL for
// NULL. A value no stored value can equal fills them with matchesNothing,
// so the comparison is false, or NULL for a NULL column, as PostgreSQL's
// own. More candidates than slots are refused.
func candidateSlots(cs *ciphers, rule *policy.ColumnRule, v clientValue, tc *keymap.TextContext) ([][]byte, error) {
	slots := make([][]byte, sqlrewrite.CandidateSlots)
	if v.raw == nil {
		return slots, nil
	}
	cands, err := cs.candidates(rule, v, tc)
	if err != nil {
		return nil, err
	}
	return fillSlots(rule, cands, slots)
}

// fillSlots puts cands in slots, padded with copies of the first (see
// candidateSlots).
func fillSlots(rule *policy.ColumnRule, cands, slots [][]byte) ([][]byte, error) {
	if len(cands) > len(slots) {
		return nil, tooManyCandidates(rule, len(cands), len(slots))
	}
	first := matchesNothing
	if len(cands) > 0 {
		first = cands[0]
	}
	for k := range slots {
		slots[k] = first
		if k < len(cands) {
			slots[k] = cands[k]
		}
	}
	return slots, nil
}

// tooManyCandidates refuses a search on a value stored in more forms
// (enabled key versions, and the text form during a migration) than a
// comparison with a parameter has slots for.
func tooManyCandidates(rule *policy.ColumnRule, n, slots int) error {
	return newSQLError("54000", "column %s: a value compared with this column may be stored in %d forms (one per enabled key version, and its text form during a migration), more than the %d a comparison with a parameter can carry; finish `pgcloak reencrypt` on the column so fewer key versions are in use",
		rule.Name(), n, slots)
}

func (ss *session) describe(body []byte) error {
	var msg pgproto3.Describe
	if msg.Decode(body) != nil {
		return ss.decodeError("Describe")
	}
	p := &pending{Kind: pipeline.Describe, Target: wire.Target(msg.ObjectType), Name: msg.Name}
	ss.mu.Lock()
	if p.Target == wire.TargetStatement {
		p.Stmt = ss.pl.Statement(msg.Name)
	} else {
		p.Portal = ss.pl.Portal(msg.Name)
	}
	ss.mu.Unlock()
	return ss.sendRaw(p, wire.ClientDescribe, body)
}

// execute handles Execute. When the proxy does not know the portal's
// columns (the client never described it), it asks the server first, so
// rows can be decrypted.
func (ss *session) execute(fe *frontend, body []byte) error {
	var msg pgproto3.Execute
	if msg.Decode(body) != nil {
		return ss.decodeError("Execute")
	}
	ss.mu.Lock()
	pt := ss.pl.Portal(msg.Portal)
	known := false
	if pt != nil {
		// The backend records descriptions under ss.mu.
		_, known = pt.resultFields()
	}
	ss.mu.Unlock()
	p := &pending{Kind: pipeline.Execute, Name: msg.Portal, Portal: pt, Data: &resultFlow{}}
	var msgs []encoder
	if pt != nil {
		// The portal's statement, not the last one parsed or bound, is
		// what a refusal is audited with.
		ss.lastSQL = pt.stmt.plan.SQL
		// Refused before anything is sent: a COPY the proxy cannot
		// rewrite must not start.
		ci, err := ss.copyInFor(pt.stmt.plan, p)
		if err != nil {
			return ss.refuseExtended(fe, err)
		}
		if !known {
			if err := ss.send(&pending{Kind: pipeline.HiddenDescribe, Target: wire.TargetPortal, Name: msg.Portal, Portal: pt},
				&pgproto3.Describe{ObjectType: byte(wire.TargetPortal), Name: msg.Portal}); err != nil {
				return err
			}
		}
		st := pt.stmt.statement()
		fe.holdBarrier(p, st)
		if fe.barrier == p {
			// The server holds results until Sync or Flush.
			msgs = append(msgs, &pgproto3.Flush{})
		}
		fe.copy = ci
		if hasCopy(st) {
			fe.copyReq = p
		}
	}
	ss.uw.mu.Lock()
	defer ss.uw.mu.Unlock()
	ss.pushLocked(p)
	if err := ss.uw.rawLocked(wire.ClientExecute, body); err != nil {
		return err
	}
	return ss.uw.sendLocked(msgs...)
}

func (ss *session) closeObject(body []byte) error {
	var msg pgproto3.Close
	if msg.Decode(body) != nil {
		return ss.decodeError("Close")
	}
	object := wire.Target(msg.ObjectType)
	if object == wire.TargetStatement && msg.Name != "" {
		if err := ss.settleStatement(msg.Name); err != nil {
			return err
		}
	}
	// One namespace: Close drops a statement made by SQL PREPARE too.
	p := &pending{Kind: pipeline.Close, Target: object, Name: msg.Name}
	return ss.sendRaw(p, wire.ClientClose, body)
}

// sqlPreparedStmt stands for a statement made by SQL PREPARE in the
// namespace it shares with protocol Parse (without its plan a Bind would
// go out unencrypted); it keeps its description as long as it lives.
func sqlPreparedStmt(prep *sqlrewrite.Prepared) *preparedStmt {
	st := &preparedStmt{name: prep.Name, plan: &sqlrewrite.Plan{Params: prep.Params, ClientParams: prep.ClientParams}, prep: prep}
	if prep.Statement != nil {
		st.plan.Statements = []*sqlrewrite.Statement{prep.Statement}
	}
	return st
}

// settleStatement waits when the proxy's record of statement name rests
// on a Parse or Close the server has not answered and that belongs to an
// earlier batch (before a Sync): should that batch fail, the server skips
// them, and a plan chosen now could differ from the server's statement.
// Within one batch no wait is needed: the requests stand or fall together.
func (ss *session) settleStatement(name string) error {
	ss.mu.Lock()
	var done <-chan struct{}
	if sync := ss.pl.SyncBefore(name); sync != nil {
		done = sync.Done()
	}
	ss.mu.Unlock()
	if done == nil {
		return nil
	}
	return ss.wait(done)
}

// hasCopy reports a COPY to or from the client among stmts.
func hasCopy(stmts ...*sqlrewrite.Statement) bool {
	for _, st := range stmts {
		if st != nil && st.Kind == sqlrewrite.KindCopy {
			return true
		}
	}
	return false
}
