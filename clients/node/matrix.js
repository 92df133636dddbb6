// node-postgres through pgcloak: one line per check, exit 1 when one fails.
// Run by proxy/clients_test.go (after `npm ci` here, which `make clients`
// does) with MATRIX_HOST, MATRIX_PORT, MATRIX_DB, MATRIX_USER,
// MATRIX_RESTRICTED_USER, MATRIX_TARGET (pgcloak | postgres) and MATRIX_SKIP
// (groups or checks to skip).
//
// node-postgres sends every parameter as text with an unspecified type
// (Dates as local time with offset, objects as JSON) and reads text results
// unless asked for binary ones.
'use strict';

const assert = require('node:assert/strict');
const { Readable } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const { Client, types } = require('pg');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');

const env = process.env;
const VIA_PGCLOAK = env.MATRIX_TARGET === 'pgcloak';
const SKIP = new Set((env.MATRIX_SKIP || '').split(',').filter(Boolean));

// Dates as PostgreSQL prints them, not JS Dates at local midnight.
types.setTypeParser(1082, (v) => v);

const BORN = '1969-07-20';
const SEEN = new Date('2024-03-10T12:34:56.789+05:30');
const REF = '6f1c0a52-8d7e-4a3b-9c1d-2e3f4a5b6c7d';
const NOTE = 'note héllo, "quoted"';
const DOC = { b: [true, null], a: 1 };

async function connect(user = env.MATRIX_USER) {
  const c = new Client({
    host: env.MATRIX_HOST, port: Number(env.MATRIX_PORT), database: env.MATRIX_DB,
    user, password: 'unused', ssl: false, connectionTimeoutMillis: 10000,
  });
  await c.connect();
  return c;
}

// withClient runs fn with a connection and closes it.
async function withClient(fn, user) {
  const c = await connect(user);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function expectState(what, state, fn) {
  try {
    await fn();
  } catch (e) {
    if (e.code !== state) throw new Error(`${what}: SQLSTATE ${e.code} (${e.message}), want ${state}`);
    return;
  }
  throw new Error(`${what}: no error, want SQLSTATE ${state}`);
}

async function rows(c, text, values) {
  return (await c.query({ text, values, rowMode: 'array' })).rows;
}

const checks = [];
const check = (group, name, fn, pgcloakOnly = false) => checks.push({ group, name, fn, pgcloakOnly });

// ---- core: what every application does ----

const INSERT_FULL = 'INSERT INTO people (name, ssn, note, born, seen_at, score, amount, visits, active, ref, doc) ' +
  'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)';

check('core', 'insert-params', () => withClient(async (c) => {
  const r = await c.query(INSERT_FULL, ['Ann', 'mxssn-111-22-3333', NOTE, BORN, SEEN, 98.6, '1234.50', 42, true, REF, DOC]);
  assert.equal(r.rowCount, 1, 'rows inserted');
}));

check('core', 'read-typed', () => withClient(async (c) => {
  const r = await c.query('SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people WHERE name = $1', ['Ann']);
  assert.equal(r.rows.length, 1, 'one row');
  assert.deepEqual(r.rows[0], {
    ssn: 'mxssn-111-22-3333', note: NOTE, born: BORN, seen_at: SEEN, score: 98.6, amount: '1234.50',
    visits: '42', active: true, ref: REF, doc: DOC,
  });
}));

check('core', 'result-types', () => withClient(async (c) => {
  const r = await c.query('SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people LIMIT 1');
  assert.deepEqual(r.fields.map((f) => `${f.name}:${f.dataTypeID}`),
    ['ssn:25', 'note:25', 'born:1082', 'seen_at:1184', 'score:701', 'amount:1700', 'visits:20', 'active:16', 'ref:2950', 'doc:3802']);
}));

check('core', 'binary-results', () => withClient(async (c) => {
  // Results in binary format, which node-postgres decodes for these types.
  // (Its binary float8 and timestamptz decoders are wrong against
  // PostgreSQL too, so those are left out.)
  const r = await c.query({
    text: 'SELECT ssn, note, visits, active FROM people WHERE ssn = $1', values: ['mxssn-111-22-3333'], binary: true,
  });
  assert.deepEqual(r.rows, [{ ssn: 'mxssn-111-22-3333', note: NOTE, visits: '42', active: true }]);
}));

check('core', 'equality-param', () => withClient(async (c) => {
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', ['mxssn-111-22-3333']), [['Ann']], 'by ssn');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', ['mxssn-000-00-0000']), [], 'no match');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE visits = $1', [42]), [['Ann']], 'by visits');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn IN ($1, $2)', ['mxssn-111-22-3333', 'mxssn-nobody']), [['Ann']], 'ssn IN');
}));

check('core', 'any-array-param', () => withClient(async (c) => {
  // node-postgres has no IN-list expansion: = ANY($1) with a JS array is
  // the idiom for "one of these".
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = ANY($1)', [['mxssn-111-22-3333', 'mxssn-nobody']]), [['Ann']], 'ssn = ANY(array)');
}));

check('core', 'nulls', () => withClient(async (c) => {
  await c.query(INSERT_FULL, ['Nil', null, null, null, null, null, null, null, null, null, undefined]);
  const got = await rows(c, 'SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people WHERE name = $1', ['Nil']);
  assert.deepEqual(got, [Array(10).fill(null)], 'all NULL');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE note IS NULL AND ssn IS NULL'), [['Nil']], 'IS NULL');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', [null]), [], '= NULL matches nothing');
}));

check('core', 'batch', () => withClient(async (c) => {
  // One multi-row INSERT, and a transaction of single ones.
  const values = [];
  const tuples = [];
  for (let i = 1; i <= 5; i++) {
    const n = values.length;
    tuples.push(`($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5})`);
    values.push(`b${i}`, `mxssn-b-${i}`, `note batch ${i}`, `1970-01-0${i}`, `${i}.25`);
  }
  const r = await c.query(`INSERT INTO people (name, ssn, note, born, amount) VALUES ${tuples.join(', ')}`, values);
  assert.equal(r.rowCount, 5, 'multi-row insert');
  await c.query('BEGIN');
  for (let i = 1; i <= 5; i++) {
    await c.query('INSERT INTO people (name, ssn, note, amount) VALUES ($1, $2, $3, $4)', [`t${i}`, `mxssn-t-${i}`, `note tx ${i}`, -i]);
  }
  await c.query('COMMIT');
  for (let i = 1; i <= 5; i++) {
    assert.deepEqual(await rows(c, 'SELECT name, note, born, amount FROM people WHERE ssn = $1', [`mxssn-b-${i}`]),
      [[`b${i}`, `note batch ${i}`, `1970-01-0${i}`, `${i}.25`]], `multi-row ${i}`);
    assert.deepEqual(await rows(c, 'SELECT name, note, amount FROM people WHERE ssn = $1', [`mxssn-t-${i}`]),
      [[`t${i}`, `note tx ${i}`, `${-i}`]], `transaction row ${i}`);
  }
}));

check('core', 'named-prepared', () => withClient(async (c) => {
  // A named statement is parsed once per connection, then only bound and
  // executed: eight inserts, sixteen selects.
  for (let i = 1; i <= 8; i++) {
    const r = await c.query({
      name: 'ins', text: 'INSERT INTO people (name, ssn, born, amount, visits, seen_at) VALUES ($1, $2, $3, $4, $5, $6)',
      values: [`p${i}`, `mxssn-p-${i}`, `${1969 + i}-07-20`, `-${i}.5`, 2000 + i, new Date(SEEN.getTime() + i * 3600e3)],
    });
    assert.equal(r.rowCount, 1, `insert ${i}`);
  }
  for (let round = 0; round < 2; round++) {
    for (let i = 1; i <= 8; i++) {
      const r = await c.query({ name: 'sel', text: 'SELECT name, born, amount, visits, seen_at FROM people WHERE ssn = $1', values: [`mxssn-p-${i}`] });
      assert.deepEqual(r.rows, [{ name: `p${i}`, born: `${1969 + i}-07-20`, amount: `-${i}.5`, visits: `${2000 + i}`, seen_at: new Date(SEEN.getTime() + i * 3600e3) }],
        `execution ${round * 8 + i}`);
    }
  }
}));

const COPY_IN = 'Cora,mxssn-copy-1,note from copy,1970-01-02,12.50\n' +
  '"Dee, Jr.",mxssn-copy-2,"note with ""quotes"", commas",2000-02-29,-0.001\n' +
  'Ed,mxssn-copy-3,,,\n';

check('core', 'copy', () => withClient(async (c) => {
  const into = c.query(copyFrom('COPY imports (name, ssn, note, born, amount) FROM STDIN (FORMAT csv)'));
  await pipeline(Readable.from([Buffer.from(COPY_IN)]), into);
  assert.equal(into.rowCount, 3, 'rows copied in');
  const chunks = [];
  const out = c.query(copyTo('COPY imports (name, ssn, note, born, amount) TO STDOUT (FORMAT csv)'));
  for await (const chunk of out) chunks.push(chunk);
  assert.equal(Buffer.concat(chunks).toString('utf8'), COPY_IN, 'copied out');
  assert.deepEqual(await rows(c, 'SELECT name, note, born, amount FROM imports WHERE ssn = $1', ['mxssn-copy-2']),
    [['Dee, Jr.', 'note with "quotes", commas', '2000-02-29', '-0.001']], 'row by ssn');
  assert.deepEqual(await rows(c, 'SELECT name, note, born, amount FROM imports WHERE ssn = $1', ['mxssn-copy-3']),
    [['Ed', null, null, null]], 'NULLs');
}));

check('core', 'refused-then-normal', () => withClient(async (c) => {
  await expectState('ORDER BY a randomized column', '0A000', () => c.query('SELECT name FROM people ORDER BY note'));
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', ['mxssn-111-22-3333']), [['Ann']], 'then a normal query');
  await expectState('LIKE on an encrypted column, named', '0A000',
    () => c.query({ name: 'like', text: 'SELECT name FROM people WHERE note LIKE $1', values: ['note%'] }));
  await c.query('BEGIN');
  await c.query('INSERT INTO people (name, ssn) VALUES ($1, $2)', ['RolledBack', 'mxssn-rolled-back']);
  await expectState('upper() in a transaction', '0A000', () => c.query('SELECT upper(note) FROM people'));
  await expectState('the transaction is aborted', '25P02', () => c.query('SELECT 1'));
  await c.query('ROLLBACK');
  assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', ['mxssn-rolled-back']), [], 'the insert is gone');
  assert.deepEqual(await rows(c, 'INSERT INTO people (name, ssn) VALUES ($1, $2) RETURNING name', ['AfterRefusal', 'mxssn-after-refusal']),
    [['AfterRefusal']], 'then a normal insert');
}), true);

check('core', 'restricted-role', async () => {
  await withClient(async (c) => {
    assert.deepEqual(await rows(c, 'SELECT name, ssn, note, born, amount, visits, doc FROM people WHERE ssn = $1', ['mxssn-111-22-3333']),
      [['Ann', 'mxssn-111-22-3333', null, null, null, null, null]], 'billing reads ssn, the rest is NULL');
    await expectState('billing may not write note', '42501',
      () => c.query('UPDATE people SET note = $1 WHERE ssn = $2', ['note by billing', 'mxssn-111-22-3333']));
    assert.deepEqual(await rows(c, 'SELECT name FROM people WHERE ssn = $1', ['mxssn-111-22-3333']), [['Ann']], 'then a normal query');
  }, env.MATRIX_RESTRICTED_USER);
  await withClient(async (c) => {
    assert.deepEqual(await rows(c, 'SELECT note FROM people WHERE ssn = $1', ['mxssn-111-22-3333']), [[NOTE]], 'doctor still reads the note');
  });
}, true);

async function main() {
  const n = { ok: 0, FAIL: 0, skip: 0 };
  for (const { group, name, fn, pgcloakOnly } of checks) {
    const full = `node/${group}/${name}`;
    if (SKIP.has(group) || SKIP.has(name) || SKIP.has(full)) {
      console.log(`skip ${full}`);
      n.skip++;
    } else if (pgcloakOnly && !VIA_PGCLOAK) {
      console.log(`skip ${full} (pgcloak only)`);
      n.skip++;
    } else {
      try {
        await fn();
        console.log(`ok   ${full}`);
        n.ok++;
      } catch (e) {
        const detail = e.code && !(e instanceof assert.AssertionError) ? `SQLSTATE ${e.code}: ${e.message}` : e.message;
        console.log(`FAIL ${full}: ${detail.replace(/\n/g, '\n     ')}`);
        n.FAIL++;
      }
    }
  }
  console.log(`node: ${n.ok} checks ok, ${n.FAIL} FAILED, ${n.skip} skipped`);
  return n.FAIL ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (e) => { console.log(`FAIL node: ${e.stack}`); process.exitCode = 1; });
