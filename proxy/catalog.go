package proxy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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

// catalogSavepoint wraps a reload inside the client's transaction: a
// reload that fails (a lock or statement timeout, a cancel) is rolled back
// to it instead of aborting the client's transaction.
const catalogSavepoint = "pgcloak_catalog"

// refreshCatalogIfStale reloads the session's catalog snapshot after DDL or
// when it is older than the cache's TTL, but only when no request is in
// flight, so the reload cannot interleave with the client's own.
func (ss *session) refreshCatalogIfStale() {
	ss.mu.Lock()
	stale := ss.catStale
	due := stale || ss.cat.expired(ss.srv.catalogs.ttl)
	idle := len(ss.queue) == 0 && !ss.extOpen
	tx := ss.txStatus
	cur := ss.state.current
	ss.mu.Unlock()
	// Not inside an extended-protocol batch either: the reload would end
	// the batch's implicit transaction (or, after an error in it, be
	// ignored until Sync). Nor in a failed transaction, which refuses
	// every query but its end.
	if !due || !idle || tx == 'E' {
		return
	}
	if tx == 'I' && ss.adoptShared(stale) {
		return
	}
	cat, err := ss.loadCatalog(tx == 'T', cur)
	if err != nil {
		ss.mu.Lock()
		// An old snapshot is still right where no DDL ran since; after
		// DDL it is not known to be (see catalogUnknownLocked).
		ss.catFailed = ss.catStale
		ss.mu.Unlock()
		ss.log.Warn("catalog reload failed; keeping the old snapshot", "err", err, "after_ddl", stale)
		return
	}
	ss.mu.Lock()
	ss.cat, ss.catStale, ss.catFailed = cat, false, false
	ss.mu.Unlock()
	if tx == 'I' {
		// Inside a transaction the snapshot may show uncommitted DDL.
		ss.srv.catalogs.store(ss.database, cat)
	}
}

// adoptShared takes the database's shared snapshot when it is young
// enough and, after DDL of this session's, newer than the session's own.
func (ss *session) adoptShared(stale bool) bool {
	cat := ss.srv.catalogs.fresh(ss.database)
	if cat == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if stale && !cat.loaded.After(ss.cat.loaded) {
		return false
	}
	ss.cat, ss.catStale, ss.catFailed = cat, false, false
	return true
}

// loadCatalog runs the catalog query in the session, within a savepoint
// inside a transaction.
func (ss *session) loadCatalog(inTx bool, cur settings) (*catalog, error) {
	sqls, at := []string{catalogQuery(ss.srv.cfg.Policy)}, 0
	if inTx {
		sqls, at = []string{"SAVEPOINT " + catalogSavepoint, sqls[0], "RELEASE SAVEPOINT " + catalogSavepoint}, 1
	}
	iq, err := ss.runInternal(sqls...)
	if err != nil {
		return nil, err
	}
	if iq.err != nil {
		if inTx {
			ss.rollBackReload()
		}
		return nil, iq.err
	}
	if len(iq.results) != len(sqls) {
		return nil, errors.New("unexpected answer to the catalog query")
	}
	return buildCatalog(ss.srv.cfg.Policy, iq.results[at], expandSearchPath(cur.searchPath, cur.currentRole()))
}

// rollBackReload undoes a failed reload inside the client's transaction,
// which the failure aborted.
func (ss *session) rollBackReload() {
	iq, err := ss.runInternal("ROLLBACK TO SAVEPOINT "+catalogSavepoint, "RELEASE SAVEPOINT "+catalogSavepoint)
	if err == nil {
		err = iq.err
	}
	if err != nil {
		// The client's next statement meets the aborted transaction.
		ss.log.Warn("rolling back a failed catalog reload failed", "err", err)
	}
}

// catalogUnknownLocked is the refusal for statements that resolve a
// relation while the catalog may not be what DDL left it: reloading it
// failed, or the transaction is failed, where the server refuses the
// reload (and would refuse the statement too). Nil when the snapshot is
// usable. Statements that resolve no relation (ROLLBACK, SET, SELECT 1)
// still pass.
func (ss *session) catalogUnknownLocked() error {
	switch {
	case !ss.catStale:
		return nil
	case ss.txStatus == 'E':
		return newSQLError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	case ss.catFailed:
		return newSQLError("58000", "catalog could not be reloaded after DDL; statements using relations are refused until it is")
	}
	return nil
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
