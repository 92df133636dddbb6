package sqlrewrite

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pgcloak/pgcloak/policy"
)

// column is one column a FROM item offers.
type column struct {
	name string
	v    value // valEnc, valPlain or valNull
}

// item is one entry of a FROM clause (or an INSERT/UPDATE/DELETE target,
// or EXCLUDED) as column references see it.
type item struct {
	// name qualifies its columns: the alias, else the relation or CTE name;
	// "" for an unaliased subquery.
	name string
	// schema is the relation's schema when name is an unaliased relation
	// name, for schema.table.column references.
	schema string
	rel    *Relation // the relation with encrypted columns behind it, if any
	cols   []column
	// complete is true when cols lists every column in order. Otherwise
	// the missing columns are plain: encrypted ones are always known.
	complete bool
}

// lookup finds a column by name. found is false when the item does not
// (as far as is known) have it.
func (it *item) lookup(name string) (v value, found bool) {
	for i := range it.cols {
		if it.cols[i].name == name {
			return it.cols[i].v, true
		}
	}
	return value{}, false
}

func (it *item) hasEncrypted() bool {
	for i := range it.cols {
		if it.cols[i].v.kind == valEnc {
			return true
		}
	}
	return false
}

// describe names the item in messages.
func (it *item) describe() string {
	if it.rel != nil {
		return it.rel.Schema + "." + it.rel.Name
	}
	return it.name
}

// scope is one query level: its FROM items and its CTEs. Correlated
// references reach the parent levels.
type scope struct {
	parent *scope
	items  []*item
	ctes   map[string]*cteEntry
}

type cteEntry struct {
	shape *shape
	// pending marks a CTE of a WITH RECURSIVE list that is not analyzed
	// yet: a forward reference to it is refused rather than guessed.
	pending bool
}

// cte finds a CTE visible from sc.
func (sc *scope) cte(name string) (*cteEntry, bool) {
	for s := sc; s != nil; s = s.parent {
		if c, ok := s.ctes[name]; ok {
			return c, true
		}
	}
	return nil, false
}

// outerForFrom returns the outer scope of a FROM-clause subquery of sc: it
// sees sc's CTEs and outer levels but, unless lateral, none of sc's own
// items.
func (sc *scope) outerForFrom(lateral bool) *scope {
	s := &scope{parent: sc.parent, ctes: sc.ctes}
	if lateral {
		s.items = append([]*item(nil), sc.items...)
	}
	return s
}

// relationColumns returns a relation's columns as an item offers them.
func (a *analyzer) relationColumns(rel *Relation) ([]column, bool) {
	if cols, ok := a.relCols[rel]; ok {
		return cols, rel.Columns != nil
	}
	var cols []column
	if rel.Columns != nil {
		cols = make([]column, len(rel.Columns))
		for i, c := range rel.Columns {
			cols[i] = column{name: c, v: encOrPlain(rel.Encrypted[c])}
		}
	} else {
		for c, r := range rel.Encrypted {
			cols = append(cols, column{name: c, v: encOrPlain(r)})
		}
		sort.Slice(cols, func(i, j int) bool { return cols[i].name < cols[j].name })
	}
	a.relCols[rel] = cols
	return cols, rel.Columns != nil
}

func encOrPlain(r *policy.ColumnRule) value {
	if r == nil {
		return value{kind: valPlain}
	}
	return value{kind: valEnc, rule: r}
}

// lookupRelation resolves a relation name as PostgreSQL would, as far as
// encryption matters: it returns the relation with encrypted columns it
// names (or nil) and the schema it was found in (or "").
func (a *analyzer) lookupRelation(schema, name string) (*Relation, string) {
	if !a.cat.EncryptedName(name) {
		return nil, schema
	}
	if schema != "" {
		if isTempSchema(schema) {
			return nil, schema
		}
		return a.cat.Relation(schema, name), schema
	}
	schemas, ok := a.schemas[name]
	if !ok {
		schemas = a.cat.SchemasWith(name)
		a.schemas[name] = schemas
	}
	for _, sp := range a.env.SearchPath {
		if isTempSchema(sp) {
			continue
		}
		for _, s := range schemas {
			if s == sp {
				return a.cat.Relation(sp, name), sp
			}
		}
	}
	// No schema on the path holds the name as far as the catalog knows,
	// but the catalog may predate a policy table's creation: take the
	// policy's table, which pinning then makes PostgreSQL use or reject.
	for _, sp := range a.env.SearchPath {
		if rel := a.cat.Relation(sp, name); rel != nil {
			return rel, sp
		}
	}
	// Nothing resolves: pin the name to the first schema PostgreSQL would
	// search, so that it fails as the analysis expects instead of finding
	// a relation elsewhere (its own search_path may differ).
	for _, sp := range a.env.SearchPath {
		if !isTempSchema(sp) {
			return nil, sp
		}
	}
	return nil, ""
}

// pin schema-qualifies, in the rewritten SQL, an unqualified name that the
// analysis resolved among relations with encrypted columns. PostgreSQL then
// uses the relation the analysis judged, whatever its own search_path has
// become meanwhile (server-side set_config, a temp table, a schema created
// since the catalog was read): a mismatch can cost an error, never
// plaintext reaching an encrypted column.
func (a *analyzer) pin(rv *pg_query.RangeVar, resolved string) error {
	if rv.GetSchemaname() != "" || resolved == "" || isTempSchema(resolved) || !a.cat.EncryptedName(rv.GetRelname()) {
		return nil
	}
	loc := int(rv.GetLocation())
	if loc < 0 || loc >= len(a.sql) {
		return refuse("", "relation %s could not be located in the statement", rv.GetRelname())
	}
	return a.addEdit(Edit{Start: loc, End: loc, Text: quoteIdent(resolved) + "."})
}

// unknownView refuses a view over encrypted columns whose definition the
// catalog could not analyse: which of its columns carry ciphertext is
// unknown, so no use of it can be shown to be safe.
func unknownView(rel *Relation) error {
	if rel.View && rel.Columns == nil {
		return refuse("", "view %s.%s reads encrypted columns in a way the proxy cannot follow; query the tables it reads instead", rel.Schema, rel.Name)
	}
	return nil
}

func isTempSchema(s string) bool {
	return s == "pg_temp" || len(s) > 8 && s[:8] == "pg_temp_"
}

// rangeVar turns a FROM-clause relation into an item. CTE names shadow
// relations except for the targets of INSERT, UPDATE and DELETE.
func (a *analyzer) rangeVar(rv *pg_query.RangeVar, sc *scope, allowCTE bool) (*item, error) {
	name := rv.GetRelname()
	alias := name
	if rv.GetAlias() != nil {
		alias = rv.GetAlias().GetAliasname()
	}
	schema := rv.GetSchemaname()
	if allowCTE && schema == "" && rv.GetCatalogname() == "" {
		if c, ok := sc.cte(name); ok {
			if c.pending {
				return nil, refuse("", "forward reference to WITH RECURSIVE query %s is not supported", name)
			}
			return a.shapeItem(alias, c.shape, rv.GetAlias().GetColnames())
		}
	}
	rel, resolved := a.lookupRelation(schema, name)
	if err := a.pin(rv, resolved); err != nil {
		return nil, err
	}
	it := &item{name: alias, schema: resolved, rel: rel}
	if rv.GetAlias() != nil {
		it.schema = ""
	}
	if rel == nil {
		return it, nil
	}
	if err := unknownView(rel); err != nil {
		return nil, err
	}
	a.touched = true
	cols, complete := a.relationColumns(rel)
	it.cols, it.complete = cols, complete
	if names := rv.GetAlias().GetColnames(); len(names) > 0 {
		return a.renameColumns(it, names)
	}
	return it, nil
}

// renameColumns applies AS t(a, b, …): column aliases replace names by
// position, so the positions must be known when encrypted columns exist.
func (a *analyzer) renameColumns(it *item, names []*pg_query.Node) (*item, error) {
	if !it.complete && it.hasEncrypted() {
		return nil, refuse("", "column aliases on %s need its column list, which is unknown", it.describe())
	}
	cols := append([]column(nil), it.cols...)
	for i, n := range names {
		if i < len(cols) {
			cols[i].name = n.GetString_().GetSval()
		}
	}
	out := *it
	out.cols = cols
	return &out, nil
}

// shapeItem turns a subquery's or CTE's output into an item.
func (a *analyzer) shapeItem(name string, sh *shape, colnames []*pg_query.Node) (*item, error) {
	it := &item{name: name, complete: sh.complete, cols: make([]column, len(sh.cols))}
	for i := range sh.cols {
		it.cols[i] = column{name: sh.cols[i].name, v: a.flowOut(sh.cols[i].v)}
	}
	if len(colnames) > 0 {
		return a.renameColumns(it, colnames)
	}
	return it, nil
}

// columnRef resolves a column reference to the value it reads.
func (a *analyzer) columnRef(cr *pg_query.ColumnRef, sc *scope) (value, error) {
	a.seen[cr] = true
	fields := cr.GetFields()
	names := make([]string, 0, len(fields))
	star := false
	for _, f := range fields {
		switch {
		case f.GetAStar() != nil:
			star = true
		case f.GetString_() != nil:
			names = append(names, f.GetString_().GetSval())
		default:
			return value{}, refuse("", "unsupported column reference")
		}
	}
	if star {
		return a.wholeRow(names, sc)
	}
	switch len(names) {
	case 0:
		return value{kind: valPlain}, nil
	case 1:
		return a.unqualified(names[0], sc)
	default:
		return a.qualified(names, sc), nil
	}
}

// unqualified resolves a bare name: the innermost level that has it
// decides; an encrypted match wins over a plain one at that level (the
// plain one could only make the reference ambiguous). Relations whose
// columns are unknown might have it too, so levels without a definite
// match do not stop the search: that only errs towards "encrypted".
func (a *analyzer) unqualified(name string, sc *scope) (value, error) {
	for s := sc; s != nil; s = s.parent {
		var found *value
		for _, it := range s.items {
			v, ok := it.lookup(name)
			if !ok {
				continue
			}
			if v.kind == valEnc {
				return v, nil
			}
			if found == nil {
				found = &v
			}
		}
		if found != nil {
			return *found, nil
		}
		for _, it := range s.items {
			if it.name == name && it.hasEncrypted() {
				return value{}, refuse("", "whole-row reference to %s, which has encrypted columns, is not supported", it.describe())
			}
		}
	}
	return value{kind: valPlain}, nil
}

// qualified resolves rel.col, schema.rel.col and db.schema.rel.col.
func (a *analyzer) qualified(names []string, sc *scope) value {
	col := names[len(names)-1]
	rel := names[len(names)-2]
	schema := ""
	if len(names) >= 3 {
		schema = names[len(names)-3]
	}
	var fallback *item
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.name != rel {
				continue
			}
			if schema == "" || it.schema == schema {
				v, _ := it.lookup(col)
				return v
			}
			if fallback == nil {
				fallback = it
			}
		}
	}
	if fallback != nil {
		// schema.rel.col naming an item of another schema is an error in
		// PostgreSQL; assume the item rather than a plain value.
		v, _ := fallback.lookup(col)
		return v
	}
	return value{kind: valPlain}
}

// wholeRow handles t.* and * outside a target list: a row value made of
// ciphertexts is refused.
func (a *analyzer) wholeRow(names []string, sc *scope) (value, error) {
	for _, it := range a.starItems(names, sc) {
		if it.hasEncrypted() {
			return value{}, refuse("", "whole-row reference to %s, which has encrypted columns, is not supported", it.describe())
		}
	}
	return value{kind: valPlain}, nil
}

// starItems returns the items t.* (or *) expands over.
func (a *analyzer) starItems(names []string, sc *scope) []*item {
	if len(names) == 0 {
		return sc.items
	}
	rel := names[len(names)-1]
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.name == rel {
				return []*item{it}
			}
		}
	}
	return nil
}
