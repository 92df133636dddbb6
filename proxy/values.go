package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

var errSessionClosed = errors.New("session closed")

// sqlError is an error the proxy itself reports to the client.
type sqlError struct {
	code string
	msg  string
}

func (e *sqlError) Error() string    { return e.msg }
func (e *sqlError) SQLState() string { return e.code }

func newSQLError(code, format string, args ...any) *sqlError {
	return &sqlError{code: code, msg: fmt.Sprintf(format, args...)}
}

// sqlState is the SQLSTATE an error carries, or XX000.
func sqlState(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return st.SQLState()
	}
	return "XX000"
}

// errorResponse turns an error into the ErrorResponse the client sees.
// Errors without a SQLSTATE are internal and their text is not shown, in
// case it carries something it should not.
func errorResponse(err error) *pgproto3.ErrorResponse {
	code, msg := "XX000", "internal error"
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		code, msg = st.SQLState(), err.Error()
	}
	resp := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: "pgcloak: " + msg}
	var pos interface{ ErrorPosition() int }
	if errors.As(err, &pos) {
		resp.Position = int32(pos.ErrorPosition())
	}
	return resp
}

const keyTimeout = 10 * time.Second

// cipher returns the column's cipher. It may ask the key store (a miss in
// the keyring's cache), so callers resolve it once per statement, COPY or
// Bind, never per value.
func (ss *session) cipher(rule *policy.ColumnRule) (*keymap.ColumnCipher, error) {
	if c, ok := ss.srv.cfg.Keyring.CachedCipher(rule); ok {
		// The common case, without the timer a store call's deadline
		// costs (3.5% of the proxy's CPU on a point read).
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyTimeout)
	defer cancel()
	return ss.srv.cfg.Keyring.Cipher(ctx, rule)
}

// ciphers resolves each column rule's cipher once for the values of one
// statement or Bind, and turns client values into what PostgreSQL stores
// or searches, by the columns' states in cat.
type ciphers struct {
	ss     *session
	cat    *catalog
	byRule map[*policy.ColumnRule]*keymap.ColumnCipher
	// lits records the key versions of the constants rendered as
	// candidates (see keyVersions).
	lits keyVersions
	// boundBytes counts the range ends of ordered columns computed for
	// one statement or Bind (see sqlrewrite.MaxBoundBytes); litRanges
	// keeps the ranges of its constants (see literalBound).
	boundBytes int
	litRanges  map[literalRange][]keymap.ByteRange
	// plan is the plan whose values are encrypted, when known: the
	// columns it writes decide the form a written value takes (see
	// textFormWrite).
	plan *sqlrewrite.Plan
}

// forPlan notes the plan whose values cs encrypts.
func (cs *ciphers) forPlan(plan *sqlrewrite.Plan) *ciphers {
	cs.plan = plan
	return cs
}

// textFormWrite reports whether a value bound for rule's column is stored
// as its text form: when the column is being decrypted, and so is every
// column of its key the plan writes (a value written to two columns is
// stored once, in one form: ciphertext, which the decrypt sweep converts).
func (cs *ciphers) textFormWrite(rule *policy.ColumnRule) bool {
	if cs.cat == nil || cs.cat.state(rule).mode != colmigrate.ModeMixedDecrypt {
		return false
	}
	if cs.plan == nil {
		return true
	}
	for _, st := range cs.plan.Statements {
		if st == nil {
			continue
		}
		for _, w := range st.Writes {
			if w.KeyName == rule.KeyName && cs.cat.state(w).mode != colmigrate.ModeMixedDecrypt {
				return false
			}
		}
	}
	return true
}

// keyVersions records, for each column whose constants a statement's SQL
// holds encrypted, what they stand for (ciphers.literalTag): the key
// versions they were encrypted under and the column's migration state. A
// prepared statement keeps its SQL: after a rotation its constants would
// miss rows under the new version, and after a migration's state changes
// they would be in the wrong form.
type keyVersions map[*policy.ColumnRule]string

// recordLiteral notes that a constant of rule was rendered.
func (cs *ciphers) recordLiteral(rule *policy.ColumnRule) {
	if cs.lits == nil {
		cs.lits = keyVersions{}
	}
	cs.lits[rule] = cs.literalTag(rule)
}

// checkKeyVersions refuses prepared statement name when its constants no
// longer stand for what they did.
func (ss *session) checkKeyVersions(name string, kv keyVersions) error {
	if len(kv) == 0 {
		return nil
	}
	cs := ss.newCiphers()
	for rule := range kv {
		if _, err := cs.get(rule); err != nil {
			return err
		}
	}
	for rule, tag := range kv {
		if cs.literalTag(rule) != tag {
			return newSQLError("0A000", "prepared statement %q holds constants of column %s encrypted under key versions or a migration state that have changed since; prepare it again", name, rule.Name())
		}
	}
	return nil
}

func (ss *session) newCiphers() *ciphers {
	ss.mu.Lock()
	cat := ss.cat
	ss.mu.Unlock()
	return &ciphers{ss: ss, cat: cat}
}

// clientValue is a value the client sends for an encrypted column: what
// PostgreSQL would take it as, and its bytes in the wire format.
type clientValue struct {
	src    keymap.Source
	format int16
	raw    []byte
}

// columnValue is a value as COPY sends it: already of the column's type.
func columnValue(format int16, raw []byte) clientValue {
	return clientValue{format: format, raw: raw}
}

// literalValue is a constant of the SQL.
func literalValue(lit *sqlrewrite.Literal) clientValue {
	return clientValue{src: sourceOf(lit.Source.OID, lit.Source.Casts), format: keymap.TextFormat, raw: []byte(lit.Value)}
}

// sourceOf is keymap's name for a value's type and casts.
func sourceOf(oid uint32, casts []sqlrewrite.Cast) keymap.Source {
	src := keymap.Source{OID: oid}
	for _, c := range casts {
		src.Casts = append(src.Casts, keymap.Cast{OID: c.OID, Mods: c.Mods})
	}
	return src
}

// canonical converts a client value to rule's logical type, as PostgreSQL
// would for use. matches is false for a compared value no value of the
// type equals.
func canonical(rule *policy.ColumnRule, v clientValue, use keymap.Use, tc *keymap.TextContext) (canon []byte, matches bool, err error) {
	c, matches, err := keymap.CodecFor(rule.Type).Convert(v.src, v.format, v.raw, use, tc)
	if err != nil {
		return nil, false, columnValueError(rule, err)
	}
	return c, matches, nil
}

// matchesNothing stands for a compared value that no stored value equals
// (an int4 column compared with 1.5): no ciphertext and no text form is a
// single zero byte.
var matchesNothing = []byte{0}

// textForm is how a migration stores a plaintext value (see
// colmigrate.TextForm).
func textForm(rule *policy.ColumnRule, canonical []byte) ([]byte, error) {
	out, err := colmigrate.TextForm(rule.Type, canonical)
	if err != nil {
		return nil, columnValueError(rule, err)
	}
	return out, nil
}

// store returns what PostgreSQL gets for a client value bound for rule's
// column: its ciphertext or, when write is set and the column is being
// decrypted, its text form, which the decrypt sweep writes too.
func (cs *ciphers) store(rule *policy.ColumnRule, v clientValue, tc *keymap.TextContext, write bool) ([]byte, error) {
	c, err := cs.get(rule)
	if err != nil {
		return nil, err
	}
	use := keymap.UseCompare
	if write {
		use = keymap.UseStore
	}
	pt, matches, err := canonical(rule, v, use, tc)
	if err != nil {
		return nil, err
	}
	if !matches {
		return matchesNothing, nil
	}
	if write && cs.textFormWrite(rule) {
		return textForm(rule, pt)
	}
	return c.Encrypt(pt)
}

// checkSingle refuses a value compared as its one ciphertext (see
// sqlrewrite.ParamRule.Compared) when rule's column may hold the value in
// another form: under another key version (after a rotation) or as a
// text form (during a migration).
func (cs *ciphers) checkSingle(rule *policy.ColumnRule) error {
	c, err := cs.get(rule)
	if err != nil {
		return err
	}
	if c.Versions() > 1 || (cs.cat != nil && cs.cat.state(rule).mixed()) {
		return newSQLError("0A000", "column %s: a row comparison, IN (VALUES …) or subquery constant matches one key version only, and the key has several (after a rotation) or the column is being migrated; compare with =, <>, IN or NOT IN", rule.Name())
	}
	return nil
}

// literalTag identifies what a constant of rule rendered now stands for:
// the key versions and whether text forms are involved (see keyVersions).
func (cs *ciphers) literalTag(rule *policy.ColumnRule) string {
	tag := cs.byRule[rule].KeyVersions()
	if cs.cat != nil {
		tag += "/" + strconv.Itoa(int(cs.cat.state(rule).mode))
	}
	return tag
}

// candidates returns every form a client value may be stored as in rule's
// deterministic column: its ciphertext under each enabled key version,
// primary first, and, in the middle of a migration, its text form.
func (cs *ciphers) candidates(rule *policy.ColumnRule, v clientValue, tc *keymap.TextContext) ([][]byte, error) {
	c, err := cs.get(rule)
	if err != nil {
		return nil, err
	}
	pt, matches, err := canonical(rule, v, keymap.UseCompare, tc)
	if err != nil {
		return nil, err
	}
	if !matches {
		return [][]byte{}, nil
	}
	var out [][]byte
	for _, form := range keymap.CodecFor(rule.Type).EqualForms(pt) {
		cands, err := c.Candidates(form)
		if err != nil {
			return nil, err
		}
		out = append(out, cands...)
		if cs.cat != nil && cs.cat.state(rule).mixed() {
			tf, err := textForm(rule, form)
			if err != nil {
				return nil, err
			}
			out = append(out, tf)
		}
	}
	return out, nil
}

func (cs *ciphers) get(rule *policy.ColumnRule) (*keymap.ColumnCipher, error) {
	if c := cs.byRule[rule]; c != nil {
		return c, nil
	}
	c, err := cs.ss.cipher(rule)
	if err != nil {
		return nil, err
	}
	if cs.byRule == nil {
		cs.byRule = map[*policy.ColumnRule]*keymap.ColumnCipher{}
	}
	cs.byRule[rule] = c
	return c, nil
}

// columnValueError names the column in a value error (never the value).
func columnValueError(rule *policy.ColumnRule, err error) error {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return &sqlError{code: st.SQLState(), msg: fmt.Sprintf("column %s: %v", rule.Name(), err)}
	}
	return err
}

// literalSQL returns the SQL text that replaces a literal: its ciphertext
// (or text form, see ciphers.store) as a bytea constant, or for
// candidates an array of them: ARRAY['\x…'::bytea, '\x…'::bytea].
func (ss *session) literalSQL(cs *ciphers, lit *sqlrewrite.Literal, tc *keymap.TextContext) (string, error) {
	if lit.Bound != nil {
		return cs.literalBound(lit, tc)
	}
	if lit.Candidates {
		cands, err := cs.literalCandidates(lit, tc)
		if err != nil {
			return "", err
		}
		cs.recordLiteral(lit.Rule)
		if lit.Slots > 0 {
			// The values of a parameter's hidden slots, as EXECUTE
			// arguments (see candidateSlots).
			slots, err := fillSlots(lit.Rule, cands, make([][]byte, lit.Slots))
			if err != nil {
				return "", err
			}
			var buf []byte
			for i, ct := range slots {
				if i > 0 {
					buf = append(buf, ", "...)
				}
				buf = appendByteaLiteral(buf, ct)
			}
			return string(buf), nil
		}
		if len(cands) == 0 {
			// No stored value can equal it.
			return "'{}'::bytea[]", nil
		}
		buf := append(make([]byte, 0, 8+len(cands)*(2*64+16)), "ARRAY["...)
		for i, ct := range cands {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			if ct == nil {
				buf = append(buf, "NULL::bytea"...)
				continue
			}
			buf = appendByteaLiteral(buf, ct)
		}
		return string(append(buf, ']')), nil
	}
	if lit.Compared {
		if err := cs.checkSingle(lit.Rule); err != nil {
			return "", err
		}
	}
	v, err := cs.store(lit.Rule, literalValue(lit), tc, lit.Write)
	if err != nil {
		return "", err
	}
	cs.recordLiteral(lit.Rule)
	return string(appendByteaLiteral(make([]byte, 0, 2*len(v)+16), v)), nil
}

// literalCandidates returns the candidates of a compared constant: of
// its value, or of each element of an array constant (nil for a NULL
// element).
func (cs *ciphers) literalCandidates(lit *sqlrewrite.Literal, tc *keymap.TextContext) ([][]byte, error) {
	if !lit.Array {
		return cs.candidates(lit.Rule, literalValue(lit), tc)
	}
	// The key versions are recorded (recordLiteral) also for an array
	// without a value to encrypt.
	if _, err := cs.get(lit.Rule); err != nil {
		return nil, err
	}
	elems, err := parseArrayText([]byte(lit.Value))
	if err != nil {
		return nil, err
	}
	return cs.elementCandidates(lit.Rule, sourceOf(lit.Source.OID, lit.Source.Casts), keymap.TextFormat, elems, tc)
}

// appendByteaLiteral appends '\x…'::bytea.
func appendByteaLiteral(buf, v []byte) []byte {
	buf = append(buf, `'\x`...)
	buf = hex.AppendEncode(buf, v)
	return append(buf, `'::bytea`...)
}

// denial is what a role sees of a column it may not read.
type denial uint8

const (
	allowDecrypt denial = iota
	showNull
	showMask
	showCiphertext
	showDenied // on_denied: error: the first value fails the result with 42501
)

// colAction is what the proxy does to one result column.
type colAction struct {
	rule   *policy.ColumnRule
	cipher *keymap.ColumnCipher
	codec  *keymap.Codec
	err    error // the key was unavailable: reported at the first value
	mode   denial
	format int16 // the client's
	// storedBinary: the server sends the column's bytea in binary though
	// the client reads it as text (see storedFormats).
	storedBinary bool
	// tolerant: the column is in the middle of a migration, and a stored
	// value that is not a ciphertext is the text form of its plaintext.
	tolerant bool
}

// passes reports a column forwarded as the server sent it.
func (a *colAction) passes() bool { return a.rule == nil && !a.storedBinary }

// resultShape is the per-column work for one result set, worked out once
// from its RowDescription so that rows need no lookups.
type resultShape struct {
	actions []colAction // nil rule: passed through
	tc      *keymap.TextContext
	scratch renderScratch
}

// renderScratch is what rendering stored values reuses from value to
// value: the decoded bytea of a text-format column and the plaintext.
type renderScratch struct {
	raw, plain []byte
}

// shapeFor plans the decryption of a result whose columns PostgreSQL
// described (in the client's formats), for statement st when known, or
// returns nil when no column is encrypted. stored are the formats the
// server was asked for instead, when they differ (portal.stored). The
// current role's grants decide what each column shows.
func (ss *session) shapeFor(fields []pgproto3.FieldDescription, st *sqlrewrite.Statement, stored []int16) *resultShape {
	ss.mu.Lock()
	cat := ss.cat
	who := granteeOf(ss.state.current)
	ss.mu.Unlock()
	var shape *resultShape
	var grants *policy.Grants
	newShape := func() {
		if shape == nil {
			// Most results have no encrypted column and cost nothing more.
			shape = &resultShape{actions: make([]colAction, len(fields)), tc: ss.textContext()}
			grants = ss.grantsOf(who)
		}
	}
	for i, f := range fields {
		binaryFromServer := stored != nil && f.Format == 0 && formatFor(stored, i) == 1
		if binaryFromServer {
			// Whatever the column turns out to be now, its bytes come
			// in binary and go out as text.
			newShape()
			shape.actions[i].storedBinary = true
		}
		rule := cat.column(f.TableOID, f.TableAttributeNumber)
		if rule == nil {
			rule = positionalRule(st, fields, i)
		}
		if rule == nil {
			continue
		}
		mode := cat.readMode(rule, f.DataTypeOID)
		if mode == readPass {
			continue
		}
		newShape()
		shape.actions[i] = ss.actionFor(rule, f.Format, grants, mode == readTolerant)
		shape.actions[i].storedBinary = binaryFromServer
	}
	return shape
}

// grantsOf is who's grants; a role only claimed has none (see
// errRoleClaimed, which refuses the statements that would need them).
func (ss *session) grantsOf(who grantee) *policy.Grants {
	if who.claimed {
		return &policy.Grants{}
	}
	return ss.srv.policy().grants.For(who.role)
}

// actionFor decides what the role sees of one encrypted column.
func (ss *session) actionFor(rule *policy.ColumnRule, format int16, grants *policy.Grants, tolerant bool) colAction {
	a := colAction{rule: rule, codec: keymap.CodecFor(rule.Type), format: format, tolerant: tolerant}
	switch {
	case grants.CanRead(rule.KeyName):
		a.cipher, a.err = ss.cipher(rule)
	case grants.OnDenied == policy.DeniedCiphertext:
		a.mode = showCiphertext
	case grants.OnDenied == policy.DeniedMask:
		a.mode = showMask
	case grants.OnDenied == policy.DeniedError:
		// Planning refuses such a read; a portal run after the role
		// changed since its Bind gets here, and fails as the read would.
		a.mode = showDenied
	default:
		a.mode = showNull
	}
	return a
}

// describe rewrites a RowDescription so clients see logical types.
func (shape *resultShape) describe(fields []pgproto3.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(fields))
	copy(out, fields)
	for i := range out {
		a := &shape.actions[i]
		if a.rule == nil || a.mode == showCiphertext {
			continue
		}
		out[i].DataTypeOID = a.rule.Type.OID()
		out[i].DataTypeSize = a.rule.Type.Size()
		out[i].TypeModifier = -1
	}
	return out
}

// rewriteRow decrypts a DataRow body into dst (a whole framed message).
func (shape *resultShape) rewriteRow(dst, body []byte) ([]byte, error) {
	if len(body) < 2 {
		return nil, newSQLError("08P01", "malformed DataRow from PostgreSQL")
	}
	n := int(binary.BigEndian.Uint16(body))
	if n != len(shape.actions) {
		return nil, newSQLError("08P01", "DataRow has %d columns, expected %d", n, len(shape.actions))
	}
	start := len(dst)
	dst = append(dst, byte(wire.ServerDataRow), 0, 0, 0, 0)
	dst = append(dst, body[:2]...)
	rp := 2
	for i := 0; i < n; i++ {
		if len(body) < rp+4 {
			return nil, newSQLError("08P01", "malformed DataRow from PostgreSQL")
		}
		l := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		var v []byte
		if l >= 0 {
			if len(body) < rp+l {
				return nil, newSQLError("08P01", "malformed DataRow from PostgreSQL")
			}
			v = body[rp : rp+l]
			rp += l
		}
		a := &shape.actions[i]
		if a.passes() || l < 0 {
			dst = appendField(dst, v, l < 0)
			continue
		}
		if a.rule == nil {
			dst = appendByteaText(dst, v, shape.tc)
			continue
		}
		var err error
		if dst, err = a.appendValue(dst, v, shape.tc, &shape.scratch); err != nil {
			return nil, err
		}
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst, nil
}

func appendField(dst, v []byte, null bool) []byte {
	if null {
		return append(dst, 0xff, 0xff, 0xff, 0xff)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// appendValue appends the client's view of one stored value as a field.
func (a *colAction) appendValue(dst, stored []byte, tc *keymap.TextContext, scratch *renderScratch) ([]byte, error) {
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	out, null, err := a.render(dst, stored, tc, scratch)
	if err != nil {
		return nil, err
	}
	if null {
		return appendField(dst[:lenAt], nil, true), nil
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out, nil
}

// render appends the client's view of one stored value (in the column's
// wire format) to dst, or reports that the client sees NULL. scratch holds
// the decoded ciphertext of text-format values and the plaintext, reused
// by the caller.
func (a *colAction) render(dst, stored []byte, tc *keymap.TextContext, scratch *renderScratch) ([]byte, bool, error) {
	switch a.mode {
	case showNull:
		return dst, true, nil
	case showDenied:
		return nil, false, newSQLError("42501", "the current role may not read column %s (key %q)", a.rule.Name(), a.rule.KeyName)
	case showCiphertext:
		if a.tolerant {
			raw, err := a.raw(stored, &scratch.raw)
			if err != nil {
				return nil, false, err
			}
			if !keymap.IsCiphertext(raw) {
				// Stored plaintext is not shown to a role without the key.
				return dst, true, nil
			}
		}
		if a.storedBinary {
			return appendByteaOutput(dst, stored, tc), false, nil
		}
		return append(dst, stored...), false, nil
	case showMask:
		if !a.rule.Type.IsText() {
			return dst, true, nil
		}
		return append(dst, maskText...), false, nil
	}
	raw, err := a.raw(stored, &scratch.raw)
	if err != nil {
		return nil, false, err
	}
	var plain []byte
	if a.tolerant && !keymap.IsCiphertext(raw) {
		// The text form of a value a migration has not converted yet
		// (or has converted back), as the migration writes it.
		if plain, err = colmigrate.ParseTextForm(a.rule.Type, raw); err != nil {
			return nil, false, &sqlError{code: "XX001", msg: fmt.Sprintf("value of column %s is neither a ciphertext nor the text form of a %s value", a.rule.Name(), a.rule.Type)}
		}
	} else {
		if a.err != nil {
			return nil, false, a.err
		}
		if plain, err = a.cipher.AppendDecrypt(scratch.plain[:0], raw); err != nil {
			return nil, false, &sqlError{code: "XX001", msg: fmt.Sprintf("value of column %s does not decrypt: %v", a.rule.Name(), err)}
		}
		scratch.plain = plain
	}
	if a.format == 0 {
		dst, err = a.codec.AppendText(dst, plain, tc)
	} else {
		dst, err = a.codec.AppendBinary(dst, plain)
	}
	if err != nil {
		return nil, false, columnValueError(a.rule, err)
	}
	return dst, false, nil
}

// raw is the stored bytea value: decoded from bytea's text output for a
// text-format column.
func (a *colAction) raw(stored []byte, scratch *[]byte) ([]byte, error) {
	if a.format != 0 || a.storedBinary {
		return stored, nil
	}
	raw, err := decodeByteaText((*scratch)[:0], stored)
	if err != nil {
		return nil, columnValueError(a.rule, err)
	}
	*scratch = raw
	return raw, nil
}

// appendByteaText appends a field holding v, a bytea the server sent in
// binary, in bytea's text output for a client that asked for text.
func appendByteaText(dst, v []byte, tc *keymap.TextContext) []byte {
	lenAt := len(dst)
	dst = appendByteaOutput(append(dst, 0, 0, 0, 0), v, tc)
	binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	return dst
}

// appendByteaOutput appends bytea's text output of v as PostgreSQL prints
// it in the session: hex, or escape under bytea_output = escape.
func appendByteaOutput(dst, v []byte, tc *keymap.TextContext) []byte {
	if tc == nil || !tc.ByteaEscape {
		return hex.AppendEncode(append(dst, '\\', 'x'), v)
	}
	out, _ := byteaCodec.AppendText(dst, v, tc) // bytea's never fails
	return out
}

// byteaCodec reads bytea text output in either bytea_output format.
var byteaCodec = keymap.CodecFor(policy.TypeBytea)

// maskText is what on_denied: mask shows for a text column.
const maskText = "********"

// decodeByteaText decodes bytea's text output, appending to dst: hex
// (\x…), or the escape format a session with bytea_output = escape gets.
func decodeByteaText(dst, s []byte) ([]byte, error) {
	if len(s) < 2 || s[0] != '\\' || s[1] != 'x' {
		out, err := byteaCodec.Canonical(keymap.TextFormat, s, nil)
		if err != nil {
			return nil, newSQLError("XX001", "stored value is not valid bytea output")
		}
		return append(dst, out...), nil
	}
	out, err := hex.AppendDecode(dst, s[2:])
	if err != nil {
		return nil, newSQLError("XX001", "stored value is not valid hex")
	}
	return out, nil
}
