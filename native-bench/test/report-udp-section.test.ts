// The UDP workload (src/udp.ts) writes its own section of benchmarks.md; a main
// run keeps it byte for byte, as it keeps the shared and slow-path sections.
import t from 'tap';
import { extractUdpSection, extractUdpRelaySection } from '../src/report.js';

t.test('the UDP section is found between its markers, or not at all', async (t) => {
  const section = '<!-- udp:start -->\n## UDP (issue #16)\n\n| a | $1 |\n<!-- udp:end -->';
  const page = `# Benchmarks\n\nmain run\n\n${section}\n`;
  t.equal(extractUdpSection(page), section);
  t.equal(extractUdpSection('# Benchmarks\n'), undefined);
  t.equal(extractUdpSection(undefined), undefined);
  t.equal(extractUdpSection('<!-- udp:end -->\n<!-- udp:start -->'), undefined, 'markers out of order are no section');
});

t.test('the UDP-through-the-relay section is found between its own markers', async (t) => {
  const udp = '<!-- udp:start -->\nu\n<!-- udp:end -->';
  const relay = '<!-- udp-relay:start -->\n### UDP through the relay\n\nr\n<!-- udp-relay:end -->';
  const page = `# Benchmarks\n\n${udp}\n\n${relay}\n`;
  t.equal(extractUdpRelaySection(page), relay);
  t.equal(extractUdpSection(page), udp, 'the UDP section is not confused with it');
  t.equal(extractUdpRelaySection(`# Benchmarks\n\n${udp}\n`), undefined);
});
