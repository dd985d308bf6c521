// UDP echo backend for the UDP request/response workload (issue #16).
// Usage: node udp-echo.js PORT   (127.0.0.1)
import { createSocket } from 'node:dgram';

const port = Number(process.argv[2]);
if (!Number.isInteger(port)) {
  process.stderr.write('usage: udp-echo PORT\n');
  process.exit(2);
}
const s = createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(port, '127.0.0.1', () => process.stdout.write(`listening 127.0.0.1:${port}/udp\n`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
