// The real kubectl against the test API server shows the EXTERNAL-IP that
// the controller wrote.

import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

async function kubectl (kubeconfig: string, home: string, args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(home, 'cache'), ...args], {
      timeout: 20_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
      resolve({ code, stdout, stderr })
    })
  })
}

t.test('kubectl get svc shows the assigned EXTERNAL-IP', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ name: 'http', port: 18080 }]))
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP in status')
  const r = await kubectl(h.kubeconfig, h.dir, ['get', 'svc', 'web'])
  t.equal(r.code, 0, r.stderr)
  const rows = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s{2,}/))
  t.same(rows[0]?.slice(0, 4), ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP'])
  t.equal(rows[1]?.[0], 'web')
  t.equal(rows[1]?.[3], ip, `EXTERNAL-IP is ${ip}`)
  const nodePort = (h.api.get('services', 'web') as unknown as { spec: { ports: Array<{ nodePort: number }> } }).spec.ports[0]?.nodePort
  t.equal(rows[1]?.[4], `18080:${nodePort}/TCP`)
})
