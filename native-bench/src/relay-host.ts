// The host side of relay mode for the `relay` bench: kind-tunnel's own data
// plane (ListenerManager, the native splicer unless KT_NATIVE=0, the native
// accept lane where eligible) with the relay dialer as `up --mode relay`
// builds it (its defaults: protocol v2, the adaptive pool of unbound
// connections), against the relay container that `up` would start
// (ensureRelay) for the kind-like cluster. Without the controller: the two
// routes below are what computeRoutes makes for a Service with ports 80 and
// 5201 in ip mode, minus the health check (kube-proxy's /healthz, which the
// bench's node does not serve; a TCP probe would take iperf3's one session).
// `--via PORT` dials the relay through another forwarder
// (the connect-delay variants) instead of its published port.
// Usage: node relay-host.js --cluster NAME --network NET --base IMAGE --node IP --http-port P --bulk-port P [--via PORT] [--transport pool|mux|auto]
// Prints one line `ready {"relayPort":N,"dataPath":"js"}` once serving.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openSync } from 'node:fs';
import { loadHostModules } from './kt-host-modules.js';

const repo = process.env.KT_BENCH_REPO ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const { values } = parseArgs({
  options: {
    cluster: { type: 'string' }, network: { type: 'string' }, base: { type: 'string' }, node: { type: 'string' },
    'http-port': { type: 'string' }, 'bulk-port': { type: 'string' }, via: { type: 'string' }, transport: { type: 'string' },
  },
});

const { engine, discover, relayc, client, lm, native, logger, metrics } = await loadHostModules(repo);

const { docker } = await engine.connectDocker();
const cluster = await discover.findCluster({ docker, network: values.network, name: values.cluster });
// KT_BENCH_RELAY_FILE (relay-ab.ts): the first host of an A/B run starts the relay and
// writes where it is; the others reuse it, so hosts built from other checkouts do not replace it.
const shared = process.env.KT_BENCH_RELAY_FILE
const { existsSync, readFileSync, writeFileSync } = await import('node:fs')
let info: { host: string; port: number; token: Buffer }
if (shared !== undefined && existsSync(shared)) {
  const j = JSON.parse(readFileSync(shared, 'utf8')) as { host: string; port: number; token: string }
  info = { host: j.host, port: j.port, token: Buffer.from(j.token, 'hex') }
} else {
  info = await relayc.ensureRelay({ docker, cluster, base: values.base })
  if (shared !== undefined) writeFileSync(shared, JSON.stringify({ host: info.host, port: info.port, token: info.token.toString('hex') }), { mode: 0o600 })
}
const port = values.via !== undefined ? Number(values.via) : info.port;
// --transport pool|mux|auto: a connection per dial, or streams over long-lived carriers (src/relay/mux-client.ts).
const transport = (values.transport ?? 'auto') as 'auto' | 'mux' | 'pool'
const dialer = new client.RelayDialer({ host: info.host, port, token: info.token, name: values.cluster, transport });
await dialer.warm(5000);
if (transport !== 'pool' && dialer.mux !== undefined && !(await dialer.mux.ready(10_000))) throw new Error(`no mux carrier: ${JSON.stringify(dialer.stats())}`);
const splicer = native.loadNativeSplicer();
// KT_BENCH_ACCESS_LOG=FILE: as `up` runs by default, a log line per connection at
// close (level info, pino's async destination), written to FILE instead of a terminal.
const accessLogFile = process.env.KT_BENCH_ACCESS_LOG ?? '';
const manager = new lm.ListenerManager({
  logger: accessLogFile !== ''
    ? logger.createLogger({ level: 'info', fd: openSync(accessLogFile, 'a') })
    : logger.createLogger({ level: 'warn' }),
  metrics: new metrics.Registry(),
  options: { accessLog: accessLogFile !== '' },
  dialers: new Map([[`relay:${values.cluster}`, dialer]]),
  splicer,
  nativeAccept: splicer === undefined ? 'off' : 'auto',
});
const up = (p: number, nodePort: number): object => ({ host: '127.0.0.1', port: p, routes: [], default: { id: `${values.cluster}/default/bench:${p}`, endpoints: [{ host: values.node, port: nodePort }], dialer: `relay:${values.cluster}` } });
const res = await manager.apply({ version: 1, listeners: [up(Number(values['http-port']), 30080), up(Number(values['bulk-port']), 30201)] });
if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed));
process.stdout.write(`ready ${JSON.stringify({ relayPort: info.port, dataPath: dialer.stats().dataPath, hostNative: splicer !== undefined, transport: dialer.stats().transport })}\n`);
setInterval(() => { process.stdout.write(`pool ${JSON.stringify(dialer.stats())}\n`); }, 5000).unref();
process.on('SIGTERM', () => { void manager.close(200).then(() => process.exit(0)); });
await new Promise(() => {});
