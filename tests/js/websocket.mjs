// Client and Pool over WebSocket through neon_proxy's auth mode (neonConfig.wsProxy, ws://).
import { assert, checks, databaseUrl, serverless, unique } from './_setup.mjs';
const { default: ws } = await import(process.env.NEON_WS_MODULE);

const { Client, Pool, neonConfig } = serverless;
const wsProxy = process.env.NEON_WS_PROXY;
if (!wsProxy) throw new Error('NEON_WS_PROXY must be set');
neonConfig.webSocketConstructor = ws;
neonConfig.wsProxy = wsProxy;
neonConfig.useSecureWebSocket = false;

function withPassword(url, password) {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

function withDatabase(url, database) {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function withClient(fn, { pipelineConnect = 'password', url = databaseUrl } = {}) {
  const client = new Client(url);
  client.neonConfig.pipelineConnect = pipelineConnect;
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

// Connecting (and the first query, which rides with a pipelined login) fails with Postgres's error.
async function loginFails(url, code, message) {
  for (const pipelineConnect of ['password', false]) {
    const client = new Client(url);
    client.neonConfig.pipelineConnect = pipelineConnect;
    client.on('error', () => {});
    await assert.rejects(
      (async () => {
        await client.connect();
        await client.query('SELECT 1');
      })(),
      (err) => {
        assert.equal(err.code, code, `pipelineConnect ${pipelineConnect}: ${err}`);
        assert.match(err.message, message);
        return true;
      },
    );
    await client.end().catch(() => {});
  }
}

await checks({
  async 'Client query with the default pipelined connect'() {
    await withClient(async (client) => {
      const { rows } = await client.query('SELECT $1::int + 1 AS n, current_user AS u', [41]);
      assert.equal(rows[0].n, 42);
      assert.equal(rows[0].u, new URL(databaseUrl).username);
    });
  },

  async 'Client query with pipelineConnect false'() {
    await withClient(async (client) => {
      const { rows } = await client.query('SELECT $1::text AS t', ['plain']);
      assert.deepEqual(rows, [{ t: 'plain' }]);
    }, { pipelineConnect: false });
  },

  async 'the first query rides with the pipelined login'() {
    const client = new Client(databaseUrl);
    const connected = client.connect();
    const result = client.query('SELECT 7 AS seven');
    await connected;
    assert.deepEqual((await result).rows, [{ seven: 7 }]);
    await client.end();
  },

  async 'BEGIN / COMMIT / ROLLBACK and savepoints on one connection'() {
    await withClient(async (client) => {
      const table = unique('ws_tx');
      await client.query(`CREATE TEMP TABLE ${table} (n int)`);
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} VALUES (1)`);
      await client.query('ROLLBACK');
      assert.equal((await client.query(`SELECT count(*)::int AS c FROM ${table}`)).rows[0].c, 0);
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} VALUES (2)`);
      await client.query('SAVEPOINT s');
      await client.query(`INSERT INTO ${table} VALUES (3)`);
      await client.query('ROLLBACK TO SAVEPOINT s');
      await client.query('COMMIT');
      assert.deepEqual((await client.query(`SELECT n FROM ${table} ORDER BY n`)).rows, [{ n: 2 }]);
      await assert.rejects(client.query('SELECT 1/0'), (err) => err.code === '22012');
      assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
    });
  },

  async 'LISTEN / NOTIFY between two connections'() {
    const listener = new Client(databaseUrl);
    await listener.connect();
    const channel = unique('ws_chan');
    const got = new Promise((resolve) => listener.on('notification', resolve));
    await listener.query(`LISTEN ${channel}`);
    await withClient(async (client) => {
      await client.query('SELECT pg_notify($1, $2)', [channel, 'hello over ws']);
    });
    const message = await got;
    assert.equal(message.channel, channel);
    assert.equal(message.payload, 'hello over ws');
    await listener.end();
  },

  async '50,000-row result'() {
    await withClient(async (client) => {
      const { rows } = await client.query('SELECT n, md5(n::text) AS h FROM generate_series(1, 50000) n');
      assert.equal(rows.length, 50000);
      assert.equal(rows[49999].n, 50000);
      assert.equal(rows.reduce((s, r) => s + r.n, 0), (50000 * 50001) / 2);
    });
  },

  async 'Pool under concurrent use'() {
    const pool = new Pool({ connectionString: databaseUrl, max: 5 });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => pool.query('SELECT $1::int * 2 AS d, pg_backend_pid() AS pid', [i])),
    );
    assert.deepEqual(results.map((r) => r.rows[0].d), Array.from({ length: 30 }, (_, i) => i * 2));
    assert.ok(new Set(results.map((r) => r.rows[0].pid)).size <= 5);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await pool.end();
  },

  async 'bad password, pipelined and not'() {
    await loginFails(withPassword(databaseUrl, 'definitely-wrong'), '28P01', /password authentication failed for user/);
  },

  async 'unknown database, pipelined and not'() {
    await loginFails(withDatabase(databaseUrl, 'no_such_database_ws'), '3D000', /database "no_such_database_ws" does not exist/);
  },

  async 'errors keep their fields and the connection goes on'() {
    await withClient(async (client) => {
      await assert.rejects(client.query('SELECT nosuch_column'), (err) => {
        assert.equal(err.code, '42703');
        assert.equal(err.position, '8');
        return true;
      });
      assert.equal((await client.query('SELECT 2 AS two')).rows[0].two, 2);
    });
  },
});
