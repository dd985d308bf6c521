// The UDP workload (src/udp.ts) writes its own section of benchmarks.md; a main
// run keeps it byte for byte, as it keeps the shared and slow-path sections.
import t from 'tap';
import { extractUdpSection } from '../src/report.js';

t.test('the UDP section is found between its markers, or not at all', async (t) => {
  const section = '<!-- udp:start -->\n## UDP (issue #16)\n\n| a | $1 |\n<!-- udp:end -->';
  const page = `# Benchmarks\n\nmain run\n\n${section}\n`;
  t.equal(extractUdpSection(page), section);
  t.equal(extractUdpSection('# Benchmarks\n'), undefined);
  t.equal(extractUdpSection(undefined), undefined);
  t.equal(extractUdpSection('<!-- udp:end -->\n<!-- udp:start -->'), undefined, 'markers out of order are no section');
});
