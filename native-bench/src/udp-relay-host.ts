// The host side for the UDP-through-the-relay bench (udp-relay.ts): kind-tunnel's
// data plane (ListenerManager) with two UDP listeners per mode, as `up` builds
// them, in one process:
//   relay:  127.0.0.1:P (TCP + UDP, iperf3's control and data) and :R (UDP echo),
//           both through the relay container (`up --mode relay`, RelayDialer);
//   direct: the same two, straight to the node (`up` on Linux).
// Usage: node udp-relay-host.js --cluster NAME --network NET --base IMAGE --node IP
// Prints `ready {"relay":{"pps":P,"rr":R},"direct":{"pps":P,"rr":R}}` once serving.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadHostModules } from './kt-host-modules.js';
import { createServer, type AddressInfo } from 'node:net';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const { values } = parseArgs({ options: { cluster: { type: 'string' }, network: { type: 'string' }, base: { type: 'string' }, node: { type: 'string' } } });

const { engine, discover, relayc, client, lm, native, logger, metrics } = await loadHostModules(repo);

const { docker } = await engine.connectDocker();
const cluster = await discover.findCluster({ docker, network: values.network, name: values.cluster });
const info = await relayc.ensureRelay({ docker, cluster, base: values.base });
const dialer = new client.RelayDialer({ host: info.host, port: info.port, token: info.token, name: values.cluster });
await dialer.warm(5000);
const splicer = native.loadNativeSplicer();
const manager = new lm.ListenerManager({
  logger: logger.createLogger({ level: 'warn' }),
  metrics: new metrics.Registry(),
  options: { accessLog: false },
  dialers: new Map([[`relay:${values.cluster}`, dialer]]),
  splicer,
  nativeAccept: splicer === undefined ? 'off' : 'auto',
});

/** A port free for TCP (and, checked by binding, UDP) on 127.0.0.1. */
async function freePort (): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const p = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return p;
}

const ports = { relay: { pps: await freePort(), rr: await freePort() }, direct: { pps: await freePort(), rr: await freePort() } };
const node = values.node as string;
const listeners: object[] = [];
for (const mode of ['relay', 'direct'] as const) {
  const via = mode === 'relay' ? { dialer: `relay:${values.cluster}` } : {};
  const up = (port: number, nodePort: number, udp: boolean): object => ({
    host: '127.0.0.1', port, routes: [], ...(udp ? { protocol: 'udp' } : {}),
    default: { id: `${values.cluster}/default/bench-${mode}:${nodePort}${udp ? '/udp' : ''}`, endpoints: [{ host: node, port: nodePort }], poolSize: 0, ...via },
  });
  listeners.push(up(ports[mode].pps, 30201, false), up(ports[mode].pps, 30201, true), up(ports[mode].rr, 30054, true));
}
const res = await manager.apply({ version: 1, listeners });
if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed));
process.stdout.write(`ready ${JSON.stringify(ports)}\n`);
process.on('SIGTERM', () => { void manager.close(200).then(() => process.exit(0)); });
await new Promise(() => {});
