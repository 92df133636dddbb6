package proxy

import "github.com/pgcloak/pgcloak/sqlrewrite"

// What a statement does to session state is written once, in
// applyStatement, and applied to two targets: a querySim predicts it while
// the statements of a query string are planned (each is analysed in the
// state the earlier ones leave), and the session confirms it when
// PostgreSQL reports the statement ran (CommandComplete). PostgreSQL's own
// reports (ParameterStatus, ReadyForQuery, the role query) then correct
// what neither could know.

// stateTarget is session state a statement changes.
type stateTarget interface {
	// settings are the role, search_path and other settings, with their
	// transaction and savepoint history.
	settings() *sessionState
	// prepared records an SQL PREPARE.
	prepared(st *sqlrewrite.Statement)
	// deallocated forgets prepared statement name, or every named one
	// when name is "" (DEALLOCATE ALL).
	deallocated(name string)
	// discarded forgets every prepared statement and portal (DISCARD
	// ALL).
	discarded()
	// ddl records a statement that changes the catalog.
	ddl(st *sqlrewrite.Statement)
	// unlistened records an UNLISTEN (or DISCARD ALL) of every channel.
	unlistened()
	// transactionControl records what a COMMIT, ROLLBACK, SAVEPOINT,
	// RELEASE, ROLLBACK TO or PREPARE TRANSACTION does beyond the settings:
	// the portals it ends.
	transactionControl(st *sqlrewrite.Statement)
}

// applyStatement applies what st does to session state, given the tag of
// its CommandComplete (which tells a COMMIT that rolled back).
func applyStatement(t stateTarget, st *sqlrewrite.Statement, tag string) {
	s := t.settings()
	if st.Tx != sqlrewrite.TxNone {
		s.transaction(st.Tx, st.Savepoint, tag)
		t.transactionControl(st)
	}
	if st.Unlistens {
		t.unlistened()
	}
	for _, e := range st.Effects {
		s.apply(e)
		if e.Setting == sqlrewrite.SettingDiscardAll {
			t.discarded()
		}
	}
	switch st.Kind {
	case sqlrewrite.KindPrepare:
		if st.Prepare != nil {
			t.prepared(st)
		}
	case sqlrewrite.KindDeallocate:
		t.deallocated(st.Deallocate)
	case sqlrewrite.KindDDL:
		t.ddl(st)
	}
}

// changesSession reports whether applyStatement changes anything for st.
func changesSession(st *sqlrewrite.Statement) bool {
	if len(st.Effects) > 0 || st.Tx != sqlrewrite.TxNone || st.Unlistens {
		return true
	}
	switch st.Kind {
	case sqlrewrite.KindPrepare, sqlrewrite.KindDeallocate, sqlrewrite.KindDDL:
		return true
	}
	return false
}

// completed applies a statement's effects on session state once the server
// confirms that p ran it.
func (ss *session) completed(p *pending, st *sqlrewrite.Statement, tag string) {
	if st == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	applyStatement(confirmed{ss, p}, st, tag)
}

// confirmed is the session's state as PostgreSQL ran the statements of
// request p; its methods run under ss.mu.
type confirmed struct {
	ss *session
	p  *pending
}

// transactionControl: portals end with their (sub)transaction, whatever
// the ReadyForQuery will say (another may begin in the same string).
func (c confirmed) transactionControl(st *sqlrewrite.Statement) {
	pl := c.ss.pl
	switch st.Tx {
	case sqlrewrite.TxCommit, sqlrewrite.TxRollback, sqlrewrite.TxPrepare:
		pl.TransactionEnded(c.p)
	case sqlrewrite.TxSavepoint:
		pl.Savepoint(st.Savepoint, c.p)
	case sqlrewrite.TxRelease:
		pl.Released(st.Savepoint)
	case sqlrewrite.TxRollbackTo:
		pl.RolledBackTo(st.Savepoint, c.p)
	}
}

func (c confirmed) settings() *sessionState { return c.ss.state }

func (c confirmed) prepared(st *sqlrewrite.Statement) {
	c.ss.pl.SetStatement(st.Prepare.Name, sqlPreparedStmt(st.Prepare))
}

// deallocated: SQL DEALLOCATE also drops statements made by protocol Parse
// (one namespace), all but the unnamed one.
func (c confirmed) deallocated(name string) {
	if name == "" {
		c.ss.pl.DeleteNamedStatements()
		return
	}
	c.ss.pl.DeleteStatement(name)
}

func (c confirmed) discarded() { c.ss.pl.Reset() }

func (c confirmed) ddl(st *sqlrewrite.Statement) {
	ss := c.ss
	ss.catStale = true
	// The DDL may be inside a transaction (BEGIN earlier in the same
	// string, not yet reported by a ReadyForQuery), where a reload shows
	// it uncommitted: load again once the server reports idle, which,
	// outside one, is right away.
	ss.catTxDirty = true
	if st.ChangesCatalog {
		// The other sessions' snapshots too, now and when the
		// transaction ends. Its own DDL does not make the session's
		// transaction unknown.
		ss.ddlInTx = true
		ss.txGen = ss.srv.catalogs.invalidate(ss.database)
	}
}

func (c confirmed) unlistened() { c.ss.listening = false }
