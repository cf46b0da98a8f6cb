// Single queries through neon(): typed params, row shapes, full results, tagged templates.
import { assert, checks, databaseUrl, neon, sql, unique } from './_setup.mjs';

await checks({
  async 'typed params and parsed cells'() {
    const [row] = await sql`SELECT ${1}::int AS i, ${2n}::int8 AS b, ${'x'} AS t, ${true}::bool AS f,
      ${null}::text AS n, ${'NULL'} AS s, ${1.5}::float8 AS d, ${'1.10'}::numeric AS m`;
    assert.deepEqual(row, { i: 1, b: '2', t: 'x', f: true, n: null, s: 'NULL', d: 1.5, m: '1.10' });
  },

  async 'untyped placeholder comes back as text'() {
    const [row] = await sql`SELECT ${1} AS v`;
    assert.equal(row.v, '1');
  },

  async 'bigint beyond 2^53 stays exact'() {
    const [row] = await sql`SELECT ${9007199254740993n}::int8 AS v, ${9007199254740993n}::int8 + 1 AS w`;
    assert.deepEqual(row, { v: '9007199254740993', w: '9007199254740994' });
  },

  async 'arrays both ways'() {
    const [row] = await sql`SELECT ${[1, 2, null]}::int[] AS a, ${['a "q"', 'b,c', 'x\\y']}::text[] AS t,
      ${[[1, 2], [3, 4]]}::int[] AS m`;
    assert.deepEqual(row, { a: [1, 2, null], t: ['a "q"', 'b,c', 'x\\y'], m: [[1, 2], [3, 4]] });
  },

  async 'dates, json and bytea'() {
    const when = new Date('2024-03-04T05:06:07.891Z');
    const bytes = Buffer.from([0, 1, 254, 255]);
    const [row] = await sql`SELECT ${when}::timestamptz AS ts, '2024-01-02'::date AS d,
      ${{ a: [1, 'x'], b: null }}::jsonb AS j, ${bytes} AS by`;
    assert.equal(row.ts.toISOString(), when.toISOString());
    assert.ok(row.d instanceof Date);
    assert.deepEqual(row.j, { a: [1, 'x'], b: null });
    assert.ok(Buffer.isBuffer(row.by));
    assert.deepEqual([...row.by], [0, 1, 254, 255]);
  },

  async '64 KiB Uint8Array parameter'() {
    const big = new Uint8Array(65536).map((_, i) => i % 251);
    const [row] = await sql`SELECT length(${big}) AS n, md5(${big}) AS h`;
    assert.equal(row.n, 65536);
    const { createHash } = await import('node:crypto');
    assert.equal(row.h, createHash('md5').update(big).digest('hex'));
  },

  async 'sql.query with params, arrayMode and fullResults'() {
    assert.deepEqual(await sql.query('SELECT $1::int + 1 AS n', [41]), [{ n: 42 }]);
    assert.deepEqual(await sql.query('SELECT 1 AS a, 2 AS b', [], { arrayMode: true }), [[1, 2]]);
    const full = await sql.query('SELECT 1 AS a', [], { fullResults: true });
    assert.equal(full.command, 'SELECT');
    assert.equal(full.rowCount, 1);
    assert.equal(full.fields[0].name, 'a');
    assert.equal(full.fields[0].dataTypeID, 23);
    assert.deepEqual(full.rows, [{ a: 1 }]);
    assert.equal(full.viaNeonFetch, true);
  },

  async 'neon()-level options'() {
    const sqlFull = neon(databaseUrl, { arrayMode: true, fullResults: true });
    const result = await sqlFull`SELECT 1 AS a, 'two' AS b`;
    assert.deepEqual(result.rows, [[1, 'two']]);
    assert.equal(result.rowAsArray, true);
  },

  async 'nested fragments and unsafe'() {
    const where = sql`WHERE n > ${2}`;
    assert.deepEqual(await sql`SELECT n FROM generate_series(1, 4) n ${where} ORDER BY n`, [{ n: 3 }, { n: 4 }]);
    assert.deepEqual(await sql`SELECT ${sql.unsafe('1 + 1')} AS two`, [{ two: 2 }]);
  },

  async 'command and rowCount for DDL and DML'() {
    const table = unique('js_t');
    const create = await sql.query(`CREATE TABLE ${table} (n int, e text)`, [], { fullResults: true });
    assert.equal(create.command, 'CREATE');
    assert.equal(create.rowCount, null);
    const insert = await sql.query(`INSERT INTO ${table} VALUES ($1, $2), ($3, $4) RETURNING n`, [1, 'a', 2, 'b'], { fullResults: true });
    assert.equal(insert.command, 'INSERT');
    assert.equal(insert.rowCount, 2);
    assert.deepEqual(insert.rows, [{ n: 1 }, { n: 2 }]);
    const update = await sql.query(`UPDATE ${table} SET n = n + 10`, [], { fullResults: true });
    assert.equal(update.rowCount, 2);
    const drop = await sql.query(`DROP TABLE ${table}`, [], { fullResults: true });
    assert.equal(drop.command, 'DROP');
    assert.equal(drop.rowCount, null);
  },

  async 'enum arrays and duplicate column names'() {
    const type = unique('mood');
    await sql.query(`CREATE TYPE ${type} AS ENUM ('happy', 'sad')`);
    const [row] = await sql.query(`SELECT ARRAY['sad', 'happy']::${type}[] AS moods, 1 AS x, 2 AS x`);
    assert.equal(row.moods, '{sad,happy}'); // an unknown array OID stays a string in pg-types
    assert.equal(row.x, 2);
    await sql.query(`DROP TYPE ${type}`);
  },
});
