package proxy

import (
	"slices"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// settings are the session settings pgcloak must know to analyse statements
// and apply grants. They are values: copying one snapshots it.
type settings struct {
	role        string // "" is NONE: the current role is sessionAuth
	sessionAuth string
	searchPath  []string
	// floatDigits is extra_float_digits as PostgreSQL reports it, which
	// decides how float8 values are printed in text.
	floatDigits string
	// byteaOutput is bytea_output (hex or escape), which decides how
	// bytea values are printed in text. PostgreSQL does not report it.
	byteaOutput string
	// roleClaim, when not 0, numbers the set_config call that last set
	// role or session_authorization: what it set is a claim PostgreSQL has
	// not confirmed (see sqlrewrite.Effect.Claimed), and no grants apply
	// until it does (see session.confirmRole).
	roleClaim uint64
}

// currentRole is the role whose grants apply: the one SET ROLE chose, else
// the session authorization.
func (s *settings) currentRole() string {
	if s.role != "" {
		return s.role
	}
	return s.sessionAuth
}

// grantee is the role whose grants apply to a statement.
type grantee struct {
	role string
	// claimed: the role is only what a set_config call claimed; no
	// grants apply until PostgreSQL confirms it.
	claimed bool
}

func granteeOf(s settings) grantee {
	return grantee{role: s.currentRole(), claimed: s.roleClaim != 0}
}

// sessionState tracks settings the way PostgreSQL's GUC machinery does: a
// SET takes effect at once, SET LOCAL until the transaction ends, and a
// transaction (explicit, or the implicit one of a query string or of an
// extended-protocol batch) that aborts undoes every SET made inside it.
type sessionState struct {
	reset      settings // what RESET restores: the values at login
	committed  settings // as of the last transaction boundary
	session    settings // what a commit would keep
	current    settings // in effect now
	savepoints []savepoint
	// failed records an error since the last boundary: the implicit
	// transaction that ends at the next ReadyForQuery then aborts.
	failed bool
	// claims numbers the claimed role changes (settings.roleClaim).
	claims uint64
}

type savepoint struct {
	name             string
	session, current settings
}

func newSessionState(initial settings) *sessionState {
	return &sessionState{reset: initial, committed: initial, session: initial, current: initial}
}

// apply records a completed statement's effect on a setting.
func (st *sessionState) apply(e sqlrewrite.Effect) {
	var claim uint64
	if e.Claimed && (e.Setting == sqlrewrite.SettingRole || e.Setting == sqlrewrite.SettingSessionAuthorization) {
		st.claims++
		claim = st.claims
	}
	if e.Local {
		st.current = st.reset.with(st.current, e, claim)
		return
	}
	st.session = st.reset.with(st.session, e, claim)
	st.current = st.reset.with(st.current, e, claim)
}

// confirmRole adopts the role PostgreSQL reports for the session in place
// of a claimed one. The value a commit would keep is confirmed with it
// when it rests on the same claim: the claim then either took effect in
// both or in neither.
func (st *sessionState) confirmRole(currentUser, sessionUser string) {
	claim := st.current.roleClaim
	confirm := func(s *settings) {
		s.sessionAuth, s.role, s.roleClaim = sessionUser, "", 0
		if currentUser != sessionUser {
			s.role = currentUser
		}
	}
	confirm(&st.current)
	if claim != 0 && st.session.roleClaim == claim {
		confirm(&st.session)
	}
}

// with returns s changed by e, a claim numbered claim when not 0; the
// receiver holds the reset values.
func (r settings) with(s settings, e sqlrewrite.Effect, claim uint64) settings {
	first := func() string {
		if len(e.Values) == 0 {
			return ""
		}
		return e.Values[0]
	}
	switch e.Setting {
	case sqlrewrite.SettingRole:
		if e.Reset {
			s.role = r.role
		} else {
			s.role = first()
		}
		s.roleClaim = claim
	case sqlrewrite.SettingSessionAuthorization:
		// Changing the session authorization also resets the role.
		s.role = ""
		if e.Reset {
			s.sessionAuth = r.sessionAuth
		} else {
			s.sessionAuth = first()
		}
		s.roleClaim = claim
	case sqlrewrite.SettingSearchPath:
		if e.Reset {
			s.searchPath = r.searchPath
		} else {
			s.searchPath = slices.Clone(e.Values)
		}
	case sqlrewrite.SettingExtraFloatDigits:
		if e.Reset {
			s.floatDigits = r.floatDigits
		} else {
			s.floatDigits = first()
		}
	case sqlrewrite.SettingByteaOutput:
		if e.Reset {
			s.byteaOutput = r.byteaOutput
		} else {
			s.byteaOutput = first()
		}
	case sqlrewrite.SettingAll:
		// RESET ALL leaves role and session_authorization alone
		// (PostgreSQL marks them GUC_NO_RESET_ALL).
		s.searchPath = r.searchPath
		s.floatDigits = r.floatDigits
		s.byteaOutput = r.byteaOutput
	case sqlrewrite.SettingDiscardAll:
		s = r
	}
	return s
}

// transaction applies a completed transaction-control statement. tag is
// the CommandComplete tag, which tells a COMMIT that rolled back.
func (st *sessionState) transaction(op sqlrewrite.TxOp, name, tag string) {
	switch op {
	case sqlrewrite.TxCommit:
		if tag == "ROLLBACK" {
			st.abort()
		} else {
			st.commit()
		}
	case sqlrewrite.TxPrepare:
		st.commit()
	case sqlrewrite.TxRollback:
		st.abort()
	case sqlrewrite.TxSavepoint:
		st.savepoints = append(st.savepoints, savepoint{name, st.session, st.current})
	case sqlrewrite.TxRelease:
		if i := st.findSavepoint(name); i >= 0 {
			st.savepoints = st.savepoints[:i]
		}
	case sqlrewrite.TxRollbackTo:
		if i := st.findSavepoint(name); i >= 0 {
			sp := st.savepoints[i]
			st.session, st.current = sp.session, sp.current
			st.savepoints = st.savepoints[:i+1]
			st.failed = false
		}
	}
}

func (st *sessionState) findSavepoint(name string) int {
	for i := len(st.savepoints) - 1; i >= 0; i-- {
		if st.savepoints[i].name == name {
			return i
		}
	}
	return -1
}

// error records an ErrorResponse from the server.
func (st *sessionState) error() { st.failed = true }

// readyForQuery applies the transaction status the server reports: idle
// means the transaction, whatever kind, is over.
func (st *sessionState) readyForQuery(status wire.TxStatus) {
	if status != wire.TxIdle {
		return
	}
	if st.failed {
		st.abort()
	} else {
		st.commit()
	}
}

func (st *sessionState) commit() {
	st.committed = st.session
	st.current = st.session
	st.savepoints = nil
	st.failed = false
}

func (st *sessionState) abort() {
	st.session = st.committed
	st.current = st.committed
	st.savepoints = nil
	st.failed = false
}
