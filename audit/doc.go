// Package audit owns pgcloak's plaintext-access audit trail: the shape of
// its records, the statement fingerprint they carry, and the writer that
// puts them on the configured output (policy.Audit: a file rotated by size,
// stdout, or syslog, local or remote).
//
// The proxy writes one record per statement that touched an encrypted
// column. A record says who (login and effective role, client, session),
// where (database, application), what (the statement's Fingerprint and
// kind), to which columns (with the key, what happened to their values and
// to how many rows), and how it ended. It never holds a value: Fingerprint
// replaces every constant of the SQL text with a $N parameter and drops its
// comments, and the columns are named, not shown.
//
// Each record is one line of JSON (one message on syslog), for example:
//
//	{"time":"2026-12-05T17:06:16.123456789Z","session":42,"user":"alice",
//	 "role":"billing","client":"10.0.0.7:51234","database":"clinic",
//	 "application":"psql","statement":"SELECT name, ssn FROM patients WHERE ssn = $1",
//	 "kind":"select","columns":[
//	   {"table":"public.patients","column":"ssn","key":"ssn","action":"searched","rows":0},
//	   {"table":"public.patients","column":"ssn","key":"ssn","action":"decrypted","rows":1}],
//	 "outcome":"ok"}
//
// (wrapped here; written on one line). A refused or failed statement has
// outcome "refused" or "error" and its "sqlstate", with an optional
// "reason".
//
// Records are written asynchronously, through a buffer of audit.buffer
// records. When it is full, a statement waits for room (audit.on_full:
// block, the default: a trail with holes is worth little) or its record is
// dropped and counted in pgcloak_audit_dropped_total (drop). An output that
// fails does not stop the proxy: the record is counted in
// pgcloak_audit_write_errors_total, the error logged at most every 10
// seconds, and the next record tried.
package audit
