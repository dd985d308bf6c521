// Issue #3's figure: kt-routed ÷ kt-l4 new connections per second, taken within each
// round, median [min–max], for Host-routed (connclose) and SNI-routed (tlsclose) load.
import t from 'tap';
import type { Placement, Results, Sample, WorkloadId } from '../src/defs.js';
import { renderMarkdown, renderSharedSection, renderSvg, routingCostLines } from '../src/report.js';
import { tlsErrors } from '../src/workloads.js';

interface Opts {
  placement?: Placement;
  /** kt-routed's tlsclose run in round 2 failed (a mis-route). */
  routedTlsFails?: boolean;
  withRouted?: boolean;
}

// Rounds drift (× round) but the ratios inside a round do not:
// connclose kt-routed/kt-l4 = 0.95, 0.80, 0.90; tlsclose = 0.98, 0.99, 1.00.
function fixture(o: Opts = {}): Results {
  const samples: Sample[] = [];
  const add = (round: number, contender: string, workload: WorkloadId, metrics: Record<string, number>, error?: string): void => {
    samples.push(error === undefined ? { round, contender, workload, metrics } : { round, contender, workload, metrics, error });
  };
  const connRatio = [0.95, 0.8, 0.9];
  const tlsRatio = [0.98, 0.99, 1.0];
  for (const round of [1, 2, 3]) {
    const k = round;
    add(round, 'direct', 'connclose', { rps: 30_000 * k, p50: 1, p99: 2, p999: 3 });
    add(round, 'docker-proxy', 'connclose', { rps: 12_000 * k, p50: 3, p99: 9, p999: 12, cpuPct: 90 });
    // 20k conn/s at 100% of a core: 50 µs of proxy CPU per connection
    add(round, 'kt-l4', 'connclose', { rps: 20_000 * k, p50: 2, p99: 6, p999: 9, cpuPct: 100 * k });
    add(round, 'direct', 'tlsclose', { rps: 2000 * k, p50: 10, p99: 20, p999: 30, connectErrors: 0, readErrors: 0 });
    add(round, 'docker-proxy', 'tlsclose', { rps: 1500 * k, p50: 12, p99: 25, p999: 40, cpuPct: 20, connectErrors: 0, readErrors: 0 });
    add(round, 'kt-l4', 'tlsclose', { rps: 1900 * k, p50: 11, p99: 22, p999: 31, cpuPct: 19 * k, connectErrors: 0, readErrors: 0 });
    if (o.withRouted !== false) {
      add(round, 'kt-routed', 'connclose', { rps: 20_000 * k * connRatio[round - 1]!, p50: 2, p99: 7, p999: 10, cpuPct: 120 * k * connRatio[round - 1]! });
      if (o.routedTlsFails === true && round === 2) {
        add(round, 'kt-routed', 'tlsclose', {}, 'wrk: 40 connect and 0 read errors in 3000 requests: TLS connections missed their SNI route (the default route is plain HTTP)');
      } else {
        add(round, 'kt-routed', 'tlsclose', { rps: 1900 * k * tlsRatio[round - 1]!, p50: 11, p99: 24, p999: 33, cpuPct: 21 * k, connectErrors: 0, readErrors: 0 });
      }
    }
  }
  const placement = o.placement ?? 'pinned';
  const ids = ['direct', 'kt-l4', ...(o.withRouted !== false ? ['kt-routed'] : []), 'docker-proxy'];
  return {
    schema: 1,
    mode: 'custom',
    command: 'cd native-bench && npm run bench -- --rounds 3 --duration 3 --workloads connclose,tlsclose',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:02:00.000Z',
    machine: { cpuModel: 'Test CPU', cores: 2, kernel: '6.0', node: 'v20.20.2', memoryGiB: 8, loadAvgStart: [0.5, 0.5, 0.5], loadAvgEnd: [1, 1, 1], tools: {}, kindTunnelCommit: 'abc1234' },
    method: {
      rounds: 3,
      durationS: 3,
      bulkOmitS: 1,
      idleConns: 5000,
      ttfbSamples: 2000,
      wrkConnections: 50,
      poolSize: 32,
      nofile: 20000,
      placement,
      pinning: placement === 'shared' ? { loadGenerator: 'unpinned', proxy: 'unpinned', backend: 'unpinned' } : { loadGenerator: 'CPU 0', proxy: 'CPU 1', backend: 'unpinned' },
      seed: 3,
      order: [ids, [...ids].reverse(), ids],
      tls: {
        serverName: 'localhost',
        certificate: 'self-signed ECDSA P-256, made at the start of the run: `openssl req -x509 -newkey ec ...`',
        protocols: 'TLSv1.2 and TLSv1.3',
        resumption: 'none: `ssl_session_tickets off; ssl_session_cache off;`',
      },
    },
    contenders: ids.map((id) => ({ id, label: id === 'direct' ? 'direct (no proxy)' : id, family: id === 'direct' ? 'direct' : id.startsWith('kt-') ? 'kind-tunnel' : 'rival', command: 'x', notes: [] })),
    workloads: [
      { id: 'connclose', label: 'close', backend: 'http', command: "wrk -H 'Connection: close' http://127.0.0.1:P/" },
      { id: 'tlsclose', label: 'tls close', backend: 'https', command: "wrk -H 'Connection: close' https://localhost:P/" },
    ],
    samples,
    notes: [],
  };
}

t.test('one line per workload: the per-round ratio, median [min–max], against the 10% budget', async (t) => {
  const lines = routingCostLines(fixture());
  t.equal(lines.length, 2);
  const [conn, tls] = lines as [string, string];
  t.match(conn, /^- New connections \(`connclose`, plain HTTP, routed by Host\)/);
  t.match(conn, /kt-routed ÷ kt-l4 = \*\*0\.90 \[0\.80–0\.95\]\*\* \(rounds: 0\.95, 0\.80, 0\.90\)/, 'median and range of the within-round ratios, not of the raw rates');
  t.match(conn, /routing costs 10% of the new-connection rate, within issue #3's 10%/);
  t.match(conn, /Proxy CPU per connection: 60 µs routed, 50 µs L4\./, 'CPU % over the rate, in µs per connection');
  t.notMatch(conn, /errors through kt-routed/, 'the error count belongs to the TLS line');
  t.match(tls, /^- New TLS connections \(`tlsclose`, routed by SNI\)/);
  t.match(tls, /\*\*0\.99 \[0\.98–1\.00\]\*\*/);
  t.match(tls, /within issue #3's 10%/);
  t.match(tls, /kt-l4 reaches 0\.95× direct here, so the client and the backend set the rate/, 'a rate bound by the handshakes at the ends is called out');
  t.match(tls, /wrk connect \+ read errors through kt-routed: 0\./);
});

t.test('over budget, and a failed routed round, are both said', async (t) => {
  const r = fixture({ routedTlsFails: true });
  for (const s of r.samples) if (s.contender === 'kt-routed' && s.workload === 'connclose') s.metrics['rps'] = (s.metrics['rps'] ?? 0) * 0.8;
  const [conn, tls] = routingCostLines(r) as [string, string];
  t.match(conn, /\*\*0\.72 \[0\.64–0\.76\]\*\*/);
  t.match(conn, /routing costs 28% of the new-connection rate, over issue #3's 10%/);
  t.match(tls, /rounds: 0\.98, 1\.00\)/, 'the failed round has no ratio');
  t.match(tls, /kt-routed failed in 1 of 3 rounds \(see Failures and gaps\)/);
});

t.test('no kt-routed in the run: no line, no section', async (t) => {
  const r = fixture({ withRouted: false });
  t.same(routingCostLines(r), []);
  t.notMatch(renderMarkdown(r, { resultsFile: 'results/x.json', tried: 'x' }), /routing cost/i);
});

t.test('the page: its section, the TLS column, its p99 and CPU, the TLS method; the shared section too', async (t) => {
  const md = renderMarkdown(fixture(), { resultsFile: 'results/x.json', tried: 'kept' });
  t.match(md, /## Routing cost \(issue #3\)\n\n\*\*routing cost \(issue #3\)\*\*: /);
  t.ok(md.indexOf('## Routing cost (issue #3)') > md.indexOf('## Ratios'), 'after the ratios');
  t.match(md, /\| contender \| new conn\/s \(conn\/s\) \| new TLS conn\/s \(conn\/s\) \|/, 'headline column');
  t.match(md, /\| kt-routed \| [^\n]*\| 3762 \[1862–5700\] \|/, 'kt-routed TLS rate, median [min–max]');
  t.match(md, /TLS conn p99 \(ms\)/);
  t.match(md, /proxy CPU, new TLS conns \(% of a core\)/);
  t.match(md, /\*\*TLS \(new TLS conn\/s\)\*\*: [^\n]*ECDSA P-256[^\n]*resumption none[^\n]*SNI name `localhost` \(bench\.localhost does not resolve here/);
  t.match(md, /wrk[^\n]*not autocannon/);
  t.match(renderSvg(fixture()), /new TLS conn\/s/, 'a chart panel');
  const shared = renderSharedSection(fixture({ placement: 'shared' }), 'results/s.json');
  t.match(shared, /\*\*routing cost \(issue #3\)\*\*, kt-routed ÷ kt-l4 per round, median \[min–max\]:\n\n- New connections/);
  t.match(shared, /proxy CPU, new TLS conns/);
});

t.test('tlsclose errors: fatal for the routed contender, a counted caveat elsewhere', async (t) => {
  t.same(tlsErrors('kt-routed', { requests: 900, connectErrors: 0, readErrors: 0 }), {});
  t.match(tlsErrors('kt-routed', { requests: 900, connectErrors: 3, readErrors: 0 }).error, /wrk: 3 connect and 0 read errors in 900 requests: TLS connections missed their SNI route/);
  const other = tlsErrors('haproxy', { requests: 900, connectErrors: 0, readErrors: 2 });
  t.equal(other.error, undefined);
  t.match(other.note, /2 read errors/);
});
