package proxy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/sqlrewrite"
)

// catalog is a snapshot of what one database holds of the policy: where
// each policy table is (OID, columns in attribute order), which views
// expose encrypted columns, and which schemas hold relations of those
// names. It answers sqlrewrite's Catalog questions and maps a result
// column's (table OID, attribute number) to its rule.
type catalog struct {
	loaded time.Time
	// incomplete marks a snapshot missing a policy table: one created
	// since is likely, so the snapshot is reloaded sooner.
	incomplete  bool
	relations   map[string]*sqlrewrite.Relation // schema.name
	schemasWith map[string][]string             // relname → schemas
	byOID       map[uint32]map[uint16]*policy.ColumnRule
}

func (c *catalog) SchemasWith(name string) []string { return c.schemasWith[name] }

func (c *catalog) Relation(schema, name string) *sqlrewrite.Relation {
	return c.relations[schema+"."+name]
}

func (c *catalog) EncryptedName(name string) bool {
	_, ok := c.schemasWith[name]
	return ok
}

// column is the rule of the result column (table OID, attribute number).
func (c *catalog) column(oid uint32, attnum uint16) *policy.ColumnRule {
	if oid == 0 {
		return nil
	}
	return c.byOID[oid][attnum]
}

// catalogQuery lists, for the policy tables and every view that depends on
// them (transitively), their columns and view definitions ('r' rows), and
// every schema holding a relation of one of their names ('s' rows). It runs
// in the client's own session, so it sees what the client's role sees.
func catalogQuery(idx *policy.Index) string {
	var names []string
	for _, t := range idx.Tables() {
		names = append(names, quoteLiteral(t.Schema+"."+t.Name))
	}
	if len(names) == 0 {
		names = append(names, "''")
	}
	return `WITH RECURSIVE deps(oid) AS (
  SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname || '.' || c.relname IN (` + strings.Join(names, ", ") + `)
UNION
  SELECT r.ev_class FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  JOIN deps ON d.refobjid = deps.oid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
    AND r.ev_class <> d.refobjid
), rels AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind
  FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
)
SELECT 'r', r.oid::int8, r.nspname::text, r.relname::text, r.relkind::text, a.attnum::int4, a.attname::text,
  CASE WHEN r.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(r.oid) END
FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 's', 0, n.nspname::text, c.relname::text, c.relkind::text, 0, '', NULL
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname IN (SELECT relname FROM rels UNION SELECT ` + relnameList(idx) + `)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
ORDER BY 1, 2, 6`
}

func relnameList(idx *policy.Index) string {
	var names []string
	for _, n := range idx.Relnames() {
		names = append(names, quoteLiteral(n))
	}
	if len(names) == 0 {
		return "NULL::text"
	}
	return "unnest(ARRAY[" + strings.Join(names, ", ") + "]::text[])"
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

type catalogRel struct {
	oid     uint32
	schema  string
	name    string
	kind    string
	attnums []uint16
	columns []string
	viewdef string
}

// buildCatalog turns the rows of catalogQuery into a snapshot. searchPath is
// the loading session's, which pg_get_viewdef qualified names against.
func buildCatalog(idx *policy.Index, rows [][]string, searchPath []string) (*catalog, error) {
	c := &catalog{
		loaded:      time.Now(),
		relations:   map[string]*sqlrewrite.Relation{},
		schemasWith: map[string][]string{},
		byOID:       map[uint32]map[uint16]*policy.ColumnRule{},
	}
	rels := map[uint32]*catalogRel{}
	var order []uint32
	for _, row := range rows {
		if len(row) != 8 {
			return nil, fmt.Errorf("catalog query returned %d columns", len(row))
		}
		if row[0] == "s" {
			c.schemasWith[row[3]] = append(c.schemasWith[row[3]], row[2])
			continue
		}
		oid64, err1 := strconv.ParseUint(row[1], 10, 32)
		attnum, err2 := strconv.ParseUint(row[5], 10, 16)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("catalog query returned a bad number")
		}
		oid := uint32(oid64)
		r := rels[oid]
		if r == nil {
			r = &catalogRel{oid: oid, schema: row[2], name: row[3], kind: row[4], viewdef: row[7]}
			rels[oid] = r
			order = append(order, oid)
		}
		r.attnums = append(r.attnums, uint16(attnum))
		r.columns = append(r.columns, row[6])
	}
	// Policy tables are encrypted names even where the database lacks
	// them: a statement naming one must never be taken for plain.
	for _, t := range idx.Tables() {
		if _, ok := c.schemasWith[t.Name]; !ok {
			c.schemasWith[t.Name] = nil
		}
		c.relations[t.Qualified()] = &sqlrewrite.Relation{Schema: t.Schema, Name: t.Name, Encrypted: t.Columns}
	}
	var views []*catalogRel
	for _, oid := range order {
		r := rels[oid]
		if r.kind == "v" || r.kind == "m" {
			views = append(views, r)
			continue
		}
		if t := idx.Table(r.schema, r.name); t != nil {
			c.addRelation(r, t.Columns, false)
		}
	}
	for _, t := range idx.Tables() {
		if c.relations[t.Qualified()].Columns == nil {
			c.incomplete = true
		}
	}
	c.addViews(views, searchPath)
	for name, schemas := range c.schemasWith {
		sort.Strings(schemas)
		c.schemasWith[name] = schemas
	}
	return c, nil
}

func (c *catalog) addRelation(r *catalogRel, encrypted map[string]*policy.ColumnRule, view bool) {
	c.relations[r.schema+"."+r.name] = &sqlrewrite.Relation{
		Schema: r.schema, Name: r.name, Columns: r.columns, Encrypted: encrypted, View: view,
	}
	attrs := map[uint16]*policy.ColumnRule{}
	for i, col := range r.columns {
		if rule := encrypted[col]; rule != nil {
			attrs[r.attnums[i]] = rule
		}
	}
	c.byOID[r.oid] = attrs
	if _, ok := c.schemasWith[r.name]; !ok {
		c.schemasWith[r.name] = []string{r.schema}
	}
}

// addViews works out which view columns carry encrypted values by
// analysing each view's definition, repeating while views over views keep
// resolving. A view whose definition cannot be analysed is still an
// encrypted name with no known columns, so statements on it fail closed.
func (c *catalog) addViews(views []*catalogRel, searchPath []string) {
	env := &sqlrewrite.Env{Catalog: c, SearchPath: searchPath}
	pending := views
	for pass := 0; pass < 8 && len(pending) > 0; pass++ {
		var next []*catalogRel
		for _, v := range pending {
			rules, err := sqlrewrite.OutputColumns(v.viewdef, env)
			if err != nil || len(rules) != len(v.columns) {
				next = append(next, v)
				continue
			}
			enc := map[string]*policy.ColumnRule{}
			for i, r := range rules {
				if r != nil {
					enc[v.columns[i]] = r
				}
			}
			c.addRelation(v, enc, true)
		}
		if len(next) == len(pending) {
			pending = next
			break
		}
		pending = next
	}
	for _, v := range pending {
		// Unanalysable: known by name, every column unknown.
		c.relations[v.schema+"."+v.name] = &sqlrewrite.Relation{
			Schema: v.schema, Name: v.name, View: true, Encrypted: map[string]*policy.ColumnRule{},
		}
		if _, ok := c.schemasWith[v.name]; !ok {
			c.schemasWith[v.name] = []string{v.schema}
		}
	}
}

// incompleteTTL is how long a snapshot lacking a policy table is used
// before it is reloaded.
const incompleteTTL = time.Second

// expired reports whether the snapshot should be reloaded.
func (c *catalog) expired(ttl time.Duration) bool {
	age := time.Since(c.loaded)
	return age > ttl || (c.incomplete && age > incompleteTTL)
}

// catalogCache shares snapshots between the sessions of one database.
type catalogCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	byDB map[string]*catalog
}

func newCatalogCache(ttl time.Duration) *catalogCache {
	return &catalogCache{ttl: ttl, byDB: map[string]*catalog{}}
}

// fresh returns the database's snapshot if it is young enough.
func (cc *catalogCache) fresh(db string) *catalog {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := cc.byDB[db]
	if c == nil || c.expired(cc.ttl) {
		return nil
	}
	return c
}

func (cc *catalogCache) store(db string, c *catalog) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.byDB[db] = c
}

// invalidate drops a database's snapshot after DDL.
func (cc *catalogCache) invalidate(db string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.byDB, db)
}

// refreshCatalogIfStale reloads the session's catalog snapshot after DDL or
// when it is older than the cache's TTL, but only when no request is in
// flight, so the reload query cannot interleave with the client's own.
func (ss *session) refreshCatalogIfStale() {
	ss.mu.Lock()
	due := ss.catStale || ss.cat.expired(ss.srv.catalogs.ttl)
	// Not inside an extended-protocol batch either: the reload query
	// would end the batch's implicit transaction (or, after an error in
	// it, be ignored by the server until Sync).
	idle := len(ss.queue) == 0 && !ss.extOpen
	inTx := ss.txStatus != 'I'
	cur := ss.state.current
	ss.mu.Unlock()
	if !due || !idle {
		return
	}
	if cat := ss.srv.catalogs.fresh(ss.database); cat != nil && !inTx {
		ss.mu.Lock()
		if !ss.catStale || cat.loaded.After(ss.cat.loaded) {
			ss.cat, ss.catStale = cat, false
		}
		ss.mu.Unlock()
		if !ss.catStale {
			return
		}
	}
	iq := newInternalQuery(catalogQuery(ss.srv.cfg.Policy))
	if err := ss.send(&pending{kind: pendInternal, iq: iq}, &pgproto3.Query{String: iq.sql}); err != nil {
		return
	}
	if err := ss.uw.flush(); err != nil {
		return
	}
	select {
	case <-iq.done:
	case <-ss.done:
		return
	}
	if iq.err != nil || len(iq.results) != 1 {
		ss.log.Debug("catalog reload failed; keeping the old snapshot", "err", iq.err)
		return
	}
	cat, err := buildCatalog(ss.srv.cfg.Policy, iq.results[0], expandSearchPath(cur.searchPath, cur.currentRole()))
	if err != nil {
		ss.log.Warn("catalog reload failed", "err", err)
		return
	}
	ss.mu.Lock()
	ss.cat, ss.catStale = cat, false
	ss.mu.Unlock()
	if !inTx {
		ss.srv.catalogs.store(ss.database, cat)
	}
}

// mentionedIn reports a relation with encrypted columns whose name occurs
// anywhere in sql, case-insensitively: a check that holds however the text
// is tokenized.
func (c *catalog) mentionedIn(sql string) (string, bool) {
	lower := strings.ToLower(sql)
	for name := range c.schemasWith {
		if strings.Contains(lower, strings.ToLower(name)) {
			return name, true
		}
	}
	return "", false
}
