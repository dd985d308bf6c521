// The relay takes any logger with pino's (obj, msg) call shape, so the host
// passes its pino child and the container passes this one: JSON lines in
// pino's format (numeric levels, `time`, `msg`) without pino itself, because
// the relay image carries no node_modules.

export interface RelayLogger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

export type RelayLogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50, silent: Infinity } as const

export function isRelayLogLevel (s: string): s is RelayLogLevel {
  return Object.hasOwn(LEVELS, s)
}

export function createJsonLogger (level: RelayLogLevel, write: (line: string) => void, base: object = {}): RelayLogger {
  const min = LEVELS[level]
  const emit = (lvl: number, obj: object, msg?: string): void => {
    if (lvl < min) return
    const rec: Record<string, unknown> = { level: lvl, time: new Date().toISOString(), pid: process.pid, ...base, ...obj }
    if (msg !== undefined) rec.msg = msg
    const e = rec.err
    if (e instanceof Error) rec.err = { type: e.name, message: e.message, code: (e as { code?: unknown }).code }
    write(JSON.stringify(rec) + '\n')
  }
  return {
    debug: (o, m) => emit(LEVELS.debug, o, m),
    info: (o, m) => emit(LEVELS.info, o, m),
    warn: (o, m) => emit(LEVELS.warn, o, m),
    error: (o, m) => emit(LEVELS.error, o, m),
  }
}

export const silentRelayLogger: RelayLogger = createJsonLogger('silent', () => {})
