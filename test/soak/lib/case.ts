// The shape every soak case returns, shared by the runner (which writes
// docs/reliability.md) and the reliability tap tests (which assert the checks).

export interface Check { name: string, ok: boolean, detail?: string }

export interface CaseResult {
  id: string
  title: string
  /** Named figures for the report, already formatted. */
  figures: Array<[string, string]>
  checks: Check[]
  notes: string[]
  ms: number
}

/** Collects figures and checks; runs cleanups in reverse order even when the case throws. */
export class CaseRun {
  readonly figures: Array<[string, string]> = []
  readonly checks: Check[] = []
  readonly notes: string[] = []
  private readonly cleanups: Array<() => unknown> = []
  private readonly started = Date.now()

  constructor (readonly id: string, readonly title: string, readonly log: (msg: string) => void = () => {}) {}

  figure (name: string, value: string | number): void {
    this.figures.push([name, String(value)])
  }

  check (name: string, ok: boolean, detail?: string): boolean {
    this.checks.push(detail === undefined ? { name, ok } : { name, ok, detail })
    this.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail === undefined ? '' : ` (${detail})`}`)
    return ok
  }

  note (text: string): void { this.notes.push(text) }

  /** Register a cleanup; it runs at the end of the case, last registered first. */
  defer (fn: () => unknown): void { this.cleanups.push(fn) }

  async cleanup (): Promise<void> {
    while (this.cleanups.length > 0) {
      const fn = this.cleanups.pop() as () => unknown
      try { await fn() } catch (err) { this.log(`cleanup failed: ${(err as Error).message}`) }
    }
  }

  result (): CaseResult {
    return { id: this.id, title: this.title, figures: this.figures, checks: this.checks, notes: this.notes, ms: Date.now() - this.started }
  }
}

/** Run `body` in a CaseRun; a thrown error becomes a failed check; cleanups always run. */
export async function runCase (id: string, title: string, log: (msg: string) => void, body: (c: CaseRun) => Promise<void>): Promise<CaseResult> {
  const c = new CaseRun(id, title, log)
  try {
    await body(c)
  } catch (err) {
    c.check('the case ran to the end', false, (err as Error).message.split('\n')[0])
  } finally {
    await c.cleanup()
  }
  return c.result()
}
