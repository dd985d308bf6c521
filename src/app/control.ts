// The control socket of a running `up`: HTTP/1.1 over a unix socket in the
// state dir (a named pipe on Windows), never a TCP port, so only the user who
// owns the 0700 state dir can reach it. `status` reads it, `down` asks `up`
// to stop and clean up. You can look by hand too:
//   curl --unix-socket ~/.local/state/kind-tunnel/control.sock http://kt/status
//
// GET  /ping            → {"ok":true,"pid":N}
// GET  /status          → the UpStatus JSON
// POST /down[?cluster=] → 202 {"ok":true}; `up` then drains and undoes everything

import { createServer, request, type Server } from 'node:http'
import { chmod, rm } from 'node:fs/promises'
import { KtError } from '../errors.js'

export interface ControlHandlers {
  status (): unknown
  /** Starts the shutdown (of one cluster, or of everything); must not wait for it. */
  down (cluster: string | undefined): void
}

export interface ControlServer {
  readonly path: string
  close (): Promise<void>
}

// A status of thousands of Services is a few MiB; anything past this is not ours.
const MAX_ANSWER = 16 * 1024 * 1024

export async function startControlServer (path: string, handlers: ControlHandlers): Promise<ControlServer> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://kt')
    const send = (code: number, body: unknown): void => {
      const text = JSON.stringify(body) + '\n'
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    }
    req.resume()
    try {
      if (req.method === 'GET' && url.pathname === '/ping') return send(200, { ok: true, pid: process.pid })
      if (req.method === 'GET' && url.pathname === '/status') return send(200, handlers.status())
      if (req.method === 'POST' && url.pathname === '/down') {
        const cluster = url.searchParams.get('cluster') ?? undefined
        send(202, { ok: true, pid: process.pid, ...(cluster !== undefined ? { cluster } : {}) })
        // After the answer is on its way: the shutdown closes this server.
        setImmediate(() => handlers.down(cluster))
        return
      }
      send(404, { ok: false, code: 'KT_ERR_INVALID_ARG', message: `no ${req.method ?? ''} ${url.pathname}` })
    } catch (err) {
      send(500, { ok: false, code: (err as KtError).code ?? 'KT_ERR_INTERNAL', message: (err as Error).message })
    }
  })
  server.keepAliveTimeout = 1000
  if (process.platform !== 'win32') {
    // A socket file left by a crashed run refuses connections; only then is it ours to remove.
    try {
      await controlRequest(path, 'GET', '/ping', 1000)
      throw new KtError('KT_ERR_ALREADY_RUNNING', `another kind-tunnel up answers on ${path}; stop it with \`kind-tunnel down\``)
    } catch (err) {
      if ((err as KtError).code !== 'KT_ERR_NOT_RUNNING') throw err
    }
    await rm(path, { force: true })
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new KtError(err.code === 'EADDRINUSE' ? 'KT_ERR_ALREADY_RUNNING' : 'KT_ERR_LISTEN', `cannot serve the control socket ${path}: ${err.code ?? err.message}`, { cause: err }))
    })
    server.listen(path, () => resolve())
  })
  if (process.platform !== 'win32') await chmod(path, 0o600).catch(() => {})
  return {
    path,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => {
        if (process.platform === 'win32') { resolve(); return }
        rm(path, { force: true }).then(() => resolve(), () => resolve())
      })
    }),
  }
}

/**
 * One request to the control socket; resolves with the JSON body. No socket,
 * a refused one, or no answer in time: KT_ERR_NOT_RUNNING.
 */
export function controlRequest (path: string, method: 'GET' | 'POST', urlPath: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let settled = false
    const done = (err: Error | null, v?: Record<string, unknown>): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== null) reject(err)
      else resolve(v as Record<string, unknown>)
    }
    const notRunning = (why: string): KtError => new KtError('KT_ERR_NOT_RUNNING', `no kind-tunnel up is running (control socket ${path}: ${why}); start one with \`kind-tunnel up\``)
    const req = request({ socketPath: path, method, path: urlPath, headers: { host: 'kt' }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
        if (body.length > MAX_ANSWER) { req.destroy(); done(new KtError('KT_ERR_NOT_RUNNING', 'the control socket answered too much')) }
      })
      res.on('end', () => {
        try {
          const v = JSON.parse(body) as Record<string, unknown>
          if ((res.statusCode ?? 500) >= 400) {
            done(new KtError('KT_ERR_NOT_RUNNING', `the control socket answered ${res.statusCode ?? '?'}: ${String(v.message ?? body)}`))
          } else {
            done(null, v)
          }
        } catch {
          done(notRunning('the answer was not JSON'))
        }
      })
      res.on('error', (err) => done(notRunning(err.message)))
    })
    const timer = setTimeout(() => { req.destroy(); done(notRunning(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
    req.on('error', (err: NodeJS.ErrnoException) => done(notRunning(err.code ?? err.message)))
    req.end()
  })
}
