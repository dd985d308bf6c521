// One `up` in the foreground, as `up` and `demo` run it: the logger and the
// view picked for the terminal, `listening` lines on stdout, the table when
// ready, Ctrl-C (or `down`) drains and undoes everything.
//
// stdout is a TTY (and no --json-logs): live progress, then the table,
// redrawn as Services come and go; log lines of level warn and up scroll above it.
// Otherwise: `listening HOST:PORT` lines, one `service ...` line per Service and a
// `ready` line on stdout; pino lines on stderr.

import { pino, type LevelWithSilent, type Logger } from 'pino'
import { createLogger } from '../observe/logger.js'
import { Registry } from '../observe/metrics.js'
import type { UpConfig } from './config.js'
import { loadController, type ControllerModule } from './controller-port.js'
import { dockerAccess, type DockerAccess } from './docker.js'
import { eventLine, formatPlain, formatTable, TtyView, viewLogStream } from './render.js'
import { UpRun, type UpEvent } from './up.js'

export interface SessionOptions {
  readonly cfg: UpConfig
  readonly logLevel: LevelWithSilent
  readonly jsonLogs: boolean
  readonly signal: AbortSignal
  readonly controller?: () => Promise<ControllerModule>
  readonly docker?: DockerAccess
  /** Extra lines once ready (demo: what to curl). */
  readonly readyLines?: (run: UpRun) => string[]
  /** Called once `up` is ready, before waiting for the signal. */
  readonly onReady?: (run: UpRun) => void | Promise<void>
  readonly stdout?: NodeJS.WriteStream
}

export async function runSession (o: SessionOptions): Promise<{ code: number, run: UpRun }> {
  const out = o.stdout ?? process.stdout
  const tty = out.isTTY === true && !o.jsonLogs
  const view = tty ? new TtyView(out) : undefined
  let logger: Logger
  if (view !== undefined) {
    // On a terminal, info lines would bury the table; they are in the progress lines anyway.
    const level: LevelWithSilent = o.logLevel === 'info' ? 'warn' : o.logLevel
    logger = pino({ level, base: null, timestamp: false }, viewLogStream(view))
  } else {
    logger = createLogger({ level: o.logLevel })
  }
  const registry = new Registry()
  let run: UpRun | undefined
  let redraw: NodeJS.Timeout | undefined
  let stopping = false
  const known = new Set<string>()
  /** `service ...` lines of Services not shown yet. */
  const newServices = (): string[] => {
    if (run === undefined || stopping) return []
    const st = run.status()
    const lines = formatPlain(st)
    const out: string[] = []
    st.services.forEach((sv, i) => {
      const k = `${sv.cluster}/${sv.namespace}/${sv.name}`
      if (known.has(k)) return
      known.add(k)
      out.push(lines[i] as string)
    })
    const present = new Set(st.services.map((sv) => `${sv.cluster}/${sv.namespace}/${sv.name}`))
    for (const k of known) if (!present.has(k)) known.delete(k)
    return out
  }
  const draw = (): void => {
    if (view === undefined || run === undefined || !run.ready || stopping) return
    view.block(['', ...formatTable(run.status(), view.width), ...(o.readyLines?.(run) ?? [])])
  }
  const onEvent = (e: UpEvent): void => {
    if (view !== undefined) {
      if (e.type === 'stopping' && !stopping) {
        // The table would only show Services disappearing: take it away.
        stopping = true
        view.block([])
      }
      const l = eventLine(e)
      if (l !== undefined) view.line(l)
      if (e.type === 'applied' || e.type === 'ready') {
        for (const l of newServices()) view.line(`✓ ${l.replace(/^service /, '')}`)
        draw()
      }
      return
    }
    // Services that appear after `ready` get their line when they do.
    if (e.type === 'applied' && run?.ready === true) for (const l of newServices()) out.write(`${l}\n`)
    if (e.type === 'listening') out.write(`listening ${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}${e.udp === true ? '/udp' : ''}\n`)
    else if (e.type === 'metrics') out.write(`metrics ${e.host}:${e.port}\n`)
  }
  // The native splice (and accept lane) when the addon is built; KT_NATIVE=0 turns it off.
  const { loadNativeSplicer } = await import('../dataplane/native/index.js')
  const splicer = loadNativeSplicer()
  run = new UpRun(o.cfg, {
    logger,
    registry,
    splicer,
    controller: o.controller ?? loadController,
    docker: o.docker ?? dockerAccess(),
    onEvent,
  })
  const onAbort = (): void => { void run?.stop(`signal ${String(o.signal.reason ?? '')}`.trim()) }
  o.signal.addEventListener('abort', onAbort, { once: true })
  try {
    await run.start()
  } catch (err) {
    splicer?.close()
    throw err
  } finally {
    if (o.signal.aborted) await run.done
  }
  if (view !== undefined) {
    draw()
    // Health and connection counts change without a new table: refresh now and then.
    redraw = setInterval(draw, 2000)
    redraw.unref()
  } else {
    for (const l of newServices()) out.write(`${l}\n`)
    for (const l of o.readyLines?.(run) ?? []) out.write(`${l}\n`)
    out.write('ready\n')
  }
  await o.onReady?.(run)
  await run.done
  splicer?.close()
  if (redraw !== undefined) clearInterval(redraw)
  view?.release()
  o.signal.removeEventListener('abort', onAbort)
  logger.flush?.()
  return { code: run.cleanExit ? 0 : 1, run }
}
