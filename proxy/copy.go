package proxy

import (
	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/proxy/internal/copydata"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// copyIn rewrites the data of a COPY FROM STDIN into a table with encrypted
// columns: each encrypted field is canonicalised, encrypted and re-encoded
// as bytea in the COPY's own format.
type copyIn struct {
	rw     *copydata.Rewriter
	req    *pending
	failed bool
}

// copyOut decrypts the data of a COPY TO STDOUT.
type copyOut struct {
	rw *copydata.Rewriter
}

// copyInFor prepares the rewriting of the COPY FROM STDIN in plan that
// needs encryption, if any, for request req. It refuses a string with
// another COPY from the client besides: the data of each COPY is only
// told apart by the order of CopyDone messages, and a mistake would send
// plaintext to the wrong table. (A COPY on a plain table carries no plan,
// so its direction is unknown and it counts.)
func (ss *session) copyInFor(plan *sqlrewrite.Plan, req *pending) (*copyIn, error) {
	var found *sqlrewrite.CopyPlan
	copies := 0
	for _, st := range plan.Statements {
		if st == nil || st.Kind != sqlrewrite.KindCopy || st.Copy != nil && !st.Copy.From {
			continue
		}
		copies++
		if st.Copy != nil && hasRules(st.Copy) {
			found = st.Copy
		}
	}
	if found == nil {
		return nil, nil
	}
	if copies > 1 {
		return nil, newSQLError("0A000", "a COPY FROM STDIN into a table with encrypted columns must be the only COPY of its query string")
	}
	return ss.newCopyIn(found, req)
}

func hasRules(cp *sqlrewrite.CopyPlan) bool {
	for _, r := range cp.Rules {
		if r != nil {
			return true
		}
	}
	return false
}

func copyFormat(f sqlrewrite.CopyFormat) copydata.Format {
	out := copydata.Format{
		Delimiter: f.Delimiter, Null: f.Null, NullSet: f.Null != "" || f.Kind == "csv",
		Quote: f.Quote, Escape: f.Escape, Header: f.Header,
	}
	switch f.Kind {
	case "csv":
		out.Kind = copydata.CSV
	case "binary":
		out.Kind = copydata.Binary
	default:
		out.Kind = copydata.Text
		if f.Null == "" {
			out.Null, out.NullSet = `\N`, true
		}
	}
	return out
}

func wireFormat(f sqlrewrite.CopyFormat) int16 {
	if f.Kind == "binary" {
		return 1
	}
	return 0
}

func ruleMask(rules []*policy.ColumnRule) []bool {
	cols := make([]bool, len(rules))
	for i, r := range rules {
		cols[i] = r != nil
	}
	return cols
}

// newCopyIn builds the rewriter for a COPY FROM STDIN before it is sent:
// a COPY whose data the proxy could not rewrite must not start.
func (ss *session) newCopyIn(cp *sqlrewrite.CopyPlan, req *pending) (*copyIn, error) {
	format := wireFormat(cp.Format)
	tc := ss.textContext()
	cols, err := ss.copyInColumns(cp.Rules)
	if err != nil {
		return nil, err
	}
	// The rewriter copies a field's bytes before it asks for the next:
	// one set of buffers serves every field.
	var bufs copyInBuffers
	encrypt := func(_ int64, col int, value []byte, null bool) ([]byte, bool, error) {
		if null {
			return nil, true, nil
		}
		out, err := cols[col].store(&bufs, format, value, tc)
		if err != nil {
			// copydata.FieldError names the row and the column.
			return nil, false, newSQLError(sqlState(err), "%v", err)
		}
		return out, false, nil
	}
	// The rewriter writes the bytea in the COPY's format itself: in text,
	// the hex straight into its output, without an escaping pass.
	rw, err := copydata.NewRewriter(copyFormat(cp.Format), len(cp.Columns), ruleMask(cp.Rules), encrypt, copydata.WithByteaOutput())
	if err != nil {
		return nil, newSQLError("0A000", "COPY format: %v", err)
	}
	return &copyIn{rw: rw, req: req}, nil
}

// copyInColumn is what COPY FROM does to the values of one encrypted
// column, worked out once before the COPY starts (what ciphers.store
// looks up per value): the column's cipher, its codec, and whether a value
// is stored as its text form (the column is being decrypted).
type copyInColumn struct {
	rule     *policy.ColumnRule
	cipher   *keymap.ColumnCipher
	codec    *keymap.Codec
	textForm bool
}

// copyInBuffers are a COPY's reused buffers: the canonical value and the
// ciphertext of the field being rewritten.
type copyInBuffers struct {
	canon, stored []byte
}

// copyInColumns resolves each encrypted column's cipher once, before the
// COPY starts: a key that is unavailable refuses it rather than failing
// it halfway.
func (ss *session) copyInColumns(rules []*policy.ColumnRule) ([]copyInColumn, error) {
	cs := ss.newCiphers()
	cols := make([]copyInColumn, len(rules))
	for i, r := range rules {
		if r == nil {
			continue
		}
		c, err := cs.get(r)
		if err != nil {
			return nil, err
		}
		cols[i] = copyInColumn{rule: r, cipher: c, codec: keymap.CodecFor(r.Type), textForm: cs.textFormWrite(r)}
	}
	return cols, nil
}

// store returns the bytea PostgreSQL gets for a COPY value of the column
// (format 0 text, 1 binary): what ciphers.store returns for a written
// value of the column's own type, without its per-value lookups and
// allocations. The result is valid until the next call with bufs.
func (cc *copyInColumn) store(bufs *copyInBuffers, format int16, value []byte, tc *keymap.TextContext) ([]byte, error) {
	// COPY data is of the column's type: Codec.Convert of a value of no
	// source type is Canonical.
	canon, err := cc.codec.AppendCanonical(bufs.canon[:0], format, value, tc)
	if err != nil {
		return nil, columnValueError(cc.rule, err)
	}
	bufs.canon = canon
	var stored []byte
	if cc.textForm {
		if stored, err = textForm(cc.rule, canon); err != nil {
			return nil, err
		}
	} else {
		if stored, err = cc.cipher.AppendEncrypt(bufs.stored[:0], canon); err != nil {
			return nil, err
		}
		bufs.stored = stored
	}
	return stored, nil
}

// fail aborts the COPY upstream; the server's answer to CopyFail is then
// reported to the client as err.
func (ci *copyIn) fail(ss *session, err error) error {
	ci.failed = true
	ss.mu.Lock()
	ci.req.Refusal = err
	ss.mu.Unlock()
	return ss.send(nil, &pgproto3.CopyFail{Message: "pgcloak: COPY data refused"})
}

// copyMessage handles CopyData, CopyDone and CopyFail from the client.
func (ss *session) copyMessage(fe *frontend, typ wire.ClientType, body []byte) error {
	ci := fe.copy
	if ci == nil {
		return ss.sendRaw(nil, typ, body)
	}
	if typ != wire.ClientCopyData {
		fe.copy = nil
	}
	if ci.failed {
		return nil
	}
	emit := func(b []byte) error { return ss.sendRaw(nil, wire.ClientCopyData, b) }
	switch typ {
	case wire.ClientCopyData:
		if err := ci.rw.Write(body, emit); err != nil {
			return ci.fail(ss, err)
		}
		return nil
	case wire.ClientCopyDone:
		if err := ci.rw.Close(emit); err != nil {
			return ci.fail(ss, err)
		}
	}
	return ss.sendRaw(nil, typ, body)
}

// copyOutResponse starts decrypting a COPY TO STDOUT when the statement
// copies encrypted columns.
func (ss *session) copyOutResponse(p *pending, act pipeline.Action, body []byte) error {
	st := statementOf(p)
	if f := flowOf(p); f != nil && st != nil && st.Copy != nil && !st.Copy.From && hasRules(st.Copy) {
		out, err := ss.newCopyOut(st.Copy)
		if err != nil {
			return ss.failResult(p, err)
		}
		f.out = out
	}
	return ss.forward(act, wire.ServerCopyOutResponse, body)
}

func (ss *session) newCopyOut(cp *sqlrewrite.CopyPlan) (*copyOut, error) {
	ss.mu.Lock()
	who := granteeOf(ss.state.current)
	cat := ss.cat
	ss.mu.Unlock()
	grants := ss.grantsOf(who)
	format := wireFormat(cp.Format)
	actions := make([]colAction, len(cp.Rules))
	// COPY reports no column types: the snapshot says what each holds.
	rules := make([]*policy.ColumnRule, len(cp.Rules))
	for i, r := range cp.Rules {
		if r == nil {
			continue
		}
		mode := cat.byteaReadMode(r)
		if s := cat.state(r); !s.bytea {
			mode = readPass
		}
		if mode != readPass {
			rules[i] = r
			actions[i] = ss.actionFor(r, format, grants, mode == readTolerant)
		}
	}
	tc := ss.textContext()
	var buf []byte
	var scratch renderScratch
	decrypt := func(row int64, col int, value []byte, null bool) ([]byte, bool, error) {
		if null {
			return nil, true, nil
		}
		out, isNull, err := actions[col].render(buf[:0], value, tc, &scratch)
		if err != nil {
			return nil, false, err
		}
		buf = out
		return out, isNull, nil
	}
	rw, err := copydata.NewRewriter(copyFormat(cp.Format), len(cp.Columns), ruleMask(rules), decrypt)
	if err != nil {
		return nil, newSQLError("0A000", "COPY format: %v", err)
	}
	return &copyOut{rw: rw}, nil
}

// copyOutData decrypts CopyData from the server.
func (ss *session) copyOutData(p *pending, act pipeline.Action, typ wire.ServerType, body []byte) error {
	f := flowOf(p)
	if f == nil || f.out == nil || act == pipeline.Drop {
		return ss.forward(act, typ, body)
	}
	emit := func(b []byte) error { return ss.cw.raw(wire.ServerCopyData, b) }
	var err error
	if typ == wire.ServerCopyData {
		err = f.out.rw.Write(body, emit)
	} else {
		err = f.out.rw.Close(emit)
		f.out = nil
	}
	if err != nil {
		return ss.failResult(p, err)
	}
	if typ == wire.ServerCopyData {
		return nil
	}
	return ss.cw.raw(typ, body)
}
