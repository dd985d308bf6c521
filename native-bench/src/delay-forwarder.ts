// A forwarder that waits before each onward connect, standing in for a port
// forwarder whose new connections are expensive (Docker Desktop's): it accepts
// at once, waits DELAY_MS, then connects onward and relays both ways. Data is
// not delayed; the client's early bytes wait in its socket. Loopback only.
// Usage: node delay-forwarder.js TARGET_PORT DELAY_MS   (prints `listening PORT`)
import net from 'node:net';

const targetPort = Number(process.argv[2]);
const delayMs = Number(process.argv[3] ?? 0);
if (!Number.isInteger(targetPort) || !Number.isFinite(delayMs) || delayMs < 0) {
  process.stderr.write('usage: delay-forwarder TARGET_PORT DELAY_MS\n');
  process.exit(2);
}

const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => {
  let up: net.Socket | undefined;
  const kill = (): void => {
    clearTimeout(timer);
    client.destroy();
    up?.destroy();
  };
  client.on('error', () => { if (up !== undefined && !up.destroyed) up.resetAndDestroy(); kill(); });
  client.on('close', () => { if (up === undefined) kill(); });
  const go = (): void => {
    const u = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
    up = u;
    u.on('error', () => { if (!client.destroyed) client.resetAndDestroy(); kill(); });
    u.once('connect', () => {
      client.pipe(u);
      u.pipe(client);
      client.resume();
    });
    u.on('close', () => { if (!client.destroyed) client.destroy(); });
    client.on('close', () => { if (!u.destroyed) u.destroy(); });
  };
  const timer = delayMs > 0 ? setTimeout(go, delayMs) : setImmediate(go) as unknown as NodeJS.Timeout;
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
