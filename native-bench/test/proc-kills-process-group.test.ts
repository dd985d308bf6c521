import { readFileSync } from 'node:fs';
import t from 'tap';
import { cpuSeconds, hasRun, parseStat, pinPids, processTree, rssKiB, run, sleep, start, stop, waitForOutput, wrapArgv } from '../src/proc.js';

/** Still running in that process group (a reused pid would be in another group). */
function stillInGroup(pid: number, pgid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return f[0] !== 'Z' && Number(f[2]) === pgid;
  } catch {
    return false;
  }
}

t.test('stop() ends the process and everything it forked', async (t) => {
  const p = start('forker', 'sh', ['-c', 'sleep 30 & sleep 30 & echo started; wait']);
  t.teardown(() => stop(p, 500));
  await waitForOutput(p, /^started$/m, 5000);
  const tree = processTree(p.pid);
  t.ok(tree.length >= 3, `shell and two sleeps: ${tree.join(',')}`);
  await stop(p, 1000);
  await sleep(100);
  for (const pid of tree) t.notOk(stillInGroup(pid, p.pid), `pid ${pid} is gone`);
});

t.test('run() kills a command that outlives its timeout', async (t) => {
  const t0 = Date.now();
  const r = await run('sleeper', 'sleep', ['30'], { timeoutMs: 300 });
  t.ok(r.timedOut);
  t.equal(r.signal, 'SIGKILL');
  t.ok(Date.now() - t0 < 5000);
});

t.test('taskset and prlimit wrap the command and keep its pid', async (t) => {
  t.same(wrapArgv('x', ['a'], { cpu: '1', nofile: 100 }), ['prlimit', '--nofile=100:100', '--', 'taskset', '-c', '1', 'x', 'a']);
  const r = await run('pinned', 'sh', ['-c', 'grep Cpus_allowed_list /proc/self/status; ulimit -n'], { cpu: '0', nofile: 1000, timeoutMs: 5000 });
  t.match(r.stdout, /Cpus_allowed_list:\s+0\n/);
  t.match(r.stdout, /^1000$/m);
});

t.test('/proc readers: stat fields, CPU and RSS of this process', async (t) => {
  t.same(parseStat('123 (a b) c) S 1 123 123 0 -1 4194560 10 0 0 0 7 3 2 1 20 0 1 0 5 6 7'), { ppid: 1, ticks: 13 });
  t.equal(parseStat('garbage'), undefined);
  let x = 0;
  for (let i = 0; i < 2e6; i++) x += i;
  t.ok(x > 0);
  t.ok(cpuSeconds([process.pid]) > 0);
  t.ok(rssKiB([process.pid]) > 10_000, 'a Node process has more than 10 MiB resident');
  t.equal(rssKiB([2 ** 22 + 12345]), 0, 'a missing pid counts as nothing');
});

t.test('pinPids pins a running process after it started', async (t) => {
  const p = start('sleeper', 'sleep', ['30']);
  t.teardown(() => stop(p, 500));
  await pinPids([p.pid], '0');
  t.match(readFileSync(`/proc/${p.pid}/status`, 'utf8'), /^Cpus_allowed_list:\s+0$/m);
});

t.test('findProcesses matches a flag and its value together, not a value elsewhere on the line', async (t) => {
  // cloud-provider-kind's host tunnel: -host-port A ... -container-port B, where B is another proxy's -host-port.
  const tunnel = ['/usr/sbin/docker-proxy', '-proto', 'tcp', '-host-ip', '127.0.0.1', '-host-port', '41000', '-container-ip', '127.0.0.1', '-container-port', '32768'];
  t.ok(hasRun(tunnel, ['-host-port', '41000']));
  t.notOk(hasRun(tunnel, ['-host-port', '32768']), 'its container port is not its host port');
  t.ok(hasRun(tunnel, []));
  t.notOk(hasRun(['-host-port'], ['-host-port', '1']));
});
