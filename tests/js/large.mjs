// A 50,000-row result, and a response over the limit.
import { assert, checks, sql } from './_setup.mjs';
import { createHash } from 'node:crypto';

await checks({
  async '50,000 rows'() {
    const started = Date.now();
    const rows = await sql`SELECT g AS n, md5(g::text) AS h, g % 2 = 0 AS even FROM generate_series(1, 50000) g`;
    assert.equal(rows.length, 50000);
    assert.deepEqual(rows[0], { n: 1, h: createHash('md5').update('1').digest('hex'), even: false });
    assert.deepEqual(rows[49999], { n: 50000, h: createHash('md5').update('50000').digest('hex'), even: true });
    console.log(`  50,000 rows in ${Date.now() - started} ms`);
  },

  async 'a response over 10 MiB is a server error 507'() {
    await assert.rejects(sql`SELECT repeat('x', 1000) AS x FROM generate_series(1, 20000)`, (err) => {
      assert.match(err.message, /HTTP status 507/);
      assert.match(err.message, /response is too large/);
      return true;
    });
  },
});
