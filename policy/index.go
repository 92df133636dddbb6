package policy

import "sort"

// ColumnRule is everything needed to encrypt, decrypt and present one
// encrypted column.
type ColumnRule struct {
	Schema  string
	Table   string
	Column  string
	KeyName string
	Kind    KeyKind
	Type    LogicalType
}

// Name is the column's qualified name, schema.table.column.
func (r *ColumnRule) Name() string { return r.Schema + "." + r.Table + "." + r.Column }

// Deterministic reports whether equal plaintexts encrypt to equal
// ciphertexts: true for deterministic and for ordered keys.
func (r *ColumnRule) Deterministic() bool { return r.Kind == Deterministic || r.Kind == Ordered }

// Ordered reports whether the ciphertexts' byte order is the plaintexts'
// order (an ordered key).
func (r *ColumnRule) Ordered() bool { return r.Kind == Ordered }

// AssociatedData binds a ciphertext to where it belongs: the column for
// randomized keys, the key for deterministic and ordered keys (so columns
// sharing such a key can be compared and joined).
func (r *ColumnRule) AssociatedData() []byte {
	if r.Kind == Ordered {
		return []byte("pgcloak:ordered-key:" + r.KeyName)
	}
	if r.Deterministic() {
		return []byte("pgcloak:key:" + r.KeyName)
	}
	return []byte("pgcloak:column:" + r.Name())
}

// Interchangeable reports whether a ciphertext of r is also a valid
// ciphertext of o: the same key, the same associated data, the same logical
// type. Only then may PostgreSQL compare or copy one into the other.
func (r *ColumnRule) Interchangeable(o *ColumnRule) bool {
	if r == o {
		return true
	}
	if r == nil || o == nil {
		return false
	}
	return r.KeyName == o.KeyName && r.Type == o.Type &&
		string(r.AssociatedData()) == string(o.AssociatedData())
}

// Table is a table that has encrypted columns.
type Table struct {
	Schema  string
	Name    string
	Columns map[string]*ColumnRule
}

// Qualified is schema.table.
func (t *Table) Qualified() string { return t.Schema + "." + t.Name }

// Index answers lookups on a validated policy.
type Index struct {
	tables    map[string]*Table
	byRelname map[string][]*Table
	keys      map[string]Key
	grants    *GrantTable
	adminRole string
}

// NewIndex builds the lookups of a validated policy.
func NewIndex(p Policy) *Index {
	x := &Index{
		tables:    map[string]*Table{},
		byRelname: map[string][]*Table{},
		keys:      map[string]Key{},
		grants:    NewGrantTable(p.Roles),
		adminRole: p.AdminRole,
	}
	for _, k := range p.Keys {
		x.keys[k.Name] = k
	}
	for _, c := range p.Columns {
		schema, name, ok := splitQualified(c.Table)
		if !ok {
			continue
		}
		t := x.tables[schema+"."+name]
		if t == nil {
			t = &Table{Schema: schema, Name: name, Columns: map[string]*ColumnRule{}}
			x.tables[schema+"."+name] = t
			x.byRelname[name] = append(x.byRelname[name], t)
		}
		t.Columns[c.Column] = &ColumnRule{
			Schema: schema, Table: name, Column: c.Column,
			KeyName: c.Key, Kind: x.keys[c.Key].Kind, Type: c.Type,
		}
	}
	return x
}

// Table returns the policy table schema.name, or nil.
func (x *Index) Table(schema, name string) *Table { return x.tables[schema+"."+name] }

// TablesNamed returns the policy tables whose unqualified name is relname.
func (x *Index) TablesNamed(relname string) []*Table { return x.byRelname[relname] }

// Column returns the rule for schema.table.column, or nil.
func (x *Index) Column(schema, table, column string) *ColumnRule {
	t := x.tables[schema+"."+table]
	if t == nil {
		return nil
	}
	return t.Columns[column]
}

// Tables lists the policy tables sorted by qualified name.
func (x *Index) Tables() []*Table {
	out := make([]*Table, 0, len(x.tables))
	for _, t := range x.tables {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Qualified() < out[j].Qualified() })
	return out
}

// Relnames lists the distinct unqualified names of policy tables.
func (x *Index) Relnames() []string {
	out := make([]string, 0, len(x.byRelname))
	for n := range x.byRelname {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Key returns the named key.
func (x *Index) Key(name string) (Key, bool) {
	k, ok := x.keys[name]
	return k, ok
}

// Keys lists the policy's keys sorted by name.
func (x *Index) Keys() []Key {
	out := make([]Key, 0, len(x.keys))
	for _, k := range x.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AdminRole is the database role trusted to own pgcloak's objects in the
// database ("": superusers only).
func (x *Index) AdminRole() string { return x.adminRole }

// Grants returns the config file's grants.
func (x *Index) Grants() *GrantTable { return x.grants }

// Grants is what one role may do with keys.
type Grants struct {
	Role     string
	OnDenied OnDenied
	// ServerSideCode: the role may run code the proxy cannot analyse.
	ServerSideCode bool
	read           map[string]bool
	write          map[string]bool
}

// CanRead reports whether the role may decrypt with key.
func (g *Grants) CanRead(key string) bool { return g != nil && g.read[key] }

// CanWrite reports whether the role may encrypt with key.
func (g *Grants) CanWrite(key string) bool { return g != nil && g.write[key] }

// GrantTable maps roles to their grants.
type GrantTable struct {
	roles map[string]*Grants
}

// NewGrantTable builds a grant table from role entries.
func NewGrantTable(roles []Role) *GrantTable {
	gt := &GrantTable{roles: map[string]*Grants{}}
	for _, r := range roles {
		g := &Grants{Role: r.Role, OnDenied: r.OnDenied, ServerSideCode: r.ServerSideCode == AllowServerSideCode,
			read: map[string]bool{}, write: map[string]bool{}}
		if g.OnDenied == "" {
			g.OnDenied = DeniedNull
		}
		for _, k := range r.Read {
			g.read[k] = true
		}
		for _, k := range r.Write {
			g.write[k] = true
		}
		gt.roles[r.Role] = g
	}
	return gt
}

// For returns role's grants; a role the table does not list may use no key
// and sees NULL for what it may not read.
func (gt *GrantTable) For(role string) *Grants {
	if g := gt.roles[role]; g != nil {
		return g
	}
	return &Grants{Role: role, OnDenied: DeniedNull}
}
