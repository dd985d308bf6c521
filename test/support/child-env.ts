// Preloaded into every test process (package.json: tap.node-arg).
//
// tap runs each test file with its process-info hook, and that hook adds
// itself to every child process a test starts (through process-on-spawn):
// the CLI, backend children, the relay. In a child it routes every module
// load through an off-thread loader, which more than doubles the CPU of a
// CLI start (about 0.5 s to 1.3 s here), and with coverage off it records
// nothing anyone reads. So children start without it: a spawn listener that
// runs after the hook's own takes it out of the child's environment again.
// If the hook is absent (run without tap), this does nothing. The same
// listener drops tap-hooks-off.js (NODE_OPTIONS of the test script: a path
// relative to the repository root) from the children's NODE_OPTIONS.

type SpawnOpts = { env: Record<string, string | undefined> }
const state = (globalThis as Record<symbol, { listeners?: Array<(o: SpawnOpts) => void> } | undefined>)[Symbol.for('process-on-spawn@*:singletonId')]

if (process.env.KT_TEST_CHILD_PROCESSINFO !== '1' && Array.isArray(state?.listeners)) {
  state.listeners.push((o) => {
    const env: Record<string, string | undefined> = {}
    for (const [k, v] of Object.entries(o.env)) if (!k.startsWith('_TAPJS_PROCESSINFO_')) env[k] = v
    const kept = (env.NODE_OPTIONS ?? '').split(/\s+/).filter((x) => x !== '' && !x.includes('@tapjs/processinfo') && !x.includes('tap-hooks-off'))
    if (kept.length > 0) env.NODE_OPTIONS = kept.join(' ')
    else delete env.NODE_OPTIONS
    o.env = env
  })
}

export {}
