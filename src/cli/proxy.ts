// `kind-tunnel proxy`: the data plane on its own, with static routes.

import type { Argv, ArgumentsCamelCase } from 'yargs'
import { buildProxyConfig, type ProxyArgs } from '../config/proxy.js'
import { ListenerManager } from '../dataplane/listener-manager.js'
import { createLogger } from '../observe/logger.js'
import { Registry } from '../observe/metrics.js'
import { startMetricsServer } from '../observe/metrics-server.js'
import { EXIT_FAILURE, EXIT_OK, fdLimit, shutdownSignal, waitForAbort } from './run.js'
import { KtError } from '../errors.js'
import { UDP_SUFFIX } from '../dataplane/udp/plane.js'
import type { LevelWithSilent } from 'pino'
import type { Logger } from '../observe/logger.js'
import type { NativeSplicer } from '../dataplane/native/index.js'

export function proxyOptions<T> (y: Argv<T>) {
  return y
    .option('listen', { type: 'string', array: true, demandOption: true, describe: 'HOST:PORT[/tcp|/udp] to listen on (repeatable; port 0 picks one)' })
    .option('backend', { type: 'string', describe: 'default backends HOST:PORT[,HOST:PORT...]' })
    .option('route', { type: 'string', array: true, describe: 'NAME=HOST:PORT[,...] routed by TLS SNI or HTTP Host; NAME exact or *.suffix; append ;proxy-protocol=v1|v2|none' })
    .option('proxy-protocol', { type: 'string', choices: ['v1', 'v2'], describe: 'send a PROXY protocol header upstream' })
    .option('policy', { type: 'string', describe: 'round-robin (default) | least-connections | random | client-ip-hash' })
    .option('pool-size', { type: 'string', describe: 'warm idle upstream sockets per backend, or auto (default): 2 on macOS/Windows (Docker Desktop forwarding), 0 on Linux; 0 disables' })
    .option('connect-timeout', { type: 'string', describe: 'upstream connect timeout, ms (default 5000)' })
    .option('idle-timeout', { type: 'string', describe: 'close connections idle this long, ms (default 3600000; 0 disables)' })
    .option('peek-timeout', { type: 'string', describe: 'absolute deadline for the SNI/Host peek, ms (default 10000)' })
    .option('drain-timeout', { type: 'string', describe: 'on shutdown, let connections finish this long, ms (default 10000)' })
    .option('max-connections', { type: 'string', describe: 'global connection cap (default min(10000, (fd limit - 64) / 2))' })
    .option('max-connections-per-listener', { type: 'string', describe: 'per-listener connection cap (default: the global cap)' })
    .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on HOST:PORT' })
    .option('allow-wildcard', { type: 'boolean', default: false, describe: 'allow binding 0.0.0.0 or ::' })
    .option('native', { type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], describe: 'the native splice fast path: auto uses it when built (Linux), on requires it, off forces pure JS' })
    .option('native-accept', { type: 'string', default: 'auto', choices: ['auto', 'off'], describe: 'accept and connect plain L4 listeners in native threads (needs the native splice; KT_NATIVE_ACCEPT=0 disables): auto uses it where eligible, off accepts in JS' })
    .option('udp-idle-timeout', { type: 'string', describe: 'end a UDP flow after this long without a datagram either way, ms (default 60000; 0 disables)' })
    .option('udp-max-flows', { type: 'string', describe: 'UDP flows per listener, one fd each (default: --max-connections-per-listener); beyond it, new flows are dropped and counted' })
    .option('access-log', { type: 'boolean', default: true, describe: 'one log line per connection at close' })
    .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] })
}

type ProxyArgv = ArgumentsCamelCase<{
  listen: string[]
  backend?: string
  route?: string[]
  proxyProtocol?: string
  policy?: string
  poolSize?: string
  connectTimeout?: string
  idleTimeout?: string
  peekTimeout?: string
  drainTimeout?: string
  maxConnections?: string
  maxConnectionsPerListener?: string
  metrics?: string
  allowWildcard: boolean
  accessLog: boolean
  udpIdleTimeout?: string
  udpMaxFlows?: string
  native: string
  nativeAccept: string
  logLevel: string
}>

export async function runProxy (argv: ProxyArgv): Promise<number> {
  const args: ProxyArgs = {
    listen: argv.listen,
    backend: argv.backend,
    route: argv.route,
    proxyProtocol: argv.proxyProtocol,
    policy: argv.policy,
    poolSize: argv.poolSize,
    connectTimeout: argv.connectTimeout,
    idleTimeout: argv.idleTimeout,
    peekTimeout: argv.peekTimeout,
    drainTimeout: argv.drainTimeout,
    maxConnections: argv.maxConnections,
    maxConnectionsPerListener: argv.maxConnectionsPerListener,
    metrics: argv.metrics,
    allowWildcard: argv.allowWildcard,
    accessLog: argv.accessLog,
    udpIdleTimeout: argv.udpIdleTimeout,
    udpMaxFlows: argv.udpMaxFlows,
  }
  const limit = await fdLimit()
  const config = buildProxyConfig(args, limit)
  const signal = shutdownSignal()
  const logger = createLogger({ level: argv.logLevel as LevelWithSilent })
  if (limit !== undefined && limit < 1024) logger.warn({ fdLimit: limit, maxConnections: config.dataplane.maxConnections }, 'the file-descriptor limit is low; raise it with ulimit -n')
  const registry = new Registry()
  const splicer = await loadSplicer(argv.native, logger)
  const manager = new ListenerManager({ logger, metrics: registry, options: config.dataplane, splicer, nativeAccept: argv.nativeAccept === 'off' ? 'off' : 'auto', udp: config.udp })
  const res = await manager.apply(config.table)
  if (res.failed.length > 0) {
    await manager.close(0)
    // Let the logged failure out first, so the one-line error is the last line.
    await new Promise<void>((resolve) => { logger.flush(() => { resolve() }) })
    const f = res.failed[0] as { code: string, message: string }
    throw new KtError('KT_ERR_LISTEN', `${f.message} (${f.code})`)
  }
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined
  if (config.metrics !== undefined) {
    try {
      metrics = await startMetricsServer(registry, config.metrics.host, config.metrics.port)
    } catch (err) {
      await manager.close(0)
      throw new KtError('KT_ERR_LISTEN', `cannot serve metrics on ${config.metrics.host}:${config.metrics.port}: ${(err as Error).message}`)
    }
    process.stdout.write(`metrics ${fmt(metrics.host, metrics.port)}\n`)
  }
  for (const b of res.bound) process.stdout.write(`listening ${fmt(b.host, b.port)}${b.key.endsWith(UDP_SUFFIX) ? UDP_SUFFIX : ''}\n`)
  await waitForAbort(signal)
  logger.info({ active: manager.connectionCount }, 'shutting down: draining connections')
  await manager.close()
  splicer?.close()
  await metrics?.close()
  logger.flush()
  return EXIT_OK
}

/** The native splice fast path per --native; auto falls back to pure JS with a debug line saying why. */
export async function loadSplicer (mode: string, logger: Logger): Promise<NativeSplicer | undefined> {
  if (mode === 'off') return undefined
  const { loadNativeSplicer, nativeUnavailableReason } = await import('../dataplane/native/index.js')
  const s = loadNativeSplicer()
  if (s === undefined) {
    const why = nativeUnavailableReason() ?? 'unknown'
    if (mode === 'on') throw new KtError('KT_ERR_NATIVE_UNAVAILABLE', `--native on: ${why}`)
    logger.debug({ reason: why }, 'native splice unavailable; using the pure-JS data plane')
    return undefined
  }
  logger.debug({ mode: s.mode }, 'native splice fast path enabled')
  return s
}

function fmt (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
