// Package dbguard owns what pgcloak keeps inside the database and when it
// trusts it: the schema pgcloak and its migration state, which only the
// policy's admin role (or a superuser) may own. It holds SQL only; the
// proxy and the admin commands run it. The migration state's table itself
// (its DDL, its rows and what they mean) is package colmigrate's; whether
// to believe it is decided here, as for pgcloak's other objects.
//
// Every fragment is immune to the session it runs in: functions, operators
// and types are qualified with pg_catalog, so a role that puts a schema of
// its own first on search_path cannot answer in their place.
package dbguard

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

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

// The guards below make PostgreSQL itself refuse what pgcloak's analysis
// refuses, whatever path a statement takes (a client bypassing the proxy,
// a mistake of the proxy's): a CHECK constraint on every encrypted column
// that accepts only the shape of a pgcloak ciphertext, and an event
// trigger that aborts DDL, by any role but the admin role or a superuser,
// that renames, moves or retypes a policy column or weakens its check.

// GuardsDDL creates the table of guarded columns (what `pgcloak policy
// apply` installed: the column and its attribute number, which dropping and
// adding it again in one statement would change, its constraint and the
// constraint's definition as PostgreSQL prints it).
const GuardsDDL = `CREATE TABLE IF NOT EXISTS pgcloak.guarded_columns (
  schema_name     name NOT NULL,
  table_name      name NOT NULL,
  column_name     name NOT NULL,
  column_attnum   int2,
  constraint_name name,
  constraint_def  text,
  PRIMARY KEY (schema_name, table_name, column_name)
);
ALTER TABLE pgcloak.guarded_columns ADD COLUMN IF NOT EXISTS column_attnum int2;
GRANT SELECT ON pgcloak.guarded_columns TO PUBLIC;`

// ConstraintName is the name of the ciphertext check on column.
func ConstraintName(column string) string {
	name := "pgcloak_ciphertext_" + column
	if len(name) > 63 {
		// As PostgreSQL would truncate it, on a character boundary.
		name = strings.ToValidUTF8(name[:63], "")
	}
	return name
}

// CiphertextCheck is the CHECK expression for column (an identifier,
// quoted by the caller): NULL, or at least minLen bytes starting with
// prefix, the shape of every pgcloak ciphertext.
func CiphertextCheck(column string, prefix []byte, minLen int) string {
	return fmt.Sprintf(`%[1]s IS NULL OR (pg_catalog.octet_length(%[1]s) OPERATOR(pg_catalog.>=) %[2]d
  AND pg_catalog.substring(%[1]s, 1, %[3]d) OPERATOR(pg_catalog.=) pg_catalog.decode('%[4]x', 'hex'))`,
		column, minLen, len(prefix), prefix)
}

// GuardFunctionDDL creates the event trigger function. It runs after every
// DDL command, notifies CatalogChannel, and aborts the command when, for a
// role other than adminRole or a superuser, a guarded column is gone
// (renamed, moved, dropped), or, once encrypted, is no longer bytea or its
// check is gone or changed.
func GuardFunctionDDL(adminRole string) string {
	admin := "NULL::pg_catalog.name"
	if adminRole != "" {
		admin = QuoteLiteral(adminRole) + "::pg_catalog.name"
	}
	return `CREATE OR REPLACE FUNCTION pgcloak.guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $guard$
DECLARE
  g record;
BEGIN
  -- Delivered when the DDL commits: proxies reload their catalogs. Only
  -- for DDL on relations, columns, schemas, rules and types, which can
  -- change what a proxy's catalog holds (a reload makes the proxy's
  -- sessions in a transaction refuse statements on relations); not for
  -- temporary objects, which no other session sees.
  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c WHERE c.object_type IN
      ('table', 'table column', 'view', 'materialized view', 'foreign table', 'schema', 'rule', 'type')
      AND NOT COALESCE(starts_with(c.schema_name, 'pg_temp'), false)) THEN
    PERFORM pg_notify(` + QuoteLiteral(CatalogChannel) + `, '');
  END IF;
  IF current_user = ` + admin + ` OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RETURN;
  END IF;
  FOR g IN SELECT * FROM pgcloak.guarded_columns LOOP
    IF NOT EXISTS (SELECT FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = g.schema_name AND c.relname = g.table_name AND a.attname = g.column_name
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attnum IS NOT DISTINCT FROM g.column_attnum
          AND (g.constraint_name IS NULL OR a.atttypid = 'bytea'::regtype)) THEN
      RAISE EXCEPTION 'pgcloak: column %.%.% of the encryption policy must keep its name, table and schema (and, encrypted, its type bytea)', g.schema_name, g.table_name, g.column_name
        USING ERRCODE = '42501', HINT = 'Such changes go through the pgcloak admin role, with the policy changed to match.';
    END IF;
    IF g.constraint_name IS NOT NULL AND NOT EXISTS (SELECT FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = g.schema_name AND c.relname = g.table_name AND k.conname = g.constraint_name
          AND k.convalidated AND pg_get_constraintdef(k.oid) = g.constraint_def) THEN
      RAISE EXCEPTION 'pgcloak: the ciphertext check % on %.% must stay as pgcloak policy apply installed it', g.constraint_name, g.schema_name, g.table_name
        USING ERRCODE = '42501';
    END IF;
  END LOOP;
END
$guard$`
}

// CatalogChannel is the notification channel on which the guard function
// announces every DDL command, once its transaction commits: each proxy
// session listens on it, so DDL made anywhere reaches the proxies'
// catalogs without waiting for them to expire.
const CatalogChannel = "pgcloak_catalog"

// EventTriggerName is the event trigger that runs pgcloak.guard_ddl.
const EventTriggerName = "pgcloak_guard"

// EventTriggerDDL creates the event trigger unless it exists, and enables
// it.
const EventTriggerDDL = `DO $do$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'pgcloak_guard') THEN
    CREATE EVENT TRIGGER pgcloak_guard ON ddl_command_end EXECUTE FUNCTION pgcloak.guard_ddl();
  END IF;
END $do$;
ALTER EVENT TRIGGER pgcloak_guard ENABLE;`

// GuardsStateQuery returns one row: whether pgcloak.guarded_columns
// exists and whether the event trigger exists, is enabled and runs
// pgcloak.guard_ddl.
const GuardsStateQuery = `SELECT
  pg_catalog.to_regclass('pgcloak.guarded_columns') IS NOT NULL,
  EXISTS (SELECT FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) e.evtfoid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE e.evtname OPERATOR(pg_catalog.=) 'pgcloak_guard' AND e.evtenabled OPERATOR(pg_catalog.<>) 'D'
      AND e.evtevent OPERATOR(pg_catalog.=) 'ddl_command_end'
      AND n.nspname OPERATOR(pg_catalog.=) 'pgcloak' AND p.proname OPERATOR(pg_catalog.=) 'guard_ddl')`

// AuthSchema holds AuthFunction. It is not schema pgcloak, which the
// admin role owns (and so could replace any function in it): a superuser
// owns this one, and nobody else may create in it.
const AuthSchema = "pgcloak_scram"

// AuthFunction is the function through which the proxy, when it
// terminates SCRAM, looks up a role's verifier (server.auth.query).
const AuthFunction = AuthSchema + ".verifier"

// AuthFunctionDDL installs AuthFunction for authRole; a superuser must run
// it, and owns the schema and the function. The function is SECURITY
// DEFINER, as reading pg_authid needs, and returns the SCRAM verifier of a
// role that is no superuser (a superuser's verifier is not handed to a
// low-privilege role; superusers log in without the proxy) and whose
// password has not expired; whether the role may log in, PostgreSQL says
// after the password, as it would without the proxy. Only authRole may
// call it, and only superusers may create in its schema. It refuses to
// install into a schema of that name that someone else owns.
// A verifier it returns lets the proxy check a client, never log in by
// itself: PostgreSQL checks the proof the client made again.
func AuthFunctionDDL(authRole string) string {
	role := pgx.Identifier{authRole}.Sanitize()
	return `DO $do$ BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
             WHERE n.nspname OPERATOR(pg_catalog.=) '` + AuthSchema + `' AND NOT r.rolsuper) THEN
    RAISE EXCEPTION 'schema ` + AuthSchema + ` exists and a role that is not a superuser owns it: drop it, then install again';
  END IF;
END $do$;
CREATE SCHEMA IF NOT EXISTS ` + AuthSchema + `;
REVOKE ALL ON SCHEMA ` + AuthSchema + ` FROM PUBLIC;
DO $do$ DECLARE g record; BEGIN
  FOR g IN SELECT r.rolname FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
           JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
           WHERE n.nspname OPERATOR(pg_catalog.=) '` + AuthSchema + `' AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE' AND NOT r.rolsuper LOOP
    EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA ` + AuthSchema + ` FROM %I', g.rolname);
  END LOOP;
END $do$;
-- The function of an earlier version, in schema pgcloak.
DROP FUNCTION IF EXISTS ` + Schema + `.scram_verifier(text);
DROP FUNCTION IF EXISTS ` + AuthFunction + `(text);
CREATE FUNCTION ` + AuthFunction + `(role_name text) RETURNS text
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT a.rolpassword FROM pg_catalog.pg_authid a
  WHERE a.rolname OPERATOR(pg_catalog.=) role_name
    AND NOT a.rolsuper
    AND pg_catalog.starts_with(a.rolpassword, 'SCRAM-SHA-256$')
    AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil OPERATOR(pg_catalog.>) pg_catalog.now())
$fn$;
REVOKE ALL ON FUNCTION ` + AuthFunction + `(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA ` + AuthSchema + ` TO ` + role + `;
GRANT EXECUTE ON FUNCTION ` + AuthFunction + `(text) TO ` + role + `;
`
}

// AuthFunctionTrustQuery is true when AuthFunction is as AuthFunctionDDL
// installs it: SECURITY DEFINER, owned by a superuser, the only function
// of its name in a schema a superuser owns and only superusers may create
// in.
const AuthFunctionTrustQuery = `SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 1
  AND pg_catalog.bool_and(p.prosecdef AND po.rolsuper AND so.rolsuper
      AND p.proargtypes OPERATOR(pg_catalog.=) '25'::pg_catalog.oidvector
      AND NOT EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) a
                      LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
                      WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE' AND NOT COALESCE(g.rolsuper, false)))
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
JOIN pg_catalog.pg_roles po ON po.oid OPERATOR(pg_catalog.=) p.proowner
JOIN pg_catalog.pg_roles so ON so.oid OPERATOR(pg_catalog.=) n.nspowner
WHERE n.nspname OPERATOR(pg_catalog.=) '` + AuthSchema + `' AND p.proname OPERATOR(pg_catalog.=) 'verifier'`
