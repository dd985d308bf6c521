// Echo backend for the idle-connection memory workload.
// Usage: node echo-server.js PORT   (127.0.0.1)
import net from 'node:net';

const port = Number(process.argv[2]);
if (!Number.isInteger(port)) {
  process.stderr.write('usage: echo-server PORT\n');
  process.exit(2);
}
const server = net.createServer((s) => {
  s.on('error', () => s.destroy());
  s.pipe(s);
});
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  process.stdout.write(`listening 127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
