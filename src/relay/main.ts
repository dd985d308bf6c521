#!/usr/bin/env node
// Entry point of the relay container (and of `kind-tunnel relay`):
//   node dist/src/relay/main.js --listen auto:7000 --token-file /run/kind-tunnel/token --allow 172.18.0.2/32 ...
// node:util parseArgs only, so the image needs no CLI framework and no
// node_modules. Prints `listening HOST:PORT` on stdout once ready; drains and
// exits 0 on SIGINT/SIGTERM; bad input is one line `error KT_ERR_...: msg`, exit 2.

import { parseArgs } from 'node:util'
import { networkInterfaces } from 'node:os'
import { readFileSync, realpathSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { InvalidArgumentError, KtError, isKtError } from '../errors.js'
import { parseHostPort, parsePort, parseIntOption } from '../config/parse.js'
import { startRelay, type RelayHandle } from './server.js'
import { useNativeSplicer } from './splice.js'
import { loadNativeSplicer, nativeDataPath } from '../dataplane/native/index.js'
import { createJsonLogger, isRelayLogLevel, type RelayLogLevel } from './log.js'
import { TOKEN_MIN, TOKEN_MAX } from './protocol.js'
import type { PortPolicy } from './allow.js'

const USAGE = `usage: relay --listen HOST:PORT --token-file FILE --allow CIDR [--allow CIDR ...]
             [--ports MIN-MAX] [--extra-port N ...] [--connect-timeout MS] [--header-timeout MS]
             [--idle-timeout MS] [--max-connections N] [--log-level debug|info|warn|error|silent]
  HOST may be "auto": this container's own address on its network (IPv4 first), never a wildcard.`

export interface RelayMainConfig {
  readonly host: string
  readonly port: number
  readonly token: Buffer
  readonly allow: string[]
  readonly ports: PortPolicy
  readonly connectTimeoutMs: number
  readonly headerTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxConnections: number
  readonly logLevel: RelayLogLevel
}

/**
 * The container's own address on its (single) network, so nothing binds a
 * wildcard: IPv4 first (what port publishing forwards to), else a global IPv6
 * address on an IPv6-only network.
 */
export function autoAddress (): string {
  const all = Object.values(networkInterfaces()).flatMap((l) => l ?? []).filter((a) => !a.internal)
  const v4 = all.find((a) => a.family === 'IPv4')
  if (v4 !== undefined) return v4.address
  const v6 = all.find((a) => a.family === 'IPv6' && !/^fe[89ab]/i.test(a.address))
  if (v6 !== undefined) return v6.address
  throw new KtError('KT_ERR_LISTEN', '--listen auto: this container has no address besides loopback and link-local')
}

/** Hex, at least 128 bits; surrounding whitespace (a trailing newline) is ignored. */
export function parseTokenText (text: string, what: string): Buffer {
  const hex = text.trim()
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: the token must be hex`)
  const token = Buffer.from(hex, 'hex')
  if (token.length < TOKEN_MIN || token.length > TOKEN_MAX) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: the token must be ${TOKEN_MIN}-${TOKEN_MAX} bytes (${TOKEN_MIN * 2}-${TOKEN_MAX * 2} hex digits), got ${token.length}`)
  }
  return token
}

export function parseRelayArgs (argv: string[]): RelayMainConfig {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        listen: { type: 'string' },
        'token-file': { type: 'string' },
        allow: { type: 'string', multiple: true },
        ports: { type: 'string' },
        'extra-port': { type: 'string', multiple: true },
        'connect-timeout': { type: 'string' },
        'header-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-connections': { type: 'string' },
        'log-level': { type: 'string' },
      },
    }))
  } catch (err) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${(err as Error).message.split('\n')[0] ?? 'bad arguments'} (see --help)`)
  }
  if (values.listen === undefined) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', '--listen is required (see --help)')
  if (values['token-file'] === undefined) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', '--token-file is required: the token never goes on the command line')
  if (values.allow === undefined || values.allow.length === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', "--allow is required: the cluster's node IPs")

  let host: string
  let port: number
  if (values.listen.startsWith('auto:')) {
    host = autoAddress()
    port = parsePort(values.listen.slice(5), '--listen', true)
  } else {
    try {
      ({ host, port } = parseHostPort(values.listen, { what: '--listen', allowPortZero: true }))
    } catch (err) {
      if (isKtError(err) && err.code === 'KT_ERR_WILDCARD_BIND') {
        throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `--listen: refusing wildcard address in ${JSON.stringify(values.listen)}; use auto:PORT to bind the container's own address`)
      }
      throw err
    }
  }

  const tokenFile = values['token-file']
  let text: string
  try {
    text = readFileSync(tokenFile, 'utf8')
  } catch (err) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--token-file: cannot read ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const token = parseTokenText(text, '--token-file')

  let min = 30000
  let max = 32767
  if (values.ports !== undefined) {
    const m = /^(\d{1,5})-(\d{1,5})$/.exec(values.ports)
    if (m === null) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--ports: ${JSON.stringify(values.ports)} is not MIN-MAX`)
    min = parsePort(m[1] as string, '--ports')
    max = parsePort(m[2] as string, '--ports')
  }
  const extra = (values['extra-port'] ?? ['10256']).map((p) => parsePort(p, '--extra-port'))
  const level = values['log-level'] ?? 'info'
  if (!isRelayLogLevel(level)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--log-level: ${JSON.stringify(level)} is not debug|info|warn|error|silent`)
  return {
    host,
    port,
    token,
    allow: values.allow,
    ports: { min, max, extra },
    connectTimeoutMs: parseIntOption(values['connect-timeout'] ?? '5000', '--connect-timeout', 1, 600_000),
    headerTimeoutMs: parseIntOption(values['header-timeout'] ?? '5000', '--header-timeout', 1, 600_000),
    idleTimeoutMs: parseIntOption(values['idle-timeout'] ?? '60000', '--idle-timeout', 1, 86_400_000),
    maxConnections: parseIntOption(values['max-connections'] ?? '4096', '--max-connections', 1, 1_000_000),
    logLevel: level,
  }
}

export async function runRelay (argv: string[]): Promise<RelayHandle | undefined> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n')
    return undefined
  }
  const cfg = parseRelayArgs(argv)
  const logger = createJsonLogger(cfg.logLevel, (l) => process.stderr.write(l), { module: 'relay' })
  // The native splice when the image (or the checkout) carries the addon; the JS splice otherwise.
  const splicer = loadNativeSplicer()
  useNativeSplicer(splicer)
  const relay = await startRelay({
    ...cfg,
    logger,
    dataPath: splicer !== undefined ? 'native' : 'js',
    // The addon's lane takes the common case of every connection; KT_RELAY_LANE=0 keeps accepting in JS.
    ...(splicer !== undefined && process.env['KT_RELAY_LANE'] !== '0' ? { native: splicer } : {}),
    // Multiplexed carriers are served on the lane too (kt_mux.c); KT_RELAY_MUX=js hands them to mux-server.ts.
    nativeMux: process.env['KT_RELAY_MUX'] !== 'js',
    logConnections: cfg.logLevel === 'debug' || cfg.logLevel === 'info',
  })
  const dp = nativeDataPath()
  logger.info(dp.native ? { splice: 'native', addon: dp.how, accept: relay.acceptPath } : { splice: 'js', reason: dp.why }, `relay data path: ${dp.native ? `native splice (${dp.how}), ${relay.acceptPath === 'native' ? 'native accept' : `JS accept${relay.acceptWhy !== undefined ? ` (${relay.acceptWhy})` : ''}`}` : `JS splice (${dp.why})`}`)
  const a = relay.address
  process.stdout.write(`listening ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}\n`)
  let stopping = false
  const stop = (sig: string): void => {
    if (stopping) { relay.destroy(); process.exit(0) }
    stopping = true
    logger.info({ signal: sig }, 'relay draining')
    relay.close().then(() => { splicer?.close(); process.exit(0) }, () => process.exit(1))
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  return relay
}

function isMain (): boolean {
  const arg = process.argv[1]
  if (arg === undefined) return false
  try {
    return pathToFileURL(realpathSync(arg)).href === import.meta.url
  } catch {
    return false
  }
}

if (isMain()) {
  runRelay(process.argv.slice(2)).catch((err: unknown) => {
    // One line, never a stack trace: the container's log is what users read.
    const code = isKtError(err) ? err.code : 'KT_ERR_LISTEN'
    const msg = err instanceof Error ? err.message : String(err)
    process.stderr.write(`error ${code}: ${msg}\n`)
    process.exit(isKtError(err) && err.name === 'InvalidArgumentError' ? 2 : 1)
  })
}
