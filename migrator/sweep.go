package migrator

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

// todo is the condition of the rows a sweep must change.
func (m *Migration) todo() string {
	head := "substring(" + m.column + " from 1 for 5)"
	switch m.cfg.Action {
	case colmigrate.ActionEncrypt:
		return m.column + " IS NOT NULL AND " + head + " IS DISTINCT FROM $1"
	case colmigrate.ActionReencrypt:
		return underOtherVersion(m.column, m.cfg.Rule, "$1", "$2")
	default:
		return head + " = $1"
	}
}

// sweep walks the whole table once in primary-key order, changing every
// row that needs it, one transaction per batch. It returns the rows
// changed. pass 0 is decrypt's final pass.
func (m *Migration) sweep(ctx context.Context, pass int) (int, error) {
	remaining, err := m.count(ctx)
	if err != nil || remaining == 0 {
		return 0, err
	}
	p := m.startProgress(remaining, pass)
	defer p.Done()
	var after []string // primary key of the last row seen, as text
	changed := 0
	for {
		rows, last, err := m.nextBatch(ctx, after)
		if err != nil {
			return changed, err
		}
		if len(rows) == 0 {
			return changed, nil
		}
		n, err := m.apply(ctx, rows)
		if err != nil {
			return changed, err
		}
		changed += n
		p.Add(len(rows))
		after = last
		if m.cfg.AfterBatch != nil {
			m.cfg.AfterBatch(n)
		}
	}
}

// startProgress tells Config.Progress a sweep begins.
func (m *Migration) startProgress(total, pass int) Progress {
	if m.cfg.Progress == nil {
		return noProgress{}
	}
	what := fmt.Sprintf("%s %s (pass %d)", m.cfg.Action, m.cfg.Rule.Name(), pass)
	if pass == 0 {
		what = fmt.Sprintf("%s %s (final pass)", m.cfg.Action, m.cfg.Rule.Name())
	}
	return m.cfg.Progress(what, total)
}

type noProgress struct{}

func (noProgress) Add(int) {}
func (noProgress) Done()   {}

// underOtherVersion is the condition of the values of column (quoted)
// that are ciphertexts of rule's format under another key version than
// the one whose big-endian id is parameter id; head is the parameter
// holding ciphertextHead(rule).
func underOtherVersion(column string, rule *policy.ColumnRule, head, id string) string {
	// The key id follows the header (and Tink's start byte, in the format
	// of deterministic and randomized keys): keymap.KeyID reads it there.
	from := "7"
	if rule.Ordered() {
		from = "6"
	}
	return "substring(" + column + " from 1 for 5) = " + head +
		" AND substring(" + column + " from " + from + " for 4) IS DISTINCT FROM " + id
}

// ciphertextHead is what every ciphertext of rule's column starts with.
func ciphertextHead(rule *policy.ColumnRule) []byte {
	if rule.Ordered() {
		return keymap.OrderedPrefix()
	}
	return keymap.CiphertextHeader()
}

func (m *Migration) params() []any {
	head := ciphertextHead(m.cfg.Rule)
	if m.cfg.Action == colmigrate.ActionReencrypt {
		return []any{head, m.primaryID}
	}
	return []any{head}
}

// primaryKeyID is the id of the key version new values are encrypted
// under, big-endian, as ciphertexts carry it.
func primaryKeyID(c *keymap.ColumnCipher) ([]byte, error) {
	id, err := c.PrimaryKeyID()
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(nil, id), nil
}

func (m *Migration) count(ctx context.Context) (int, error) {
	var n int
	err := m.conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s`, m.qualified, m.todo()), m.params()...).Scan(&n)
	return n, err
}

// row is one row to change: its key (text), the value read and the new one.
type row struct {
	key      []string
	old, new []byte
}

func (m *Migration) nextBatch(ctx context.Context, after []string) ([]row, []string, error) {
	keys := strings.Join(m.pk, ", ")
	textKeys := make([]string, len(m.pk))
	for i, k := range m.pk {
		textKeys[i] = k + "::text"
	}
	cursor := "true"
	if after != nil {
		casts := make([]string, len(m.pk))
		for i := range m.pk {
			casts[i] = fmt.Sprintf("($%d::text[])[%d]::%s", len(m.params())+1, i+1, m.pkTypes[i])
		}
		cursor = "(" + keys + ") > (" + strings.Join(casts, ", ") + ")"
	}
	args := m.params()
	if after != nil {
		args = append(args, after)
	}
	q := fmt.Sprintf(`SELECT %s, %s FROM %s WHERE %s AND %s ORDER BY %s LIMIT %d`,
		strings.Join(textKeys, ", "), m.column, m.qualified, cursor, m.todo(), keys, m.cfg.Batch)
	rs, err := m.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		vals := make([]any, len(m.pk)+1)
		key := make([]string, len(m.pk))
		for i := range key {
			vals[i] = &key[i]
		}
		var old []byte
		vals[len(m.pk)] = &old
		if err := rs.Scan(vals...); err != nil {
			return nil, nil, err
		}
		nv, err := m.convert(old)
		if err != nil {
			return nil, nil, fmt.Errorf("row (%s) = (%s): %w", keys, strings.Join(key, ", "), err)
		}
		out = append(out, row{key: key, old: old, new: nv})
	}
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	if len(out) == 0 {
		return nil, nil, nil
	}
	return out, out[len(out)-1].key, nil
}

// convert computes a row's new value. Errors never include the value.
func (m *Migration) convert(old []byte) ([]byte, error) {
	c, t := m.cfg.Cipher, m.cfg.Rule.Type
	switch m.cfg.Action {
	case colmigrate.ActionEncrypt:
		canonical, err := colmigrate.ParseTextForm(t, old)
		if err != nil {
			return nil, err
		}
		return c.Encrypt(canonical)
	case colmigrate.ActionReencrypt:
		canonical, err := c.Decrypt(old)
		if err != nil {
			return nil, err
		}
		return c.Encrypt(canonical)
	default:
		canonical, err := c.Decrypt(old)
		if err != nil {
			return nil, err
		}
		return colmigrate.TextForm(t, canonical)
	}
}

// apply writes a batch in one transaction; a row changed since it was read
// (by an application through the proxy) is left alone.
func (m *Migration) apply(ctx context.Context, rows []row) (int, error) {
	keyArrays := make([]any, len(m.pk))
	for i := range m.pk {
		col := make([]string, len(rows))
		for j, r := range rows {
			col[j] = r.key[i]
		}
		keyArrays[i] = col
	}
	olds := make([][]byte, len(rows))
	news := make([][]byte, len(rows))
	for j, r := range rows {
		olds[j], news[j] = r.old, r.new
	}
	names := make([]string, len(m.pk))
	match := make([]string, len(m.pk))
	for i := range m.pk {
		names[i] = fmt.Sprintf("k%d", i)
		match[i] = fmt.Sprintf("t.%s = v.k%d::%s", m.pk[i], i, m.pkTypes[i])
	}
	args := append(keyArrays, olds, news)
	unnest := make([]string, len(args))
	for i := range args {
		unnest[i] = fmt.Sprintf("$%d", i+1)
	}
	for i := range m.pk {
		unnest[i] += "::text[]"
	}
	unnest[len(m.pk)] += "::bytea[]"
	unnest[len(m.pk)+1] += "::bytea[]"
	q := fmt.Sprintf(`UPDATE %s AS t SET %s = v.new FROM unnest(%s) AS v(%s, old, new)
		WHERE %s AND t.%s = v.old`,
		m.qualified, m.column, strings.Join(unnest, ", "), strings.Join(names, ", "), strings.Join(match, " AND "), m.column)
	tag, err := m.conn.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
