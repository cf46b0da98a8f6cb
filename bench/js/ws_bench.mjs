// The JS driver's Client over WebSocket through neon_proxy, for bench/bench_ws_proxy.py.
//   node ws_bench.mjs latency N        -> {"us": [per-query wall µs, ...]}
//   node ws_bench.mjs load CLIENTS SECONDS START_AT_MS -> {"queries": n, "latencies_ms": [...]}
//   node ws_bench.mjs connect N        -> {"ms": [connect + first query, fresh Client each]}
// Env: NEON_SERVERLESS_MODULE, NEON_WS_MODULE (file: URLs), DATABASE_URL, NEON_WS_PROXY.
const { Client, neonConfig } = await import(process.env.NEON_SERVERLESS_MODULE);
const { default: ws } = await import(process.env.NEON_WS_MODULE);
neonConfig.webSocketConstructor = ws;
neonConfig.wsProxy = process.env.NEON_WS_PROXY;
neonConfig.useSecureWebSocket = false;
const url = process.env.DATABASE_URL;
const [mode, a, b, c] = process.argv.slice(2);
const QUERY = 'SELECT $1::int';

async function connected() {
  const client = new Client(url);
  await client.connect();
  return client;
}

if (mode === 'latency') {
  const client = await connected();
  for (let i = 0; i < 200; i++) await client.query(QUERY, [i]);
  const us = [];
  for (let i = 0; i < Number(a); i++) {
    const t = process.hrtime.bigint();
    const { rows } = await client.query(QUERY, [i]);
    us.push(Number(process.hrtime.bigint() - t) / 1000);
    if (rows[0].int4 !== i) throw new Error('wrong result');
  }
  await client.end();
  console.log(JSON.stringify({ us }));
} else if (mode === 'load') {
  const clients = await Promise.all(Array.from({ length: Number(a) }, connected));
  const wait = Number(c) - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const end = Date.now() + Number(b) * 1000;
  const latencies = [];
  await Promise.all(clients.map(async (client, k) => {
    let i = k;
    while (Date.now() < end) {
      const t = process.hrtime.bigint();
      await client.query(QUERY, [i++]);
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }));
  await Promise.all(clients.map((client) => client.end()));
  console.log(JSON.stringify({ queries: latencies.length, latencies_ms: latencies }));
} else if (mode === 'connect') {
  for (let i = 0; i < 3; i++) {  // warm-up: module code compiled, DNS and sockets ready
    const client = new Client(url);
    client.connect();
    await client.query(QUERY, [i]);
    await client.end();
  }
  const ms = [];
  for (let i = 0; i < Number(a); i++) {
    const t = process.hrtime.bigint();
    const client = new Client(url);
    client.connect();
    await client.query(QUERY, [i]);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    await client.end();
  }
  console.log(JSON.stringify({ ms }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
