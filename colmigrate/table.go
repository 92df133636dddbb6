package colmigrate

// Table is pgcloak.column_migrations, as messages name it.
const Table = "pgcloak.column_migrations"

// DDL creates the table unless it exists, readable by every role: each
// proxy session reads it as the client's role. Writing it is left to its
// owner, the role that runs migrations (the admin role or a superuser),
// which is what makes the proxies trust it (dbguard.TrustedTable).
const DDL = `CREATE SCHEMA IF NOT EXISTS pgcloak;
CREATE TABLE IF NOT EXISTS pgcloak.column_migrations (
  schema_name name NOT NULL,
  table_name  name NOT NULL,
  column_name name NOT NULL,
  action      text NOT NULL,
  key_name    text NOT NULL,
  started     timestamptz NOT NULL,
  finished    timestamptz,
  PRIMARY KEY (schema_name, table_name, column_name)
);
GRANT USAGE ON SCHEMA pgcloak TO PUBLIC;
GRANT SELECT ON pgcloak.column_migrations TO PUBLIC;`

// The statements below are the migrator's and the admin commands', which
// run on connections of their own; each takes the column as $1 schema,
// $2 table, $3 column.

// LockRecordSQL reads a column's row, locking it until the transaction
// ends: its action and whether it finished (scanned into a Record).
const LockRecordSQL = `SELECT action, finished IS NOT NULL FROM pgcloak.column_migrations
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3 FOR UPDATE`

// StartSQL records action $4 under key $5 as unfinished. A run that
// resumes the same action keeps its start time.
const StartSQL = `INSERT INTO pgcloak.column_migrations AS cm (schema_name, table_name, column_name, action, key_name, started)
		VALUES ($1, $2, $3, $4, $5, now())
		ON CONFLICT (schema_name, table_name, column_name) DO UPDATE SET action = EXCLUDED.action, key_name = EXCLUDED.key_name,
			started = CASE WHEN cm.finished IS NULL AND cm.action = EXCLUDED.action THEN cm.started ELSE now() END, finished = NULL`

// FinishSQL marks the column's migration finished.
const FinishSQL = `UPDATE pgcloak.column_migrations SET finished = now()
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`

// FinishAsSQL marks the column's migration finished, recording action $4
// (decrypt, after decrypt-finishing).
const FinishAsSQL = `UPDATE pgcloak.column_migrations SET action = $4, finished = now()
			WHERE schema_name = $1 AND table_name = $2 AND column_name = $3`

// UnfinishedSQL reports whether the column has an unfinished migration.
const UnfinishedSQL = `SELECT EXISTS (SELECT FROM pgcloak.column_migrations
		WHERE schema_name = $1 AND table_name = $2 AND column_name = $3 AND finished IS NULL)`
