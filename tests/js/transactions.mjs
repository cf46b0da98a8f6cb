// sql.transaction(): arrays and functions of queries, options, read-only, rollback.
import { assert, checks, sql, unique } from './_setup.mjs';

const table = unique('js_tx');

await checks({
  async 'array of queries'() {
    const [a, b] = await sql.transaction([sql`SELECT 1 AS x`, sql`SELECT ${2}::int AS y`]);
    assert.deepEqual(a, [{ x: 1 }]);
    assert.deepEqual(b, [{ y: 2 }]);
  },

  async 'function form with txn.query'() {
    const [one, text] = await sql.transaction((txn) => [txn`SELECT 1 AS one`, txn.query('SELECT $1::text AS t', ['x'])]);
    assert.deepEqual(one, [{ one: 1 }]);
    assert.deepEqual(text, [{ t: 'x' }]);
  },

  async 'isolation level, read only, deferrable'() {
    const [iso, ro, def] = await sql.transaction(
      [sql`SHOW transaction_isolation`, sql`SHOW transaction_read_only`, sql`SHOW transaction_deferrable`],
      { isolationLevel: 'Serializable', readOnly: true, deferrable: true },
    );
    assert.deepEqual([iso[0].transaction_isolation, ro[0].transaction_read_only, def[0].transaction_deferrable], ['serializable', 'on', 'on']);
    const [level] = await sql.transaction([sql`SHOW transaction_isolation`], { isolationLevel: 'RepeatableRead' });
    assert.equal(level[0].transaction_isolation, 'repeatable read');
  },

  async 'read-only transaction rejects a write'() {
    await sql.query(`CREATE TABLE ${table} (n int PRIMARY KEY)`);
    await assert.rejects(sql.transaction([sql.query(`INSERT INTO ${table} VALUES (1)`)], { readOnly: true }), (err) => {
      assert.equal(err.code, '25006');
      return true;
    });
  },

  async 'an error rolls the whole transaction back'() {
    await assert.rejects(
      sql.transaction([
        sql.query(`INSERT INTO ${table} VALUES ($1)`, [1]),
        sql.query(`INSERT INTO ${table} VALUES ($1)`, [1]),
      ]),
      (err) => {
        assert.equal(err.code, '23505');
        assert.match(err.detail, /already exists/);
        return true;
      },
    );
    assert.deepEqual(await sql.query(`SELECT count(*)::int AS c FROM ${table}`), [{ c: 0 }]);
    const [inserted, counted] = await sql.transaction([
      sql.query(`INSERT INTO ${table} VALUES (1), (2) RETURNING n`),
      sql.query(`SELECT count(*)::int AS c FROM ${table}`),
    ]);
    assert.deepEqual(inserted, [{ n: 1 }, { n: 2 }]);
    assert.deepEqual(counted, [{ c: 2 }]);
  },

  async 'per-query and transaction-level result options'() {
    const [r1, r2] = await sql.transaction([sql`SELECT 1 AS a`, sql`SELECT 2 AS b`], { arrayMode: true, fullResults: true });
    assert.deepEqual(r1.rows, [[1]]);
    assert.equal(r2.rowAsArray, true);
    assert.equal(r2.command, 'SELECT');
  },

  async 'empty transaction'() {
    assert.deepEqual(await sql.transaction([]), []);
  },

  async 'cleanup'() {
    await sql.query(`DROP TABLE ${table}`);
  },
});
