package keymap

import (
	"crypto/aes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tink-crypto/tink-go/v2/daead/aessiv"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/pgcloak/pgcloak/policy"
)

// An ordered key is an AES-SIV keyset like a deterministic one, so the
// stores create, rotate and keep it unchanged. Each version's 64-byte
// AES-SIV key does two jobs: it encrypts the value (AES-SIV, as a
// deterministic key does), and, through HKDF, gives the AES-256 key of the
// order PRF (clww.go). Both need the raw key bytes, which only the native
// path reads: there is no Tink fallback.

// orderPRFInfo separates the PRF key from every other use of the key bytes.
const orderPRFInfo = "pgcloak/ordered/clww-prf/v1"

// orderedVersion is one enabled version of an ordered key.
type orderedVersion struct {
	id  uint32  // the version's Tink key id
	prf cmacKey // the order PRF
	siv *sivKey // encrypts the canonical value
}

// orderedKeyset is an ordered key's enabled versions, the primary first,
// then the others in keyset order (versionIDs' order).
type orderedKeyset struct {
	vs  []orderedVersion
	ids string
}

// newOrderedKeyset reads the versions of an ordered keyset.
func newOrderedKeyset(h *keyset.Handle) (*orderedKeyset, error) {
	entries, err := enabledEntries(h)
	if err != nil {
		return nil, err
	}
	ks := &orderedKeyset{}
	var ids []string
	for _, e := range entries {
		k, ok := e.Key().(*aessiv.Key)
		if !ok || k.KeyBytes().Len() != 64 {
			return nil, errors.New("keyset is not an ordered key pgcloak can read: ordered keys need AES-SIV keys of 64 bytes, read natively (no Tink fallback: the order PRF is derived from the raw key bytes)")
		}
		raw := k.KeyBytes().Data(insecuresecretdataaccess.Token{})
		v, err := newOrderedVersion(e.KeyID(), raw)
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("key version %d: %w", e.KeyID(), err)
		}
		id := strconv.FormatUint(uint64(e.KeyID()), 10)
		if e.IsPrimary() {
			ks.vs = slices.Insert(ks.vs, 0, v)
			ids = slices.Insert(ids, 0, id)
		} else {
			ks.vs = append(ks.vs, v)
			ids = append(ids, id)
		}
	}
	if p, err := h.Primary(); err != nil || len(ks.vs) == 0 || ks.vs[0].id != p.KeyID() {
		return nil, errors.New("ordered keyset has no enabled primary key version")
	}
	ks.ids = strings.Join(ids, ",")
	return ks, nil
}

// newOrderedVersion expands one version's key; it does not keep raw.
func newOrderedVersion(id uint32, raw []byte) (orderedVersion, error) {
	s, err := newSIVKey(raw)
	if err != nil {
		return orderedVersion{}, err
	}
	prfKey, err := hkdf.Key(sha256.New, raw, nil, orderPRFInfo, 32)
	if err != nil {
		return orderedVersion{}, err
	}
	block, err := aes.NewCipher(prfKey)
	clear(prfKey)
	if err != nil {
		return orderedVersion{}, err
	}
	return orderedVersion{id: id, prf: newCMACKey(block), siv: s}, nil
}

// boundOrdered is an ordered keyset bound to one column: its type, and,
// per version, S2V's state after the column's associated data.
type boundOrdered struct {
	ks   *orderedKeyset
	typ  policy.LogicalType
	rule *policy.ColumnRule
	st   []sivAD
}

func (ks *orderedKeyset) bind(rule *policy.ColumnRule) *boundOrdered {
	ad := rule.AssociatedData()
	b := &boundOrdered{ks: ks, typ: rule.Type, rule: rule, st: make([]sivAD, len(ks.vs))}
	for i := range ks.vs {
		b.st[i] = ks.vs[i].siv.bind(ad)
	}
	return b
}

// MaxOrderEncoding is the longest order encoding an ordered value may
// have: 1,023 bytes of text (or a numeric of about 4,000 digits). Its term
// takes 32 bytes per encoding byte, so a longer value would cost the proxy,
// PostgreSQL and every range bound tens of kilobytes more; and a btree
// index takes terms of about 80 bytes of text only.
const MaxOrderEncoding = 1024

// orderEncoding returns the order encoding of a canonical value of t, or
// an error with SQLSTATE 54000 when it is longer than MaxOrderEncoding.
func orderEncoding(dst []byte, rule *policy.ColumnRule, canonical []byte) ([]byte, error) {
	enc, err := appendOrderBytes(dst, rule.Type, canonical)
	if err != nil {
		return nil, err
	}
	if len(enc) > MaxOrderEncoding {
		return nil, &ConvError{Code: "54000", Msg: fmt.Sprintf(
			"a value of ordered column %s may take at most %d bytes in its order encoding (text: %d bytes), this one takes %d",
			rule.Name(), MaxOrderEncoding, MaxOrderEncoding-1, len(enc))}
	}
	return enc, nil
}

// errOrderedLength is an order encoding whose length does not follow from
// the canonical length as orderedTermLen expects; it would not decrypt.
var errOrderedLength = errors.New("keymap: ordered value of unexpected length")

// appendEncrypt appends the stored form of canonical under version v
// (0 is the primary) to dst.
func (b *boundOrdered) appendEncrypt(v int, dst, canonical []byte) ([]byte, error) {
	// Most encodings fit here, on the stack.
	var encBuf [64]byte
	enc, err := orderEncoding(encBuf[:0], b.rule, canonical)
	if err != nil {
		return nil, err
	}
	ver := &b.ks.vs[v]
	tl := termLen(len(enc))
	start := len(dst)
	// One allocation at most: the term must stay where it is until S2V
	// has read it.
	dst = slices.Grow(dst, orderedOverhead+tl+len(canonical))
	dst = binary.BigEndian.AppendUint32(appendOrderedHeader(dst), ver.id)
	dst = ver.prf.appendTerm(dst, enc)
	term := dst[len(dst)-tl:]
	// The synthetic IV's slot is S2V's scratch until AES-SIV fills it.
	n := len(dst) + 1
	dst = growTo(dst, n+sivOverhead)
	dst[n-1] = 0
	st := ver.siv.then(dst[n:], &b.st[v], term)
	out, err := ver.siv.appendSeal(dst[:n], canonical, &st)
	if err != nil {
		return nil, err
	}
	if got, ok := orderedTermLen(b.typ, len(out)-start); !ok || got != tl {
		return nil, errOrderedLength
	}
	return out, nil
}

// appendDecrypt appends the canonical value of a stored ordered value to
// dst (which must not overlap stored), or returns false with nothing of
// the value left in dst's capacity.
func (b *boundOrdered) appendDecrypt(dst, stored []byte) ([]byte, bool) {
	if !isOrdered(stored) {
		return nil, false
	}
	tl, ok := orderedTermLen(b.typ, len(stored))
	if !ok || stored[orderedHeaderLen+tl] != 0 {
		return nil, false
	}
	id := binary.BigEndian.Uint32(stored[headerLen:orderedHeaderLen])
	term := stored[orderedHeaderLen : orderedHeaderLen+tl]
	body := stored[orderedHeaderLen+tl+1:]
	// The room appendOpen needs anyway (the value and a scratch block)
	// is S2V's scratch first.
	start := len(dst)
	buf := growTo(dst, start+len(body))
	scratch := buf[start : start+aes.BlockSize]
	dst = buf[:start]
	for v := range b.ks.vs {
		ver := &b.ks.vs[v]
		if ver.id != id {
			continue
		}
		st := ver.siv.then(scratch, &b.st[v], term)
		if pt, ok := ver.siv.appendOpen(dst, body, &st); ok {
			return pt, true
		}
	}
	clear(scratch)
	return nil, false
}

// orderedTermLen is the term length of a stored ordered value of type t
// that is n bytes long, or false if no value of t is. n is
// orderedOverhead + termLen(e) + c, where c is the canonical length and e
// the encoding's, which follows from c: e = c for the fixed-width types,
// c+1 for text, and for numeric 1 when c = 8 (zero and the specials), else
// c-3 (a tag, the weight and a terminator in place of the 8-byte header).
func orderedTermLen(t policy.LogicalType, n int) (int, bool) {
	const perByte = 8 * termBytesPerBit
	m := n - orderedOverhead
	if m <= 0 {
		return 0, false
	}
	switch t {
	case policy.TypeText:
		// m = perByte*(c+1) + c
		if (m-perByte)%(perByte+1) != 0 || m < perByte {
			return 0, false
		}
		return termLen((m-perByte)/(perByte+1) + 1), true
	case policy.TypeNumeric:
		if m == perByte+8 {
			return termLen(1), true
		}
		// m = perByte*(c-3) + c, with c = 8 + 2*ndigits, ndigits ≥ 1
		if (m+3*perByte)%(perByte+1) != 0 {
			return 0, false
		}
		c := (m + 3*perByte) / (perByte + 1)
		if c < 10 || c%2 != 0 {
			return 0, false
		}
		return termLen(c - 3), true
	}
	w := orderWidth(t)
	if w == 0 || m != (perByte+1)*w {
		return 0, false
	}
	return termLen(w), true
}

// ErrNotOrdered is returned by OrderRanges for a column whose key is not
// ordered.
var ErrNotOrdered = errors.New("keymap: order ranges exist only for ordered keys")

// OrderOp is a comparison of a stored value x with a constant c.
type OrderOp uint8

// The comparisons OrderRanges answers: x < c, x <= c, x > c, x >= c, x = c.
const (
	OrderLess OrderOp = iota
	OrderLessEqual
	OrderGreater
	OrderGreaterEqual
	OrderEqual
)

// ByteRange is the half-open range [Lo, Hi) of stored bytea values.
type ByteRange struct{ Lo, Hi []byte }

// OrderRanges returns, for each enabled key version (primary first, in
// KeyVersions' order), the range of stored values x of that version with
// x op c, where c is given in canonical form. A query rewriter turns
// "col < $1" into "col >= Lo AND col < Hi" (OR'd over the versions), which
// PostgreSQL answers with a btree index on the bytea column.
//
// The ranges rest on the layout: a version's values all start with
// P = magic|0x02|key id, then the term T, then 0x00. A value with a
// smaller term sorts below P|T; one with T itself lies in [P|T, P|T|0x01)
// (terms are prefix-free, so no other term starts with T); one with a
// larger term lies at or above P|T|0x01 and, since a term starts with a
// byte of at most 0x80, below P|0xFF.
func (c *ColumnCipher) OrderRanges(canonical []byte, op OrderOp) ([]ByteRange, error) {
	if c.ord == nil {
		return nil, ErrNotOrdered
	}
	if op > OrderEqual {
		return nil, fmt.Errorf("keymap: unknown order comparison %d", op)
	}
	enc, err := orderEncoding(nil, c.rule, canonical)
	var tooLong *ConvError
	if errors.As(err, &tooLong) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("keymap: a value of %s cannot be ordered: %w", c.rule.Name(), err)
	}
	vs := c.ord.ks.vs
	out := make([]ByteRange, len(vs))
	for i := range vs {
		// buf is P | T | 0x01 | P | 0xFF (with room for appendTerm's
		// scratch block); the ranges are slices of it, capped so that
		// appending to one cannot overwrite another.
		p := binary.BigEndian.AppendUint32(appendOrderedHeader(make([]byte, 0, 2*orderedHeaderLen+termLen(len(enc))+2+aes.BlockSize)), vs[i].id)
		buf := append(vs[i].prf.appendTerm(p, enc), 0x01)
		buf = append(append(buf, buf[:orderedHeaderLen]...), 0xFF)
		k := orderedHeaderLen + termLen(len(enc))
		pt := buf[:k:k]                                  // P|T
		pt1 := buf[: k+1 : k+1]                          // P|T|0x01
		top := buf[k+1:]                                 // P|0xFF
		pOnly := buf[:orderedHeaderLen:orderedHeaderLen] // P
		switch op {
		case OrderLess:
			out[i] = ByteRange{pOnly, pt}
		case OrderLessEqual:
			out[i] = ByteRange{pOnly, pt1}
		case OrderGreater:
			out[i] = ByteRange{pt1, top}
		case OrderGreaterEqual:
			out[i] = ByteRange{pt, top}
		case OrderEqual:
			out[i] = ByteRange{pt, pt1}
		}
	}
	return out, nil
}
