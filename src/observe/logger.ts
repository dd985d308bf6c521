import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level?: LevelWithSilent
  /** Write to this file descriptor (default 2, stderr: stdout carries `listening` lines). */
  fd?: number
}

/**
 * The one root logger. Modules take `root.child({ module: 'x' })`. Untrusted
 * values such as SNI or Host go under their own keys, never into `msg`.
 */
export function createLogger (opts: LoggerOptions = {}): Logger {
  return pino({
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, pino.destination({ fd: opts.fd ?? 2, sync: false }))
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
