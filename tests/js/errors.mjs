// Error fields as NeonDbError carries them; auth failures; aborting a request.
import { assert, checks, databaseUrl, neon, sql, unique } from './_setup.mjs';

await checks({
  async 'column does not exist: code, position, severity'() {
    await assert.rejects(sql`SELECT nosuch_column`, (err) => {
      assert.equal(err.name, 'NeonDbError');
      assert.equal(err.message, 'column "nosuch_column" does not exist');
      assert.equal(err.code, '42703');
      assert.equal(err.position, '8');
      assert.equal(err.severity, 'ERROR');
      assert.equal(typeof err.line, 'string');
      return true;
    });
  },

  async 'unique violation: detail, table, constraint'() {
    const table = unique('js_err');
    await sql.query(`CREATE TABLE ${table} (n int CONSTRAINT ${table}_pk PRIMARY KEY)`);
    await sql.query(`INSERT INTO ${table} VALUES (1)`);
    await assert.rejects(sql.query(`INSERT INTO ${table} VALUES ($1)`, [1]), (err) => {
      assert.equal(err.code, '23505');
      assert.equal(err.detail, 'Key (n)=(1) already exists.');
      assert.equal(err.table, table);
      assert.equal(err.constraint, `${table}_pk`);
      assert.equal(err.schema, 'public');
      return true;
    });
    await sql.query(`DROP TABLE ${table}`);
  },

  async 'wrong password'() {
    const url = new URL(databaseUrl);
    url.password = 'wrong-password';
    await assert.rejects(neon(url.toString())`SELECT 1`, (err) => {
      assert.match(err.message, /password authentication failed/);
      assert.equal(err.code, '28P01');
      return true;
    });
  },

  async 'abort through fetchOptions.signal cancels the query'() {
    const marker = unique('abort');
    const controller = new AbortController();
    const pending = sql.query(`SELECT pg_sleep(5), '${marker}'`, [], { fetchOptions: { signal: controller.signal } });
    setTimeout(() => controller.abort(), 300);
    await assert.rejects(pending, (err) => {
      assert.match(String(err.message) + String(err.sourceError?.message), /abort/i);
      return true;
    });
    const deadline = Date.now() + 2000;
    for (;;) {
      const [{ n }] = await sql.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
        [`%${marker}%`],
      );
      if (n === 0) break;
      assert.ok(Date.now() < deadline, 'the aborted query is still running');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
});
