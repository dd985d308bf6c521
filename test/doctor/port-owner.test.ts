// Which process holds a port (doctor's ports check): /proc/net/tcp's inode,
// the pid whose fd points at it, and what to call that process. A fake /proc
// tree for the names, and this process's own listening socket for the real one.
import t, { type Test } from 'tap'
import { createServer } from 'node:net'
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { commandName, portOwner } from '../../src/doctor/probes.js'

async function fakeProc (t: Test, procs: Record<string, { comm?: string, cmdline?: string, inode?: string }>, listen: { port: number, inode: string }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kt-proc-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'net'))
  const hex = listen.port.toString(16).toUpperCase().padStart(4, '0')
  await writeFile(join(dir, 'net', 'tcp'), [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    `   0: 0100007F:${hex} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${listen.inode} 1 0000000000000000 100 0 0 10 0`,
    '',
  ].join('\n'))
  for (const [pid, p] of Object.entries(procs)) {
    await mkdir(join(dir, pid, 'fd'), { recursive: true })
    if (p.comm !== undefined) await writeFile(join(dir, pid, 'comm'), `${p.comm}\n`)
    if (p.cmdline !== undefined) await writeFile(join(dir, pid, 'cmdline'), p.cmdline)
    await symlink('/dev/null', join(dir, pid, 'fd', '0'))
    if (p.inode !== undefined) await symlink(`socket:[${p.inode}]`, join(dir, pid, 'fd', '7'))
  }
  return dir
}

t.test('a process is named by its argv[0], not by its main thread\'s name', async (t) => {
  const proc = await fakeProc(t, {
    // Node 24 names its main thread: comm reads MainThread.
    101: { comm: 'MainThread', cmdline: '/usr/local/bin/node\0server.js\0', inode: '555' },
  }, { port: 8443, inode: '555' })
  t.same(await portOwner(8443, proc), { pid: 101, command: 'node' })
  t.equal(await portOwner(8444, proc), undefined, 'nothing listens there')
})

t.test('a title written over argv[0], or none, falls back to comm', async (t) => {
  const proc = await fakeProc(t, {
    201: { comm: 'nginx', cmdline: 'nginx: master process /usr/sbin/nginx -g daemon off;\0' },
    202: { comm: 'kworker/0:1', cmdline: '' },
    203: { cmdline: '' },
    204: { comm: 'python3', cmdline: 'python3\0-m\0http.server\0' },
  }, { port: 1, inode: '1' })
  t.equal(await commandName(proc, '201'), 'nginx')
  t.equal(await commandName(proc, '202'), 'kworker/0:1')
  t.equal(await commandName(proc, '203'), '?', 'neither readable')
  t.equal(await commandName(proc, '204'), 'python3')
  t.equal(await commandName(proc, '999'), '?', 'gone')
})

t.test('the real /proc: this process holds a listening port', { skip: process.platform !== 'linux' && 'Linux only (/proc)' }, async (t) => {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { srv.close() })
  const port = (srv.address() as { port: number }).port
  t.same(await portOwner(port), { pid: process.pid, command: basename(process.argv0) === '' ? 'node' : basename(process.argv0) })
})
