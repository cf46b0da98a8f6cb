// The plainest TCP relay in Node, for bench/bench_ws_proxy.py: what one Node hop costs.
//   node tcp_relay.mjs UPSTREAM_PORT  -> prints PORT=<n>, relays 127.0.0.1:<n> to 127.0.0.1:UPSTREAM_PORT
// One net.Socket.pipe each way, Nagle off; no framing, no auth.
import net from 'node:net';

const upstreamPort = Number(process.argv[2]);
const server = net.createServer((client) => {
  const upstream = net.connect(upstreamPort, '127.0.0.1');
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const end = () => { client.destroy(); upstream.destroy(); };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT=${server.address().port}\n`);
});
