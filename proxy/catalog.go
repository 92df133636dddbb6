package proxy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/colmigrate"
	"github.com/pgcloak/pgcloak/dbguard"
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
	// policy is the policy the snapshot was built under: after a reload
	// (Server.SetPolicy) the snapshot is stale.
	policy *policy.Index
	// gen is the database's DDL generation (catalogCache.generation)
	// when the snapshot started loading: a later one means DDL through
	// this proxy may have changed what it holds.
	gen uint64
	// incomplete marks a snapshot missing a policy table: one created
	// since is likely, so the snapshot is reloaded sooner.
	incomplete  bool
	relations   map[string]*sqlrewrite.Relation // schema.name
	schemasWith map[string][]string             // relname → schemas
	byOID       map[uint32]map[uint16]*policy.ColumnRule
	// states is what the database holds in each policy column it has
	// (see columnState); a column missing from it is taken as encrypted.
	states map[*policy.ColumnRule]columnState
	// migrationsUnknown: pgcloak.column_migrations exists but the
	// loading role may not read it, so a column being migrated cannot be
	// told from an encrypted one (see checkConverted).
	migrationsUnknown bool
}

// columnState is a policy column's state in the database: its mode (see
// colmigrate.Mode, derived from its type and migration record) and its
// type, which refusals name.
type columnState struct {
	mode   colmigrate.Mode
	pgType string // PostgreSQL's name of the column's type
	bytea  bool   // the column is bytea in PostgreSQL
}

// The modes the session's checks refuse statements by (frontend.go).
const (
	modeDecryptFinishing = colmigrate.ModeDecryptFinishing
	modeUnconverted      = colmigrate.ModeUnconverted
)

// mixed reports a column in the middle of an encrypt or decrypt.
func (s columnState) mixed() bool { return s.mode.Mixed() }

// state returns what the database holds in rule's column.
func (c *catalog) state(rule *policy.ColumnRule) columnState {
	if s, ok := c.states[rule]; ok {
		return s
	}
	return columnState{mode: colmigrate.ModeEncrypted, bytea: true, pgType: "bytea"}
}

// readMode is how values of a result column with a policy column's rule
// are shown.
type readMode uint8

const (
	readPass     readMode = iota // passed through: not a ciphertext column
	readStrict                   // every value must decrypt
	readTolerant                 // ciphertexts decrypt; other values are text forms of plaintext
)

// readMode decides how a result column of rule whose PostgreSQL type is
// typeOID is shown. The type in the result is what the server has now,
// which can be newer than the snapshot: a column still of its own type in
// the snapshot but bytea in the result has been changed by an encrypt
// migration (whose ALTER comes first), and one of another type than bytea
// in the result holds plaintext whatever the snapshot says.
func (c *catalog) readMode(rule *policy.ColumnRule, typeOID uint32) readMode {
	if typeOID != byteaOID {
		return readPass
	}
	return c.byteaReadMode(rule)
}

// byteaReadMode is readMode for a value known to be bytea, or, for COPY,
// which reports no types, as the snapshot has it.
func (c *catalog) byteaReadMode(rule *policy.ColumnRule) readMode {
	switch s := c.state(rule); s.mode {
	case colmigrate.ModeEncrypted:
		return readStrict
	case colmigrate.ModeMixedEncrypt, colmigrate.ModeMixedDecrypt, colmigrate.ModeDecryptFinishing:
		return readTolerant
	default:
		if rule.Type == policy.TypeBytea || s.bytea {
			// Plaintext bytea (after decrypt of a bytea column).
			return readPass
		}
		return readTolerant
	}
}

func (c *catalog) SchemasWith(name string) []string { return c.schemasWith[name] }

func (c *catalog) Relation(schema, name string) *sqlrewrite.Relation {
	return c.relations[schema+"."+name]
}

// HoldsPolicyTable implements sqlrewrite.SchemaHolder.
func (c *catalog) HoldsPolicyTable(schema string) bool {
	for _, r := range c.relations {
		if r.Schema == schema && !r.View {
			return true
		}
	}
	return false
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
// them (transitively), their columns and view definitions ('r' rows), every
// schema holding a relation of one of their names ('s' rows), and whether
// pgcloak.column_migrations exists, can be trusted and read ('m' row).
//
// It runs in the client's own session, which the client's role may have
// prepared: every function, operator and type is qualified with pg_catalog
// (an operator or function of the role's own, in a schema put first on
// search_path, could otherwise answer instead), and it runs under
// catalogSearchPath (see catalogRows), so that pg_get_viewdef
// qualifies every name and the answer is the same whatever the session's
// search_path.
func catalogQuery(idx *policy.Index) string {
	var names []string
	for _, t := range idx.Tables() {
		names = append(names, dbguard.QuoteLiteral(t.Schema+"."+t.Name))
	}
	return `WITH RECURSIVE kids(oid, root) AS (
  SELECT c.oid, c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  WHERE (n.nspname::pg_catalog.text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname::pg_catalog.text)
    OPERATOR(pg_catalog.=) ANY (` + textArray(names) + `)
UNION
  SELECT i.inhrelid, kids.root FROM pg_catalog.pg_inherits i JOIN kids ON i.inhparent OPERATOR(pg_catalog.=) kids.oid
), deps(oid) AS (
  SELECT oid FROM kids
UNION
  SELECT r.ev_class FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
  JOIN deps ON d.refobjid OPERATOR(pg_catalog.=) deps.oid
  WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
    AND r.ev_class OPERATOR(pg_catalog.<>) d.refobjid
), rels AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind,
    (SELECT rn.nspname::pg_catalog.text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) rc.relname::pg_catalog.text
     FROM kids k JOIN pg_catalog.pg_class rc ON rc.oid OPERATOR(pg_catalog.=) k.root
     JOIN pg_catalog.pg_namespace rn ON rn.oid OPERATOR(pg_catalog.=) rc.relnamespace
     WHERE k.oid OPERATOR(pg_catalog.=) c.oid AND k.root OPERATOR(pg_catalog.<>) c.oid
     ORDER BY 1 LIMIT 1) AS inherits
  FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
)
SELECT 'r'::pg_catalog.text, r.oid::pg_catalog.int8, r.nspname::pg_catalog.text, r.relname::pg_catalog.text,
  r.relkind::pg_catalog.text, a.attnum::pg_catalog.int4, a.attname::pg_catalog.text,
  CASE WHEN r.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}'::pg_catalog."char"[]) THEN pg_catalog.pg_get_viewdef(r.oid) END,
  (CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd'::pg_catalog."char" THEN t.typbasetype ELSE t.oid END)::pg_catalog.int8,
  pg_catalog.format_type(a.atttypid, a.atttypmod), r.inherits
FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) r.oid
  AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
UNION ALL
SELECT 's', 0, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text, 0, '', NULL, 0, NULL, NULL
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (pg_catalog.array_cat(
    ARRAY(SELECT relname::pg_catalog.text FROM rels), ` + textArray(quotedRelnames(idx)) + `))
  AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])
  AND NOT pg_catalog.starts_with(n.nspname::pg_catalog.text, 'pg_temp_')
  AND NOT pg_catalog.starts_with(n.nspname::pg_catalog.text, 'pg_toast_temp_')
UNION ALL
SELECT 'm', 0, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text, 0, '', NULL, 0,
  CASE WHEN NOT ` + dbguard.TrustedTable(idx.AdminRole()) + `
    THEN '` + migrationsUntrusted + `'
    WHEN pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
    THEN '` + migrationsReadable + `' ELSE '` + migrationsUnreadable + `' END, NULL
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE n.nspname OPERATOR(pg_catalog.=) 'pgcloak'::pg_catalog.name AND c.relname OPERATOR(pg_catalog.=) 'column_migrations'::pg_catalog.name
ORDER BY 1, 2, 6`
}

// catalogColumns is the number of columns of catalogQuery's rows.
const catalogColumns = 11

// What the catalog query's 'm' row says of pgcloak.column_migrations.
const (
	migrationsReadable   = "readable"
	migrationsUnreadable = "unreadable"
	// migrationsUntrusted: owned (it or its schema) by a role other than
	// the admin role or a superuser, not a plain table, or writable by
	// roles other than its owner. Anyone allowed to create a schema
	// could have made it, to fake migration states; it is ignored.
	migrationsUntrusted = "untrusted"
)

// catalogSearchPath is the search_path the proxy's own catalog queries run
// under: nothing of the session's, and pg_temp last (for relations; it is
// never searched for functions or operators).
const catalogSearchPath = "pg_catalog, pg_temp"

// setCatalogPath sets catalogSearchPath until the end of the transaction,
// or of the savepoint the caller rolls back to.
const setCatalogPath = "SELECT pg_catalog.set_config('search_path', '" + catalogSearchPath + "', true)"

// migrationsQuery reads the column migrations of pgcloak encrypt,
// reencrypt and decrypt. It is only run when the catalog query found the
// table trusted and readable ('m' row): the catalog query itself must not
// fail where no migration ever ran.
const migrationsQuery = colmigrate.Query

// migrationsTable reports what the catalog query's rows say of
// pgcloak.column_migrations: whether it exists, and whether the session
// may read it.
func migrationsTable(rows [][]string) (exists, readable bool) {
	for _, row := range rows {
		if len(row) == catalogColumns && row[0] == "m" && row[9] != migrationsUntrusted {
			return true, row[9] == migrationsReadable
		}
	}
	return false, false
}

// migrationsUntrustedIn reports whether the catalog query found a
// pgcloak.column_migrations that is not to be trusted.
func migrationsUntrustedIn(rows [][]string) bool {
	for _, row := range rows {
		if len(row) == catalogColumns && row[0] == "m" && row[9] == migrationsUntrusted {
			return true
		}
	}
	return false
}

// stateOf works out a policy column's state from its type in PostgreSQL
// and its migration record (the zero Record when it has none).
func stateOf(rule *policy.ColumnRule, typeOID uint32, typeName string, rec colmigrate.Record) columnState {
	bytea := typeOID == byteaOID
	return columnState{mode: colmigrate.ModeOf(rule.Type, bytea, rec), pgType: typeName, bytea: bytea}
}

// quotedRelnames is the policy tables' unqualified names as literals.
func quotedRelnames(idx *policy.Index) []string {
	var names []string
	for _, n := range idx.Relnames() {
		names = append(names, dbguard.QuoteLiteral(n))
	}
	return names
}

// textArray is a pg_catalog.text[] of the literals.
func textArray(literals []string) string {
	return "ARRAY[" + strings.Join(literals, ", ") + "]::pg_catalog.text[]"
}

type catalogRel struct {
	oid      uint32
	schema   string
	name     string
	kind     string
	attnums  []uint16
	columns  []string
	types    []uint32 // type OIDs (of a domain: its base type)
	typNames []string
	viewdef  string
	// inherits is the policy table (schema.name) this partition or child
	// descends from, "" for others.
	inherits string
}

// buildCatalog turns the rows of catalogQuery, and those of
// migrationsQuery when it ran, into a snapshot.
func buildCatalog(idx *policy.Index, rows [][]string, migrationRows [][]string) (*catalog, error) {
	c := &catalog{
		loaded:      time.Now(),
		relations:   map[string]*sqlrewrite.Relation{},
		schemasWith: map[string][]string{},
		byOID:       map[uint32]map[uint16]*policy.ColumnRule{},
		states:      map[*policy.ColumnRule]columnState{},
	}
	migrations, err := colmigrate.Decode(migrationRows)
	if err != nil {
		return nil, err
	}
	rels := map[uint32]*catalogRel{}
	var order []uint32
	for _, row := range rows {
		if len(row) != catalogColumns {
			return nil, fmt.Errorf("catalog query returned %d columns", len(row))
		}
		switch row[0] {
		case "s":
			c.schemasWith[row[3]] = append(c.schemasWith[row[3]], row[2])
			continue
		case "m":
			continue
		}
		oid64, err1 := strconv.ParseUint(row[1], 10, 32)
		attnum, err2 := strconv.ParseUint(row[5], 10, 16)
		typ, err3 := strconv.ParseUint(row[8], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("catalog query returned a bad number")
		}
		oid := uint32(oid64)
		r := rels[oid]
		if r == nil {
			r = &catalogRel{oid: oid, schema: row[2], name: row[3], kind: row[4], viewdef: row[7], inherits: row[10]}
			rels[oid] = r
			order = append(order, oid)
		}
		r.attnums = append(r.attnums, uint16(attnum))
		r.columns = append(r.columns, row[6])
		r.types = append(r.types, uint32(typ))
		r.typNames = append(r.typNames, row[9])
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
			c.tableStates(r, t.Columns, migrations)
			c.addRelation(r, t.Columns, false)
			continue
		}
		// A partition or child holds rows of its policy table, under
		// the same rules (ciphertexts bound to the policy table's
		// columns, so they read alike through either name) and in the
		// same migration state.
		if schema, name, ok := strings.Cut(r.inherits, "."); ok {
			if t := idx.Table(schema, name); t != nil {
				c.addRelation(r, t.Columns, false)
			}
		}
	}
	for _, t := range idx.Tables() {
		if c.relations[t.Qualified()].Columns == nil {
			c.incomplete = true
		}
	}
	c.addViews(views)
	for name, schemas := range c.schemasWith {
		sort.Strings(schemas)
		c.schemasWith[name] = schemas
	}
	return c, nil
}

// tableStates records the state of each policy column of table r.
func (c *catalog) tableStates(r *catalogRel, rules map[string]*policy.ColumnRule, migrations colmigrate.Records) {
	for i, col := range r.columns {
		if rule := rules[col]; rule != nil {
			rec := migrations[colmigrate.Column{Schema: r.schema, Table: r.name, Column: col}]
			c.states[rule] = stateOf(rule, r.types[i], r.typNames[i], rec)
		}
	}
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
func (c *catalog) addViews(views []*catalogRel) {
	// pg_get_viewdef ran under catalogSearchPath, so it qualified every
	// name: no search path resolves one.
	env := &sqlrewrite.Env{Catalog: c}
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

// catalogCache shares snapshots between the sessions of one database, and
// counts, per database, the DDL run through this proxy (its generation):
// a session whose snapshot is of an older generation reloads it before it
// plans again, whatever its age.
type catalogCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	byDB map[string]*catalog
	gens map[string]uint64
}

func newCatalogCache(ttl time.Duration) *catalogCache {
	return &catalogCache{ttl: ttl, byDB: map[string]*catalog{}, gens: map[string]uint64{}}
}

// fresh returns the database's snapshot if it is young enough, of the
// current generation and built under idx, the policy in force.
func (cc *catalogCache) fresh(db string, idx *policy.Index) *catalog {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := cc.byDB[db]
	if c == nil || c.expired(cc.ttl) || c.gen != cc.gens[db] || c.policy != idx {
		return nil
	}
	return c
}

// store shares c unless DDL ran since it started loading.
func (cc *catalogCache) store(db string, c *catalog) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c.gen == cc.gens[db] {
		cc.byDB[db] = c
	}
}

// generation is the database's DDL generation.
func (cc *catalogCache) generation(db string) uint64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.gens[db]
}

// invalidate drops a database's snapshot after DDL (and at the end of the
// transaction that ran it), and starts a new generation.
func (cc *catalogCache) invalidate(db string) uint64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.byDB, db)
	cc.gens[db]++
	return cc.gens[db]
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
	if ss.policyChangedLocked(ss.srv.policy()) {
		// Planning under a policy that is no longer in force is what a
		// failed reload must prevent (see catalogUnknownLocked).
		ss.catStale = true
	}
	stale := ss.catStale || ss.cat.gen != ss.srv.catalogs.generation(ss.database)
	due := stale || ss.cat.expired(ss.srv.catalogs.ttl)
	idle := ss.pl.Idle()
	tx := ss.pl.Status()
	ss.mu.Unlock()
	// Not inside an extended-protocol batch either: the reload would end
	// the batch's implicit transaction (or, after an error in it, be
	// ignored until Sync). Nor in a failed transaction, which refuses
	// every query but its end.
	if !due || !idle || tx == wire.TxFailed {
		return
	}
	if tx == wire.TxIdle && ss.adoptShared(stale) {
		ss.markTxGeneration()
		return
	}
	cat, err := ss.loadCatalog(tx == wire.TxInBlock)
	if err != nil {
		ss.mu.Lock()
		// An old snapshot is still right where no DDL ran since; after
		// DDL it is not known to be (see catalogUnknownLocked).
		ss.catFailed = ss.catStale
		ss.caughtUp = time.Now() // no catching up for another TTL
		ss.mu.Unlock()
		ss.log.Warn("catalog reload failed; keeping the old snapshot", "err", err, "after_ddl", stale)
		return
	}
	ss.mu.Lock()
	ss.cat, ss.catStale, ss.catFailed = cat, false, false
	if tx == wire.TxIdle {
		ss.txGen = cat.gen
	}
	if tx == wire.TxInBlock {
		// Read in the transaction's snapshot, which at REPEATABLE READ
		// can be older than the reload: reloaded again when it ends.
		ss.catTxDirty = true
	}
	ss.mu.Unlock()
	if tx == wire.TxIdle && !cat.migrationsUnknown {
		// Inside a transaction the snapshot may show uncommitted DDL;
		// one loaded by a role that cannot read the migrations is its
		// own.
		ss.srv.catalogs.store(ss.database, cat)
	}
}

// catchUpCatalog keeps a session that is never idle from keeping its
// snapshot (and the migration states in it) for good: the reload waits for
// an idle moment, so once the snapshot is twice the TTL old, a request
// that starts a new batch waits for the ones in flight to complete first.
//
// Not in a failed transaction, where no reload can run, and at most once
// per TTL, so that a reload that keeps failing does not make every request
// wait.
func (ss *session) catchUpCatalog() error {
	ttl := ss.srv.catalogs.ttl
	state := ss.srv.policy()
	ss.mu.Lock()
	var last *pending
	// A policy reload gets its own catch-up, however recent the last one:
	// until the reload, statements using relations are refused (see
	// catalogUnknownLocked).
	policyOld := ss.policyChangedLocked(state)
	if ss.pl.Len() > 0 && !ss.pl.BatchOpen() && ss.pl.Status() != wire.TxFailed && ss.cat != nil &&
		(time.Since(ss.cat.loaded) > 2*ttl || ss.cat.gen != ss.srv.catalogs.generation(ss.database) || policyOld) &&
		(time.Since(ss.caughtUp) > ttl || policyOld && ss.caughtUp.Before(state.at)) {
		last = ss.pl.Last()
	}
	if last == nil || !last.EndsWithReady() {
		ss.mu.Unlock()
		return nil
	}
	ss.caughtUp = time.Now()
	ch := last.Done()
	ss.mu.Unlock()
	if err := ss.uw.flush(); err != nil {
		return err
	}
	return ss.wait(ch)
}

// adoptShared takes the database's shared snapshot when it is young
// enough and, after DDL of this session's, newer than the session's own.
func (ss *session) adoptShared(stale bool) bool {
	cat := ss.srv.catalogs.fresh(ss.database, ss.srv.policy().index)
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

// loadCatalog runs the catalog query in the session, and the migrations
// query when there are migrations to read, each within a savepoint inside
// a transaction.
func (ss *session) loadCatalog(inTx bool) (cat *catalog, err error) {
	defer func() { countCatalogLoad(err) }()
	idx := ss.srv.policy().index
	gen := ss.srv.catalogs.generation(ss.database)
	rows, err := ss.catalogRows(inTx, catalogQuery(idx))
	if err != nil {
		return nil, err
	}
	return ss.catalogFrom(idx, gen, rows, func() ([][]string, error) {
		return ss.catalogRows(inTx, migrationsQuery)
	})
}

// catalogFrom builds a snapshot from the catalog query's rows, reading the
// column migrations with readMigrations when the session's role may.
func (ss *session) catalogFrom(idx *policy.Index, gen uint64, rows [][]string, readMigrations func() ([][]string, error)) (*catalog, error) {
	var migrations [][]string
	readable := ss.migrationsReadable(rows)
	if readable {
		var err error
		if migrations, err = readMigrations(); err != nil {
			return nil, err
		}
	}
	cat, err := buildCatalog(idx, rows, migrations)
	if err != nil {
		return nil, err
	}
	cat.gen, cat.policy = gen, idx
	exists, _ := migrationsTable(rows)
	cat.migrationsUnknown = exists && !readable
	return cat, nil
}

// catalogRows runs one query of the proxy's own in the session under
// catalogSearchPath, and returns its rows. Outside a transaction the
// setting ends with the batch's implicit one; inside, the query runs within
// a savepoint that is rolled back, which undoes the setting and nothing
// else (the query only reads).
func (ss *session) catalogRows(inTx bool, sql string) ([][]string, error) {
	sqls, at := []string{setCatalogPath, sql}, 1
	if inTx {
		sqls, at = []string{"SAVEPOINT " + catalogSavepoint, setCatalogPath, sql,
			"ROLLBACK TO SAVEPOINT " + catalogSavepoint, "RELEASE SAVEPOINT " + catalogSavepoint}, 2
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
	return iq.results[at], nil
}

// migrationsReadable reports, from the catalog query's rows, whether
// pgcloak.column_migrations is to be read. When the session's role may not
// read it, writes and searches on policy columns are refused (see
// checkConverted), and that is logged once.
func (ss *session) migrationsReadable(rows [][]string) bool {
	if migrationsUntrustedIn(rows) && ss.srv.untrustedWarned.CompareAndSwap(false, true) {
		ss.log.Warn("pgcloak.column_migrations is ignored: it or schema pgcloak is not owned by the policy's admin_role (or a superuser), is not a table, or others may write it; run pgcloak policy check")
	}
	exists, readable := migrationsTable(rows)
	if exists && !readable && ss.srv.migrationsWarned.CompareAndSwap(false, true) {
		ss.log.Warn("pgcloak.column_migrations is not readable by the session's role: writes and searches on policy columns are refused; grant SELECT on it (and USAGE on schema pgcloak) to the application roles")
	}
	return readable
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

// listenCatalog makes PostgreSQL send the session the notifications of the
// guard function of pgcloak policy apply, one for each committed DDL
// command that can change a catalog snapshot, from any session or client:
// the database's generation moves on at once (see catalogNotification).
const listenCatalog = "LISTEN " + dbguard.CatalogChannel

// catalogNotification handles a NotificationResponse: one on
// dbguard.CatalogChannel starts a new generation of the database's catalog
// and is not the client's; others are.
func (ss *session) catalogNotification(body []byte) (mine bool) {
	var n pgproto3.NotificationResponse
	if n.Decode(body) != nil || n.Channel != dbguard.CatalogChannel {
		return false
	}
	ss.srv.catalogs.invalidate(ss.database)
	return true
}

// relisten listens on dbguard.CatalogChannel again after the client's
// UNLISTEN or DISCARD ALL, when the session is idle outside a transaction
// (a LISTEN inside one would end with it). err is only the session's end.
func (ss *session) relisten() error {
	ss.mu.Lock()
	due := !ss.listening && ss.pl.Idle() && ss.pl.Status() == wire.TxIdle
	ss.mu.Unlock()
	if !due {
		return nil
	}
	iq, err := ss.runInternal(listenCatalog)
	if err != nil {
		return err
	}
	if iq.err != nil {
		ss.log.Warn("listening for catalog changes failed", "err", iq.err)
		return nil
	}
	ss.mu.Lock()
	ss.listening = true
	ss.mu.Unlock()
	return nil
}

// errCatalogChangedInTx refuses statements that resolve relations after
// another session's DDL changed the catalog during the transaction.
var errCatalogChangedInTx = newSQLError("40001", "another session changed the database's tables or views during this transaction, which pgcloak cannot follow from inside it; roll back and retry")

// markTxGeneration notes that the session's snapshot is of the current
// generation, as a transaction starting now would see it.
func (ss *session) markTxGeneration() {
	ss.mu.Lock()
	ss.txGen = ss.cat.gen
	ss.mu.Unlock()
}

// catalogUnknownLocked is the refusal for statements that resolve a
// relation while the catalog may not be what DDL left it: reloading it
// failed, or the transaction is failed, where the server refuses the
// reload (and would refuse the statement too). Nil when the snapshot is
// usable. Statements that resolve no relation (ROLLBACK, SET, SELECT 1)
// still pass.
func (ss *session) catalogUnknownLocked() error {
	if ss.pl.Status() != wire.TxIdle && ss.cat != nil && ss.srv.catalogs.generation(ss.database) != ss.txGen {
		// DDL of another session, through this proxy, since this
		// transaction began: a reload inside it may not see what its
		// statements will (at REPEATABLE READ its snapshot is older).
		return errCatalogChangedInTx
	}
	// A snapshot built under a policy no longer in force names the old
	// policy's columns and keys: planning with it could write plaintext
	// into a column the new policy encrypts. The reload waits for an idle
	// moment, which an open extended-protocol batch (no Sync yet) or
	// requests in flight put off, for as long as the client likes.
	oldPolicy := ss.policyChangedLocked(ss.srv.policy())
	switch {
	case !ss.catStale && !oldPolicy:
		return nil
	case ss.pl.Status() == wire.TxFailed:
		return newSQLError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	case ss.catFailed:
		return newSQLError("58000", "catalog could not be reloaded after DDL or a policy reload; statements using relations are refused until it is")
	case oldPolicy:
		return errPolicyReloadPending
	}
	return nil
}

// policyChangedLocked reports a snapshot built under another policy than
// state's, the one in force (see Server.SetPolicy). The caller holds ss.mu.
func (ss *session) policyChangedLocked(state *policyState) bool {
	return ss.cat != nil && ss.cat.policy != state.index
}

// errPolicyReloadPending refuses statements that resolve relations after a
// policy reload, until the session's catalog snapshot is reloaded under
// the new policy, which happens once nothing is in flight.
var errPolicyReloadPending = newSQLError("55000", "the policy was reloaded while requests of this session were in flight; statements using relations are refused until they complete (end the batch with Sync) and the catalog is reloaded")

// countCatalogLoad counts a catalog snapshot load by its outcome.
func countCatalogLoad(err error) {
	outcome := metrics.OK
	if err != nil {
		outcome = metrics.Failed
	}
	metrics.CatalogReloads.WithLabelValues(outcome).Inc()
}
