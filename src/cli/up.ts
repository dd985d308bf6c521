// `kind-tunnel up`: LoadBalancer Services of kind clusters, reachable from
// the host, until Ctrl-C (or `kind-tunnel down`) undoes it all.

import type { Argv, ArgumentsCamelCase } from 'yargs'
import type { LevelWithSilent } from 'pino'
import { buildUpConfig } from '../app/config.js'
import { runSession } from '../app/session.js'
import { resolveStateDir } from '../app/state.js'
import { errorCode } from '../errors.js'
import { fdLimit, shutdownSignal } from './run.js'

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const

/** Options `up` and `demo` share. */
export function servingOptions<T> (y: Argv<T>) {
  return y
    .option('address', { type: 'string', choices: ['ip', 'hostname', 'both'], describe: 'hostname: shared 127.0.0.1 ports by SNI/Host, no root (default); ip: an IP per Service with its real ports; both' })
    .option('ip-pool', { type: 'string', describe: 'CIDR the Service IPs come from (default 127.240.0.0/16; sidecar: the top of the kind subnet)' })
    .option('http-port', { type: 'string', describe: 'shared HTTP port in hostname mode (default 8080)' })
    .option('https-port', { type: 'string', describe: 'shared TLS port in hostname mode (default 8443)' })
    .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on HOST:PORT' })
    .option('log-level', { type: 'string', default: 'info', choices: LOG_LEVELS })
    .option('json-logs', { type: 'boolean', default: false, describe: 'pino lines even on a terminal (no live table)' })
    .option('state-dir', { type: 'string', describe: 'where the state file and control socket live (default $XDG_STATE_HOME/kind-tunnel; env KIND_TUNNEL_STATE_DIR)' })
    .option('drain-timeout', { type: 'string', describe: 'on exit, let connections finish this long, ms (default 10000)' })
    .option('access-log', { type: 'boolean', default: true, describe: 'one log line per connection at close' })
}

export function upOptions<T> (y: Argv<T>) {
  return servingOptions(y)
    .option('cluster', { type: 'string', describe: 'serve only this kind cluster (default: every running one)' })
    .option('mode', { type: 'string', default: 'auto', choices: ['auto', 'direct', 'relay', 'sidecar'], describe: 'how to reach the nodes; auto probes the kind network and says why it chose' })
    .option('kubeconfig', { type: 'string', describe: 'use this kubeconfig instead of reading it from the kind container' })
    .option('docker', { type: 'boolean', default: true, describe: 'use Docker to find clusters (--no-docker with --kubeconfig never touches it)' })
    .option('relay-transport', { type: 'string', default: 'auto', choices: ['auto', 'mux', 'pool'], describe: 'relay mode: streams over a few long-lived relay connections (mux: much cheaper new connections, slower bulk), a relay connection per client (pool), or auto (a relay connection per client while new connections come slowly, mux from 20 new connections a second; docs/benchmarks.md)' })
    .option('relay-base', { type: 'string', describe: 'base image for the relay (default distroless Node; offline: docker/build-base.sh); env KIND_TUNNEL_RELAY_BASE' })
    .option('interface', { type: 'string', describe: 'sidecar: the interface LB IPs go on (default eth0)' })
    .option('listen-host', { type: 'string', describe: 'address of the shared hostname-mode listeners (default 127.0.0.1)' })
    .option('pool-size', { type: 'string', describe: 'warm idle sockets per backend, or auto (default): none (a Service asks with the annotation kind-tunnel.dev/backend-pool: N)' })
    .option('sync-timeout', { type: 'string', describe: 'wait this long for the first sync before showing the table, ms (default 30000)' })
}

export type UpArgv = ArgumentsCamelCase<{
  cluster?: string
  mode: string
  address?: string
  kubeconfig?: string
  docker: boolean
  ipPool?: string
  httpPort?: string
  httpsPort?: string
  metrics?: string
  logLevel: string
  jsonLogs: boolean
  stateDir?: string
  relayBase?: string
  relayTransport?: string
  interface?: string
  listenHost?: string
  drainTimeout?: string
  syncTimeout?: string
  poolSize?: string
  accessLog: boolean
}>

export async function runUp (argv: UpArgv): Promise<number> {
  const cfg = buildUpConfig({
    cluster: argv.cluster,
    mode: argv.mode,
    address: argv.address,
    kubeconfig: argv.kubeconfig,
    ipPool: argv.ipPool,
    httpPort: argv.httpPort,
    httpsPort: argv.httpsPort,
    listenHost: argv.listenHost,
    interface: argv.interface,
    metrics: argv.metrics,
    stateDir: resolveStateDir({ stateDir: argv.stateDir }),
    relayBase: argv.relayBase ?? process.env.KIND_TUNNEL_RELAY_BASE,
    relayTransport: argv.relayTransport,
    docker: argv.docker,
    drainTimeout: argv.drainTimeout,
    syncTimeout: argv.syncTimeout,
    poolSize: argv.poolSize,
    accessLog: argv.accessLog,
  }, await fdLimit())
  const signal = shutdownSignal()
  try {
    const { code } = await runSession({ cfg, logLevel: argv.logLevel as LevelWithSilent, jsonLogs: argv.jsonLogs, signal })
    return code
  } catch (err) {
    // Ctrl-C while starting: everything started is undone; not an error.
    if (signal.aborted && errorCode(err) === 'KT_ERR_NOT_READY') return 130
    throw err
  }
}
