package sqlrewrite

import pg_query "github.com/pganalyze/pg_query_go/v5"

// The policy names its tables and columns by schema and name, and the
// proxy finds them by those names. Renaming or moving one makes its column
// plain to the proxy (writes would store plaintext among the ciphertexts)
// and, renamed back, unreadable; so these statements are refused through
// the proxy. (Views over policy tables are found through their
// dependencies, whatever they are called: renaming them is harmless.)

// SchemaHolder is implemented by catalogs that can tell which schemas hold
// policy tables, so that renaming such a schema can be refused.
type SchemaHolder interface {
	// HoldsPolicyTable reports whether schema holds a table of the
	// policy (or a partition or child of one).
	HoldsPolicyTable(schema string) bool
}

// rename handles ALTER … RENAME. PostgreSQL lets ALTER INDEX, ALTER VIEW,
// ALTER MATERIALIZED VIEW and ALTER TYPE … RENAME [ATTRIBUTE] act on a
// table too, so what the statement says it renames does not matter: the
// relation it names does.
func (a *analyzer) rename(rs *pg_query.RenameStmt, st *Statement) error {
	st.Kind = KindDDL
	switch rs.GetRenameType() {
	case pg_query.ObjectType_OBJECT_SCHEMA:
		return a.schemaMove(rs.GetSubname(), "renaming schema")
	case pg_query.ObjectType_OBJECT_TABCONSTRAINT, pg_query.ObjectType_OBJECT_DOMCONSTRAINT,
		pg_query.ObjectType_OBJECT_TRIGGER, pg_query.ObjectType_OBJECT_POLICY, pg_query.ObjectType_OBJECT_RULE:
		// Names the policy does not use, on the relation.
		return nil
	case pg_query.ObjectType_OBJECT_COLUMN, pg_query.ObjectType_OBJECT_ATTRIBUTE:
		return a.tableMove(rs.GetRelation(), "renaming a column of")
	}
	return a.tableMove(rs.GetRelation(), "renaming")
}

// setSchema handles ALTER … SET SCHEMA, which like RENAME may act on a
// table whatever kind of relation the statement names.
func (a *analyzer) setSchema(as *pg_query.AlterObjectSchemaStmt, st *Statement) error {
	st.Kind = KindDDL
	return a.tableMove(as.GetRelation(), "moving to another schema")
}

// tableMove refuses what to a policy table (a base table with encrypted
// columns, not a view).
func (a *analyzer) tableMove(rv *pg_query.RangeVar, what string) error {
	for _, rel := range a.relationsAnywhere(rv.GetSchemaname(), rv.GetRelname()) {
		if !rel.View {
			return refuse("", "%s %s.%s, which has encrypted columns, is not supported: the policy names its tables and columns", what, rel.Schema, rel.Name)
		}
	}
	return nil
}

// relationsAnywhere returns the relations with encrypted columns that
// schema.name may be, for a statement whose names are not pinned (DDL,
// utilities): PostgreSQL resolves an unqualified name through a
// search_path that may have changed unseen (a function, UPDATE
// pg_settings), so every schema holding the name counts, not only those on
// the path the proxy follows.
func (a *analyzer) relationsAnywhere(schema, name string) []*Relation {
	if !a.cat.EncryptedName(name) || (schema != "" && isTempSchema(schema)) {
		return nil
	}
	schemas := []string{schema}
	if schema == "" {
		schemas = a.cat.SchemasWith(name)
	}
	var out []*Relation
	for _, s := range schemas {
		if rel := a.cat.Relation(s, name); rel != nil {
			out = append(out, rel)
		}
	}
	return out
}

// schemaMove refuses what to a schema holding a policy table. A catalog
// that cannot tell is taken to hold one.
func (a *analyzer) schemaMove(schema, what string) error {
	if h, ok := a.cat.(SchemaHolder); ok && !h.HoldsPolicyTable(schema) {
		return nil
	}
	return refuse("", "%s %s, which holds tables with encrypted columns, is not supported: the policy names its tables by schema", what, schema)
}

// createsOnlyTemp reports DDL that creates a temporary relation, which no
// other session can see.
func createsOnlyTemp(n *pg_query.Node) bool {
	temp := func(rv *pg_query.RangeVar) bool {
		return rv.GetRelpersistence() == "t" || isTempSchema(rv.GetSchemaname())
	}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_CreateStmt:
		return temp(x.CreateStmt.GetRelation())
	case *pg_query.Node_ViewStmt:
		return temp(x.ViewStmt.GetView())
	case *pg_query.Node_CreateTableAsStmt:
		return temp(x.CreateTableAsStmt.GetInto().GetRel())
	case *pg_query.Node_CreateSeqStmt:
		return temp(x.CreateSeqStmt.GetSequence())
	case *pg_query.Node_SelectStmt:
		return temp(leftmostInto(x.SelectStmt).GetRel())
	}
	return false
}
