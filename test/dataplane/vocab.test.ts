// Issue 15: one definition of what the JS path and the addon say to each
// other (src/dataplane/vocab.json), generated into vocab.ts and kt_vocab.h.
// The committed files are what the definition gives, and an addon built from
// another definition is refused when it loads (it would read records and
// counters wrong).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadNativeSplicer, nativeUnavailableReason } from '../../src/dataplane/native/index.js'
import { CONN_OUTCOMES, LANE_ERRORS, S, S_COUNT, VOCAB_HASH } from '../../src/dataplane/vocab.js'
import { ErrorCodes } from '../../src/errors.js'
import { createRequire } from 'node:module'

const root = fileURLToPath(new URL('../../../', import.meta.url))

t.test('vocab.ts and kt_vocab.h are what vocab.json gives', async (t) => {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-vocab.mjs'), '--check'], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
})

t.test('the layout has every block in place and the lane errors are registry codes', async (t) => {
  t.equal(S.bytesIn, S.outcomes + CONN_OUTCOMES.length)
  t.equal(S.routes, S.dropped + 1, 'the route block follows dropped (it skipped it once)')
  t.equal(S_COUNT, S.routes + 7)
  for (const code of LANE_ERRORS) t.ok(code in ErrorCodes, `${code} is in src/errors.ts`)
})

t.test('an addon built from another vocabulary is refused at load, with a reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-vocab-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fake = join(dir, 'other.js')
  writeFileSync(fake, 'exports.createEngine = () => ({}); exports.vocabHash = "0000000000000000"\n')
  t.equal(loadNativeSplicer({ addonPath: fake }), undefined)
  t.match(nativeUnavailableReason(), /another vocabulary/)
})

t.test('the built addon reports this tree\'s vocabulary', { skip: process.platform !== 'linux' ? 'Linux only' : false }, async (t) => {
  const s = loadNativeSplicer()
  if (s === undefined) { t.pass(`addon not built: ${nativeUnavailableReason() ?? ''}`); return }
  s.close()
  const addon = createRequire(import.meta.url)(join(root, 'src', 'dataplane', 'native', 'build', 'Release', 'kt_splice.node')) as { vocabHash: string }
  t.equal(addon.vocabHash, VOCAB_HASH)
})
