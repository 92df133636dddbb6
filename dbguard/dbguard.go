// Package dbguard owns what pgcloak keeps inside the database and when it
// trusts it: the schema pgcloak and its migration state, which only the
// policy's admin role (or a superuser) may own. It holds SQL only; the
// proxy and the admin commands run it.
//
// Every fragment is immune to the session it runs in: functions, operators
// and types are qualified with pg_catalog, so a role that puts a schema of
// its own first on search_path cannot answer in their place.
package dbguard

import "strings"

// Schema is the schema of pgcloak's own objects.
const Schema = "pgcloak"

// QuoteLiteral quotes s as an SQL string literal that reads the same
// whatever standard_conforming_strings is: with a backslash in it, the
// E'…' form, whose escapes do not depend on the setting.
func QuoteLiteral(s string) string {
	q := strings.ReplaceAll(s, "'", "''")
	if strings.Contains(q, `\`) {
		return "E'" + strings.ReplaceAll(q, `\`, `\\`) + "'"
	}
	return "'" + q + "'"
}

// TrustedOwner is an SQL condition: the role whose OID the expression owner
// gives is a superuser or adminRole ("" trusts superusers only).
func TrustedOwner(owner, adminRole string) string {
	admin := "NULL::pg_catalog.name"
	if adminRole != "" {
		admin = QuoteLiteral(adminRole) + "::pg_catalog.name"
	}
	return `COALESCE((SELECT o.rolsuper OR o.rolname OPERATOR(pg_catalog.=) ` + admin + `
    FROM pg_catalog.pg_roles o WHERE o.oid OPERATOR(pg_catalog.=) ` + owner + `), false)`
}

// othersMayWrite is an SQL condition on pg_class c: a role other than the
// owner was granted a privilege that changes the table's rows.
const othersMayWrite = `(EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) g
    WHERE g.grantee OPERATOR(pg_catalog.<>) c.relowner
      AND g.privilege_type OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE,DELETE,TRUNCATE}'::pg_catalog.text[]))
  OR EXISTS (SELECT FROM pg_catalog.pg_attribute ca, pg_catalog.aclexplode(ca.attacl) g
    WHERE ca.attrelid OPERATOR(pg_catalog.=) c.oid AND g.grantee OPERATOR(pg_catalog.<>) c.relowner
      AND g.privilege_type OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE}'::pg_catalog.text[])))`

// TrustedTable is an SQL condition on pg_class c and its pg_namespace n: a
// plain table that adminRole (or a superuser) owns in a schema it owns,
// whose rows no other role may change. Anything else with its name could
// have been made by whoever may create a schema, to fake what it holds.
func TrustedTable(adminRole string) string {
	return `(` + TrustedOwner("n.nspowner", adminRole) + ` AND ` + TrustedOwner("c.relowner", adminRole) + `
    AND c.relkind OPERATOR(pg_catalog.=) 'r'::pg_catalog."char" AND NOT ` + othersMayWrite + `)`
}

// MigrationsTrustQuery returns one row, (exists, trusted), for
// pgcloak.column_migrations.
func MigrationsTrustQuery(adminRole string) string {
	return `SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0,
  COALESCE(pg_catalog.bool_and(` + TrustedTable(adminRole) + `), false)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE n.nspname OPERATOR(pg_catalog.=) 'pgcloak'::pg_catalog.name
  AND c.relname OPERATOR(pg_catalog.=) 'column_migrations'::pg_catalog.name`
}
