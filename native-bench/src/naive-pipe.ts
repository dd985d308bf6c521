// The reference contender from issue #2: the proxy everyone writes first,
// `a.pipe(b).pipe(a)`, with just enough error handling not to crash.
// Usage: node naive-pipe.js LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
import net from 'node:net';

const listenPort = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
if (!Number.isInteger(listenPort) || !Number.isInteger(upstreamPort)) {
  process.stderr.write('usage: naive-pipe LISTEN_PORT UPSTREAM_PORT\n');
  process.exit(2);
}

// allowHalfOpen on both sides, so that pipe()'s end() carries a FIN each way
// instead of Node closing the socket on the first FIN and cutting the reply.
const server = net.createServer({ allowHalfOpen: true }, (a) => {
  const b = net.connect({ host: '127.0.0.1', port: upstreamPort, allowHalfOpen: true });
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.pipe(b).pipe(a);
});
server.listen({ host: '127.0.0.1', port: listenPort, backlog: 4096 }, () => {
  process.stdout.write(`listening 127.0.0.1:${listenPort}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
