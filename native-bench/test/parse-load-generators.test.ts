import t from 'tap';
import { parseAutocannon, parseIperf, parseTtfb, parseWrk } from '../src/parse.js';

t.test('wrk: our Lua summary line gives req/s, percentiles in ms and real errors', async (t) => {
  const out = `Running 1s test @ http://127.0.0.1:1/\n  1 threads and 50 connections\nKTBENCH {"requests":50000,"duration_us":2000000,"p50_us":500,"p99_us":2500,"p999_us":9000,"max_us":12000,"connect":0,"read":7,"write":0,"status":2,"timeout":1}\n`;
  const m = parseWrk(out);
  t.equal(m['rps'], 25000);
  t.equal(m['p50'], 0.5);
  t.equal(m['p99'], 2.5);
  t.equal(m['p999'], 9);
  t.equal(m['errors'], 3, 'read errors are how wrk sees Connection: close, so they do not count');
});

t.test('wrk: no summary or no request is an error', async (t) => {
  t.throws(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused\n'), /no summary/);
  t.throws(
    () => parseWrk('KTBENCH {"requests":0,"duration_us":1000000,"p50_us":0,"p99_us":0,"p999_us":0,"max_us":0,"connect":50,"read":0,"write":0,"status":0,"timeout":0}'),
    /no request/,
  );
});

t.test('iperf3: the receiver rate, and the bytes including the omitted warm-up', async (t) => {
  const j = {
    intervals: [{ sum: { bytes: 1e9, omitted: true } }, { sum: { bytes: 2e9 } }, { sum: { bytes: 2e9 } }],
    end: { sum_received: { bytes: 3.9e9, bits_per_second: 15.6e9 }, sum_sent: { bytes: 4e9 } },
  };
  const m = parseIperf(JSON.stringify(j));
  t.equal(m['gbps'], 15.6);
  t.equal(m['bytesTotal'], 5e9);
  t.throws(() => parseIperf(JSON.stringify({ error: 'unable to connect to server: Connection refused' })), /Connection refused/);
  t.throws(() => parseIperf(JSON.stringify({ end: {} })), /no received rate/);
});

t.test('autocannon: req/s from total over duration, percentiles from its JSON', async (t) => {
  const out = `some banner\n${JSON.stringify({ requests: { average: 1, total: 30000 }, duration: 3, errors: 1, timeouts: 0, non2xx: 2, latency: { p50: 1, p99: 4, p99_9: 9 } })}\n`;
  const m = parseAutocannon(out);
  t.equal(m['rps'], 10000);
  t.equal(m['p999'], 9);
  t.equal(m['errors'], 3);
  t.throws(() => parseAutocannon('Error: connect ECONNREFUSED'), /no JSON/);
});

t.test('ttfb: the client line, and an error when nothing succeeded', async (t) => {
  t.same(parseTtfb('{"samples":10,"errors":0,"p50":120,"p90":200,"p99":300,"max":400}\n'), { p50: 120, p90: 200, p99: 300, samples: 10, errors: 0 });
  t.throws(() => parseTtfb('{"samples":0,"errors":5,"p50":null,"p90":null,"p99":null,"max":null}'), /no successful sample/);
});
