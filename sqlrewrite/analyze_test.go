package sqlrewrite

import (
	"strings"
	"testing"
)

// acceptCase is a statement pgcloak accepts, with the SQL PostgreSQL
// receives (fakeEncrypt marks every encrypted literal) and the plan.
type acceptCase struct {
	name string
	sql  string
	env  func(*Env) // adjusts the default test session
	// want is the rewritten SQL; "" means unchanged.
	want string
	// params is paramNames(Plan.Params).
	params string
	// writes, searches, outputs are ruleNames of the (first) statement's.
	writes, searches, outputs string
	kind                      Kind
}

// Short names for expected rule lists.
const (
	pSSN   = "public.patients.ssn"
	pDiag  = "public.patients.diagnosis"
	pDOB   = "public.patients.dob"
	vSSN   = "public.visits.patient_ssn"
	vNote  = "public.visits.note"
	pAll   = pDiag + "," + pDOB + "," + pSSN
	sBadge = "public.staff.badge"
)

var selectCases = []acceptCase{
	{name: "equality literal", sql: `SELECT id FROM patients WHERE ssn = '123-45-6789'`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:123-45-6789>']))`, searches: pSSN},
	{name: "literal on the left", sql: `SELECT id FROM patients WHERE '1' = ssn`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:1>']))`, searches: pSSN},
	{name: "equality param", sql: `SELECT id FROM "public".patients WHERE ssn = $1`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "param cast dropped", sql: `SELECT id FROM patients WHERE ssn = $1::text`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "param CAST() dropped", sql: `SELECT id FROM patients WHERE ssn = CAST($2 AS varchar(20)) AND id = $1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[])) AND id = $1`, params: "$1=-,$2=" + pSSN + "/r,$3..$10=" + pSSN + "/c$2", searches: pSSN},
	{name: "parenthesized param cast", sql: `SELECT id FROM patients WHERE ssn = ($1)::text`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "not equal and !=", sql: `SELECT id FROM patients WHERE ssn <> 'a' OR ssn != 'b'`,
		want: `SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY['<cands:public.patients.ssn:a>'])) OR (ssn <> ALL(ARRAY['<cands:public.patients.ssn:b>']))`, searches: pSSN},
	{name: "is distinct from", sql: `SELECT id FROM patients WHERE ssn IS DISTINCT FROM 'a' AND ssn IS NOT DISTINCT FROM $1`,
		want:   `SELECT id FROM "public".patients WHERE (NOT coalesce(ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']), false)) AND (coalesce(ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]), ssn IS NULL AND (ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])[1] IS NULL))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "in list mixing params literals null", sql: `SELECT id FROM patients WHERE ssn IN ('a', $2, NULL, 'b') AND id = $1`,
		want:   `SELECT id FROM "public".patients WHERE (ssn = ANY((ARRAY['<cands:public.patients.ssn:a>'] || ARRAY[$3, $4, $5, $6, $7, $8, $9, $10]::bytea[]) || (ARRAY[NULL::bytea] || ARRAY['<cands:public.patients.ssn:b>']))) AND id = $1`,
		params: "$1=-,$2=" + pSSN + "/r,$3..$10=" + pSSN + "/c$2", searches: pSSN},
	{name: "not in list", sql: `SELECT id FROM patients WHERE ssn NOT IN ('a', 'b')`,
		want: `SELECT id FROM "public".patients WHERE (ssn <> ALL(ARRAY['<cands:public.patients.ssn:a>'] || ARRAY['<cands:public.patients.ssn:b>']))`, searches: pSSN},
	{name: "any array of constants", sql: `SELECT id FROM patients WHERE ssn = ANY(ARRAY['a', $1])`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>'] || ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`, params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "is null on randomized", sql: `SELECT id FROM "public".patients WHERE diagnosis IS NULL OR dob IS NOT NULL`},
	{name: "param is null stays neutral", sql: `SELECT id FROM "public".patients WHERE ($1 IS NULL OR ssn = $1)`,
		want:   `SELECT id FROM "public".patients WHERE ($1 IS NULL OR (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN},
	{name: "null comparison", sql: `SELECT id FROM "public".patients WHERE ssn = NULL`},
	{name: "doubled quote", sql: `SELECT id FROM patients WHERE ssn = 'it''s'`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:it's>']))`, searches: pSSN},
	{name: "E string escapes", sql: `SELECT id FROM patients WHERE ssn = E'a\nb\'c'`,
		want: "SELECT id FROM \"public\".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a\nb'c>']))", searches: pSSN},
	{name: "dollar quoted", sql: `SELECT id FROM patients WHERE ssn = $q$x'y$q$`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x'y>']))`, searches: pSSN},
	{name: "unicode escape string with UESCAPE", sql: `SELECT id FROM patients WHERE ssn = U&'d!0061t' UESCAPE '!' AND id = 1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:dat>'])) AND id = 1`, searches: pSSN},
	{name: "unicode escape string", sql: `SELECT id FROM patients WHERE ssn = U&'\0441\043B' AND id = 1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:сл>'])) AND id = 1`, searches: pSSN},
	{name: "string continuation", sql: "SELECT id FROM patients WHERE ssn = 'ab'\n  'cd' AND id = 1",
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:abcd>'])) AND id = 1`, searches: pSSN},
	{name: "unicode literals byte offsets", sql: `SELECT 'é☃' AS x, id FROM patients WHERE name = 'ü' AND ssn = 'ñ☃é' AND id = 1`,
		want: `SELECT 'é☃' AS x, id FROM "public".patients WHERE name = 'ü' AND (ssn = ANY(ARRAY['<cands:public.patients.ssn:ñ☃é>'])) AND id = 1`, searches: pSSN},
	{name: "comments between tokens", sql: "SELECT id FROM patients WHERE ssn /* c */ = /* d */ 'x' -- tail\n AND id = 1",
		want: "SELECT id FROM \"public\".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) -- tail\n AND id = 1", searches: pSSN},
	{name: "comment inside cast", sql: "SELECT id FROM patients WHERE ssn = 'x' /* a */ :: /* b */ text AND id = 1",
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) AND id = 1`, searches: pSSN},
	{name: "typed literal cast", sql: `SELECT id FROM patients WHERE ssn = 'x'::text`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "nested casts", sql: `SELECT id FROM patients WHERE ssn = 'x'::text::varchar(10) AND id = 1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) AND id = 1`, searches: pSSN},
	{name: "CAST form", sql: `SELECT id FROM patients WHERE ssn = CAST('x' AS character varying(9)) AND id = 1`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) AND id = 1`, searches: pSSN},
	{name: "CAST of parenthesized", sql: `SELECT id FROM patients WHERE ssn = CAST((('x')) AS text)`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "parenthesized cast", sql: `SELECT id FROM patients WHERE ssn = (('x'))::text`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "parenthesized literal", sql: `SELECT id FROM patients WHERE ssn = ('x')`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "national char literal", sql: `SELECT id FROM patients WHERE ssn = N'x'`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "pg_catalog qualified cast", sql: `SELECT id FROM patients WHERE ssn = 'x'::pg_catalog.text AND id = 2`,
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) AND id = 2`, searches: pSSN},
	{name: "negative integer", sql: `SELECT id FROM staff WHERE badge = -5`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>']))`, searches: sBadge},
	{name: "negative with space", sql: `SELECT id FROM staff WHERE badge = - 5 AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>'])) AND id = 1`, searches: sBadge},
	{name: "negative in parens", sql: `SELECT id FROM staff WHERE badge = -(5) AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>'])) AND id = 1`, searches: sBadge},
	{name: "double negative", sql: `SELECT id FROM staff WHERE badge = - -7 AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:7>'])) AND id = 1`, searches: sBadge},
	{name: "negative of cast", sql: `SELECT id FROM staff WHERE badge = -5::int AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>'])) AND id = 1`, searches: sBadge},
	{name: "cast of negative", sql: `SELECT id FROM staff WHERE badge = (-5)::int4 AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:-5>'])) AND id = 1`, searches: sBadge},
	{name: "unary plus", sql: `SELECT id FROM staff WHERE badge = +5 AND id = 1`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:5>'])) AND id = 1`, searches: sBadge},
	{name: "float constant", sql: `SELECT id FROM staff WHERE badge = 1.5e3`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:1.5e3>']))`, searches: sBadge},
	{name: "string for integer column", sql: `SELECT id FROM staff WHERE badge = '42'::bigint`,
		want: `SELECT id FROM "public".staff WHERE (badge = ANY(ARRAY['<cands:public.staff.badge:42>']))`, searches: sBadge},
	{name: "quoted identifiers", sql: `SELECT "ssn" FROM "patients" WHERE "ssn" = 'x'`,
		want: `SELECT "ssn" FROM "public"."patients" WHERE ("ssn" = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "mixed case folds", sql: `SELECT SSN FROM Public.PATIENTS WHERE Ssn = 'x'`,
		want: `SELECT SSN FROM Public.PATIENTS WHERE (Ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "quoted Patients is another relation", sql: `SELECT * FROM "Patients" WHERE ssn LIKE 'x%' ORDER BY ssn`},
	{name: "other schema is plain", sql: `SELECT * FROM other.patients WHERE ssn LIKE 'x%' ORDER BY ssn`},
	{name: "search_path shadows", sql: `SELECT * FROM "other".patients WHERE ssn LIKE 'x%'`,
		env: func(e *Env) { e.SearchPath = []string{"other", "public"} }},
	{name: "search_path picks archive", sql: `SELECT * FROM patients WHERE ssn = 'x'`,
		env:  func(e *Env) { e.SearchPath = []string{"archive", "public"} },
		want: `SELECT * FROM "archive".patients WHERE (ssn = ANY(ARRAY['<cands:archive.patients.ssn:x>']))`, searches: "archive.patients.ssn", outputs: "archive.patients.ssn"},
	{name: "search_path without the schema", sql: `SELECT * FROM "other".patients WHERE ssn LIKE 'x%'`,
		env: func(e *Env) { e.SearchPath = []string{"elsewhere"} }},
	{name: "qualified pg_temp table is plain", sql: `SELECT * FROM pg_temp.patients WHERE ssn LIKE 'x%'`},
	{name: "pg_temp on the path is not searched for encrypted names", sql: `SELECT id FROM patients WHERE ssn = 'x'`,
		env:  func(e *Env) { e.SearchPath = []string{"pg_temp", "public"} },
		want: `SELECT id FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "name found nowhere is pinned to the first schema", sql: `SELECT id FROM patients`,
		env:  func(e *Env) { e.SearchPath = []string{"pg_temp", "app", "elsewhere"} },
		want: `SELECT id FROM "app".patients`},
	{name: "CTE named like a policy table", sql: `WITH patients AS (SELECT 'a' AS ssn) SELECT * FROM patients WHERE ssn LIKE 'x%'`},
	{name: "CTE carries ciphertext", sql: `WITH x AS (SELECT ssn AS s FROM patients) SELECT s FROM x WHERE s = 'q'`,
		want: `WITH x AS (SELECT ssn AS s FROM "public".patients) SELECT s FROM x WHERE (s = ANY(ARRAY['<cands:public.patients.ssn:q>']))`, searches: pSSN, outputs: pSSN},
	{name: "CTE column aliases", sql: `WITH x (a, b) AS (SELECT name, ssn FROM patients) SELECT a FROM x WHERE b = 'q'`,
		want: `WITH x (a, b) AS (SELECT name, ssn FROM "public".patients) SELECT a FROM x WHERE (b = ANY(ARRAY['<cands:public.patients.ssn:q>']))`, searches: pSSN},
	{name: "subquery column aliases", sql: `SELECT t.a FROM (SELECT ssn, name FROM patients) AS t(a, b) WHERE t.a = 'x'`,
		want: `SELECT t.a FROM (SELECT ssn, name FROM "public".patients) AS t(a, b) WHERE (t.a = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "subquery star", sql: `SELECT s.ssn FROM (SELECT * FROM "public".patients) s WHERE s.ssn = $1`,
		want:   `SELECT s.ssn FROM (SELECT * FROM "public".patients) s WHERE (s.ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN, outputs: pSSN},
	{name: "correlated subquery", sql: `SELECT id FROM visits v WHERE EXISTS (SELECT 1 FROM patients p WHERE p.ssn = v.patient_ssn AND p.ssn = 'x')`,
		want: `SELECT id FROM "public".visits v WHERE EXISTS (SELECT 1 FROM "public".patients p WHERE p.ssn = v.patient_ssn AND (p.ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])))`, searches: pSSN},
	{name: "correlated unqualified outer column", sql: `SELECT id FROM visits WHERE EXISTS (SELECT 1 FROM other.patients o WHERE patient_ssn = 'x')`,
		want: `SELECT id FROM "public".visits WHERE EXISTS (SELECT 1 FROM other.patients o WHERE (patient_ssn = ANY(ARRAY['<cands:public.visits.patient_ssn:x>'])))`, searches: vSSN},
	{name: "join on shared deterministic key", sql: `SELECT p.name, v.note FROM "public".patients p JOIN "public".visits v ON p.ssn = v.patient_ssn`, outputs: vNote},
	{name: "join using shared key", sql: `SELECT v.id FROM patients JOIN (SELECT patient_ssn AS ssn, id FROM visits) v USING (ssn) WHERE ssn = 'a'`,
		want: `SELECT v.id FROM "public".patients JOIN (SELECT patient_ssn AS ssn, id FROM "public".visits) v USING (ssn) WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:a>']))`, searches: pSSN},
	{name: "left join and schema-qualified column", sql: `SELECT public.patients.ssn FROM "public".patients LEFT JOIN "public".visits ON public.patients.ssn = visits.patient_ssn`, outputs: pSSN},
	{name: "in subquery of same key", sql: `SELECT id FROM "public".patients WHERE ssn IN (SELECT patient_ssn FROM "public".visits)`},
	{name: "any subquery", sql: `SELECT id FROM "public".patients WHERE ssn = ANY (SELECT patient_ssn FROM "public".visits WHERE id = $1)`},
	{name: "not in subquery", sql: `SELECT id FROM "public".patients WHERE ssn NOT IN (SELECT patient_ssn FROM "public".visits)`},
	{name: "in subquery of constants", sql: `SELECT id FROM patients WHERE ssn IN (SELECT 'x' UNION ALL SELECT $1)`,
		want: `SELECT id FROM "public".patients WHERE ssn IN (SELECT '<enc:public.patients.ssn:x>' UNION ALL SELECT $1)`, params: "$1=" + pSSN + "/r", searches: pSSN},
	{name: "scalar subquery compared", sql: `SELECT id FROM "public".patients WHERE ssn = (SELECT patient_ssn FROM "public".visits LIMIT 1)`},
	{name: "literal in subquery compared with subquery column", sql: `SELECT id FROM visits WHERE 'x' IN (SELECT ssn FROM patients)`,
		want: `SELECT id FROM "public".visits WHERE '<enc:public.patients.ssn:x>' IN (SELECT ssn FROM "public".patients)`, searches: pSSN},
	{name: "count forms", sql: `SELECT count(ssn), count(DISTINCT ssn), count(diagnosis), count(*) FROM "public".patients`},
	{name: "group by having", sql: `SELECT ssn, count(*) FROM patients GROUP BY ssn HAVING count(*) > 1 AND ssn <> 'x'`,
		want: `SELECT ssn, count(*) FROM "public".patients GROUP BY ssn HAVING count(*) > 1 AND (ssn <> ALL(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "group by position", sql: `SELECT ssn, count(*) FROM "public".patients GROUP BY 1`, outputs: pSSN},
	{name: "grouping sets", sql: `SELECT ssn, name, count(*) FROM "public".patients GROUP BY GROUPING SETS ((ssn), (name), ())`, outputs: pSSN},
	{name: "distinct", sql: `SELECT DISTINCT ssn FROM "public".patients`, outputs: pSSN},
	{name: "distinct on", sql: `SELECT DISTINCT ON (ssn) ssn, name FROM "public".patients ORDER BY ssn IS NULL, name`, outputs: pSSN},
	{name: "window partition", sql: `SELECT row_number() OVER (PARTITION BY ssn ORDER BY id), count(*) OVER w FROM "public".patients WINDOW w AS (PARTITION BY ssn)`},
	{name: "union all same key", sql: `SELECT ssn FROM "public".patients UNION ALL SELECT patient_ssn FROM "public".visits`, outputs: pSSN + "," + vSSN},
	{name: "union with null", sql: `SELECT diagnosis FROM "public".patients UNION ALL SELECT NULL`, outputs: pDiag},
	{name: "union distinct deterministic", sql: `SELECT ssn FROM patients UNION SELECT ssn FROM patients WHERE ssn = 'x'`,
		want: `SELECT ssn FROM "public".patients UNION SELECT ssn FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "intersect", sql: `SELECT ssn FROM "public".patients INTERSECT SELECT patient_ssn FROM "public".visits`, outputs: pSSN + "," + vSSN},
	{name: "limit offset params", sql: `SELECT name FROM "public".patients WHERE ssn = $3 LIMIT $1 OFFSET $2`,
		want:   `SELECT name FROM "public".patients WHERE (ssn = ANY(ARRAY[$4, $5, $6, $7, $8, $9, $10, $11]::bytea[])) LIMIT $1 OFFSET $2`,
		params: "$1=-,$2=-,$3=" + pSSN + "/r,$4..$11=" + pSSN + "/c$3", searches: pSSN},
	{name: "star outputs", sql: `SELECT * FROM "public".patients`, outputs: pAll},
	{name: "qualified star", sql: `SELECT v.* FROM "public".patients p JOIN "public".visits v ON v.patient_ssn = p.ssn`, outputs: vNote + "," + vSSN},
	{name: "table statement", sql: `TABLE "public".patients`, outputs: pAll},
	{name: "view", sql: `SELECT * FROM patient_names WHERE ssn = 'x'`,
		want: `SELECT * FROM "public".patient_names WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN, outputs: pSSN},
	{name: "lateral", sql: `SELECT x.note FROM "public".patients p, LATERAL (SELECT note FROM "public".visits v WHERE v.patient_ssn = p.ssn) x`, outputs: vNote},
	{name: "case when predicate", sql: `SELECT CASE WHEN ssn = 'x' THEN 1 ELSE 0 END FROM patients`,
		want: `SELECT CASE WHEN (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) THEN 1 ELSE 0 END FROM "public".patients`, searches: pSSN},
	{name: "row comparison", sql: `SELECT id FROM patients WHERE (ssn, name) = ('x', 'y')`,
		want: `SELECT id FROM "public".patients WHERE (ssn, name) = ('<enc:public.patients.ssn:x>', 'y')`, searches: pSSN},
	{name: "row in list", sql: `SELECT id FROM patients WHERE (id, ssn) IN ((1, 'a'), (2, $1))`,
		want: `SELECT id FROM "public".patients WHERE (id, ssn) IN ((1, '<enc:public.patients.ssn:a>'), (2, $1))`, params: "$1=" + pSSN + "/r", searches: pSSN},
	{name: "values", sql: `VALUES (1, 'a'), (2, 'b')`},
	{name: "for update", sql: `SELECT id FROM patients p WHERE ssn = 'x' FOR UPDATE OF p`,
		want: `SELECT id FROM "public".patients p WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) FOR UPDATE OF p`, searches: pSSN},
	{name: "literal repeated in IN over two interchangeable columns", sql: `SELECT 1 FROM patients p, visits v WHERE 'x' IN (p.ssn, v.patient_ssn)`,
		want: `SELECT 1 FROM "public".patients p, "public".visits v WHERE '<enc:public.patients.ssn:x>' IN (p.ssn, v.patient_ssn)`, searches: pSSN + "," + vSSN},
	{name: "param for two interchangeable columns", sql: `SELECT 1 FROM "public".patients p, "public".visits v WHERE p.ssn = $1 AND v.patient_ssn = $1`,
		want:   `SELECT 1 FROM "public".patients p, "public".visits v WHERE (p.ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) AND (v.patient_ssn = ANY(ARRAY[$10, $11, $12, $13, $14, $15, $16, $17]::bytea[]))`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1,$10..$17=" + vSSN + "/c$1", searches: pSSN + "," + vSSN},
	{name: "recursive CTE", sql: `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT p.name FROM r, patients p WHERE p.ssn = 'x'`,
		want: `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT p.name FROM r, "public".patients p WHERE (p.ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "typed null compared", sql: `SELECT id FROM patients WHERE ssn IS NOT DISTINCT FROM NULL::varchar`,
		want: `SELECT id FROM "public".patients WHERE ssn IS NOT DISTINCT FROM NULL`},
	{name: "function in FROM", sql: `SELECT p.id FROM patients p, generate_series(1, 3) g WHERE p.ssn = 'x' AND g = p.id`,
		want: `SELECT p.id FROM "public".patients p, generate_series(1, 3) g WHERE (p.ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])) AND g = p.id`, searches: pSSN},
	{name: "view update", sql: `UPDATE patient_names SET ssn = 'n' WHERE name = 'a'`, kind: KindUpdate,
		want: `UPDATE "public".patient_names SET ssn = '<encw:public.patients.ssn:n>' WHERE name = 'a'`, writes: pSSN},
	{name: "unknown column list still outputs", sql: `SELECT * FROM legacy WHERE secret = 'x'`,
		want: `SELECT * FROM "public".legacy WHERE (secret = ANY(ARRAY['<cands:public.legacy.secret:x>']))`, searches: "public.legacy.secret", outputs: "public.legacy.secret"},
	{name: "plain query fast path", sql: `SELECT a, b FROM t WHERE c LIKE 'x' ORDER BY d`},
	{name: "plain query with unrelated ssn column", sql: `SELECT ssn FROM people WHERE ssn LIKE '1%' ORDER BY ssn`},
	{name: "functions on plain columns", sql: `SELECT lower(name), coalesce(name, 'x') FROM "public".patients WHERE name LIKE 'a%' ORDER BY name`},
	{name: "exists with star", sql: `SELECT 1 WHERE EXISTS (SELECT * FROM patients WHERE ssn = 'x')`,
		want: `SELECT 1 WHERE EXISTS (SELECT * FROM "public".patients WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:x>'])))`, searches: pSSN},
	{name: "data-modifying CTE", sql: `WITH ins AS (INSERT INTO patients (ssn) VALUES ('x') RETURNING ssn, id) SELECT * FROM ins`,
		want: `WITH ins AS (INSERT INTO "public".patients (ssn) VALUES ('<encw:public.patients.ssn:x>') RETURNING ssn, id) SELECT * FROM ins`, writes: pSSN, outputs: pSSN},
	{name: "cte used by delete", sql: `WITH d AS (DELETE FROM visits WHERE patient_ssn = 'x' RETURNING patient_ssn) SELECT count(*) FROM d`,
		want: `WITH d AS (DELETE FROM "public".visits WHERE (patient_ssn = ANY(ARRAY['<cands:public.visits.patient_ssn:x>'])) RETURNING patient_ssn) SELECT count(*) FROM d`, searches: vSSN},
}

var writeCases = []acceptCase{
	{name: "insert multi-row", kind: KindInsert,
		sql:    `INSERT INTO patients (id, name, ssn, diagnosis, dob) VALUES (1, 'a', 's1', 'flu', DATE '2020-01-01'), (2, 'b', $1, $2::text, '2020-01-02'::date), (3, 'c', NULL, DEFAULT, NULL)`,
		want:   `INSERT INTO "public".patients (id, name, ssn, diagnosis, dob) VALUES (1, 'a', '<encw:public.patients.ssn:s1>', '<encw:public.patients.diagnosis:flu>', '<encw:public.patients.dob:2020-01-01>'), (2, 'b', $1, $2, '<encw:public.patients.dob:2020-01-02>'), (3, 'c', NULL, DEFAULT, NULL)`,
		params: "$1=" + pSSN + "/w,$2=" + pDiag + "/w", writes: pAll},
	{name: "insert without column list", kind: KindInsert, sql: `INSERT INTO patients VALUES (1, 'a', 'b')`,
		want: `INSERT INTO "public".patients ("id", "name", "ssn") VALUES (1, 'a', '<encw:public.patients.ssn:b>')`, writes: pSSN},
	{name: "insert without column list with alias", kind: KindInsert, sql: `INSERT INTO public.patients AS p VALUES (1, 'a', $1) ON CONFLICT DO NOTHING`,
		want: `INSERT INTO public.patients AS p ("id", "name", "ssn") VALUES (1, 'a', $1) ON CONFLICT DO NOTHING`, params: "$1=" + pSSN + "/w", writes: pSSN},
	{name: "insert timestamp literal for date", kind: KindInsert, sql: `INSERT INTO patients (dob) VALUES (TIMESTAMP '2020-01-01 00:00')`,
		want: `INSERT INTO "public".patients (dob) VALUES ('<encw:public.patients.dob:2020-01-01 00:00>')`, writes: pDOB},
	{name: "insert default values", kind: KindInsert, sql: `INSERT INTO "public".patients DEFAULT VALUES RETURNING id`},
	{name: "insert on conflict do update", kind: KindInsert,
		sql:    `INSERT INTO patients (ssn, diagnosis) VALUES ('s', 'd') ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis, name = 'n', ssn = $1 WHERE patients.ssn = 'w'`,
		want:   `INSERT INTO "public".patients (ssn, diagnosis) VALUES ('<encw:public.patients.ssn:s>', '<encw:public.patients.diagnosis:d>') ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis, name = 'n', ssn = $1 WHERE (patients.ssn = ANY(ARRAY['<cands:public.patients.ssn:w>']))`,
		params: "$1=" + pSSN + "/w", writes: pDiag + "," + pSSN, searches: pSSN},
	{name: "insert on conflict constraint", kind: KindInsert, sql: `INSERT INTO "public".patients AS p (ssn) VALUES ($1) ON CONFLICT ON CONSTRAINT pk DO UPDATE SET ssn = EXCLUDED.ssn RETURNING p.ssn`,
		params: "$1=" + pSSN + "/w", writes: pSSN, outputs: pSSN},
	{name: "insert select same key", kind: KindInsert, sql: `INSERT INTO "public".patients (id, ssn) SELECT id, patient_ssn FROM "public".visits WHERE note IS NOT NULL`, writes: pSSN},
	{name: "insert select constants", kind: KindInsert, sql: `INSERT INTO patients (ssn, name) SELECT 'x', name FROM other.patients`,
		want: `INSERT INTO "public".patients (ssn, name) SELECT '<encw:public.patients.ssn:x>', name FROM other.patients`, writes: pSSN},
	{name: "insert select union of constants", kind: KindInsert, sql: `INSERT INTO patients (ssn) SELECT 'a' UNION ALL SELECT $1`,
		want: `INSERT INTO "public".patients (ssn) SELECT '<encw:public.patients.ssn:a>' UNION ALL SELECT $1`, params: "$1=" + pSSN + "/w", writes: pSSN},
	{name: "insert returning", kind: KindInsert, sql: `INSERT INTO patients (ssn) VALUES ('x') RETURNING id, ssn, diagnosis`,
		want: `INSERT INTO "public".patients (ssn) VALUES ('<encw:public.patients.ssn:x>') RETURNING id, ssn, diagnosis`, writes: pSSN, outputs: pDiag + "," + pSSN},
	{name: "insert into view", kind: KindInsert, sql: `INSERT INTO patient_names (name, ssn) VALUES ('n', 's')`,
		want: `INSERT INTO "public".patient_names (name, ssn) VALUES ('n', '<encw:public.patients.ssn:s>')`, writes: pSSN},
	{name: "insert into plain table", kind: KindInsert, sql: `INSERT INTO other.patients (ssn) VALUES ('plain ok')`},
	{name: "insert copies randomized same column", kind: KindInsert, sql: `INSERT INTO "public".patients (diagnosis) SELECT diagnosis FROM "public".patients WHERE id = 1`, writes: pDiag},
	{name: "insert with scalar subquery value", kind: KindInsert, sql: `INSERT INTO "public".patients (ssn) VALUES ((SELECT patient_ssn FROM "public".visits LIMIT 1))`, writes: pSSN},
	{name: "update literal param null default", kind: KindUpdate,
		sql:    `UPDATE patients SET ssn = 'a', diagnosis = $1, dob = NULL, name = DEFAULT WHERE id = $2`,
		want:   `UPDATE "public".patients SET ssn = '<encw:public.patients.ssn:a>', diagnosis = $1, dob = NULL, name = DEFAULT WHERE id = $2`,
		params: "$1=" + pDiag + "/w", writes: pAll},
	{name: "update same column copy", kind: KindUpdate, sql: `UPDATE "public".patients SET diagnosis = diagnosis, ssn = ssn`, writes: pDiag + "," + pSSN},
	{name: "update multi-column set", kind: KindUpdate, sql: `UPDATE patients SET (ssn, name) = ('a', 'b') WHERE ssn = 'c'`,
		want: `UPDATE "public".patients SET (ssn, name) = ('<encw:public.patients.ssn:a>', 'b') WHERE (ssn = ANY(ARRAY['<cands:public.patients.ssn:c>']))`, writes: pSSN, searches: pSSN},
	{name: "update multi-column from subquery", kind: KindUpdate, sql: `UPDATE "public".patients p SET (ssn, name) = (SELECT v.patient_ssn, 'n' FROM "public".visits v WHERE v.id = p.id)`, writes: pSSN},
	{name: "update multi-column with columns", kind: KindUpdate, sql: `UPDATE "public".patients p SET (name, ssn) = ('x', v.patient_ssn) FROM "public".visits v WHERE v.id = p.id`,
		writes: pSSN},
	{name: "update multi-column subquery with constant", kind: KindUpdate, sql: `UPDATE patients SET (ssn, diagnosis, name) = (SELECT 'a', diagnosis, name FROM patients WHERE id = 2) WHERE id = 1`,
		want: `UPDATE "public".patients SET (ssn, diagnosis, name) = (SELECT '<encw:public.patients.ssn:a>', diagnosis, name FROM "public".patients WHERE id = 2) WHERE id = 1`, writes: pDiag + "," + pSSN},
	{name: "update from", kind: KindUpdate, sql: `UPDATE "public".patients SET name = 'x' FROM "public".visits v WHERE patients.ssn = v.patient_ssn AND v.patient_ssn = $1 RETURNING patients.diagnosis`,
		want:   `UPDATE "public".patients SET name = 'x' FROM "public".visits v WHERE patients.ssn = v.patient_ssn AND (v.patient_ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) RETURNING patients.diagnosis`,
		params: "$1=" + vSSN + "/r,$2..$9=" + vSSN + "/c$1", searches: vSSN, outputs: pDiag},
	{name: "update where current of", kind: KindUpdate, sql: `UPDATE patients SET ssn = 'x' WHERE CURRENT OF c`,
		want: `UPDATE "public".patients SET ssn = '<encw:public.patients.ssn:x>' WHERE CURRENT OF c`, writes: pSSN},
	{name: "param written and searched", kind: KindUpdate, sql: `UPDATE "public".patients SET ssn = $1 WHERE ssn = $1`,
		want:   `UPDATE "public".patients SET ssn = $1 WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[]))`,
		params: "$1=" + pSSN + "/w,$2..$9=" + pSSN + "/c$1", writes: pSSN, searches: pSSN},
	{name: "typed nulls lose their cast", kind: KindInsert, sql: `INSERT INTO patients (ssn, diagnosis, name) VALUES (NULL::text, CAST(NULL AS text), NULL::text)`,
		want: `INSERT INTO "public".patients (ssn, diagnosis, name) VALUES (NULL, NULL, NULL::text)`, writes: pDiag + "," + pSSN},
	{name: "delete using", kind: KindDelete, sql: `DELETE FROM visits USING patients p WHERE visits.patient_ssn = p.ssn AND p.ssn = 'x'`,
		want: `DELETE FROM "public".visits USING "public".patients p WHERE visits.patient_ssn = p.ssn AND (p.ssn = ANY(ARRAY['<cands:public.patients.ssn:x>']))`, searches: pSSN},
	{name: "delete returning", kind: KindDelete, sql: `DELETE FROM "public".patients WHERE ssn = $1 RETURNING diagnosis`,
		want:   `DELETE FROM "public".patients WHERE (ssn = ANY(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::bytea[])) RETURNING diagnosis`,
		params: "$1=" + pSSN + "/r,$2..$9=" + pSSN + "/c$1", searches: pSSN, outputs: pDiag},
}

func TestAnalyzeAccepts(t *testing.T) {
	for _, group := range [][]acceptCase{selectCases, writeCases} {
		for _, tc := range group {
			t.Run(tc.name, func(t *testing.T) { runAccept(t, tc) })
		}
	}
}

func runAccept(t *testing.T, tc acceptCase) {
	t.Helper()
	env := testEnv()
	if tc.env != nil {
		tc.env(env)
	}
	p := mustAnalyze(t, tc.sql, env)
	got := mustRewrite(t, p)
	want := tc.want
	if want == "" {
		want = tc.sql
	}
	if got != want {
		t.Errorf("rewrite\n got: %s\nwant: %s", got, want)
	}
	if g := paramNames(p.Params); g != tc.params {
		t.Errorf("params = %q, want %q", g, tc.params)
	}
	if len(p.Statements) == 0 {
		t.Fatal("no statements")
	}
	st := p.Statements[0]
	for _, c := range []struct{ what, got, want string }{
		{"writes", ruleNames(st.Writes), tc.writes},
		{"searches", ruleNames(st.Searches), tc.searches},
		{"outputs", ruleNames(st.Outputs), tc.outputs},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	wantKind := tc.kind
	if wantKind == KindOther && strings.HasPrefix(strings.ToUpper(strings.TrimSpace(tc.sql)), "SELECT") ||
		strings.HasPrefix(tc.sql, "WITH") || strings.HasPrefix(tc.sql, "VALUES") || strings.HasPrefix(tc.sql, "TABLE") {
		if wantKind == KindOther {
			wantKind = KindSelect
		}
	}
	if st.Kind != wantKind {
		t.Errorf("kind = %d, want %d", st.Kind, wantKind)
	}
}
