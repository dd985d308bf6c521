// Label and field selectors with the grammar of k8s.io/apimachinery/pkg/labels
// and pkg/fields. A parse failure is a 400, as on the real server.

import { badRequest } from './status.js'
import { fieldReader, type KubeObject, type ResourceDef } from './resources.js'

type Op = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt'
interface LabelRequirement { key: string, op: Op, values: string[] }

export type LabelSelector = (labels: Record<string, string> | undefined) => boolean
export type FieldSelector = (o: KubeObject) => boolean

const KEY_CHARS = /[A-Za-z0-9._/-]/
const VALUE_CHARS = /[A-Za-z0-9._-]/
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const PREFIX_PART = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

function checkKey (key: string): void {
  const slash = key.indexOf('/')
  const name = slash === -1 ? key : key.slice(slash + 1)
  const prefix = slash === -1 ? '' : key.slice(0, slash)
  const ok = name.length > 0 && name.length <= 63 && NAME_PART.test(name) &&
    (slash === -1 || (prefix.length > 0 && prefix.length <= 253 && PREFIX_PART.test(prefix)))
  if (!ok) throw badRequest(`unable to parse requirement: key: Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`)
}

function checkValue (v: string): void {
  if (v !== '' && (v.length > 63 || !NAME_PART.test(v))) {
    throw badRequest(`unable to parse requirement: values[0][]: Invalid value: "${v}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`)
  }
}

class Scanner {
  i = 0
  constructor (readonly s: string) {}
  ws (): void { while (this.i < this.s.length && /\s/.test(this.s[this.i] as string)) this.i++ }
  end (): boolean { this.ws(); return this.i >= this.s.length }
  peek (n = 1): string { return this.s.slice(this.i, this.i + n) }
  read (re: RegExp): string {
    const start = this.i
    while (this.i < this.s.length && re.test(this.s[this.i] as string)) this.i++
    return this.s.slice(start, this.i)
  }

  fail (what: string): never {
    throw badRequest(`unable to parse requirement: found '${this.s.slice(this.i, this.i + 1) || 'EOS'}', expected: ${what}`)
  }
}

function parseRequirement (sc: Scanner): LabelRequirement {
  sc.ws()
  if (sc.peek() === '!') {
    sc.i++
    sc.ws()
    const key = sc.read(KEY_CHARS)
    checkKey(key)
    return { key, op: '!exists', values: [] }
  }
  const key = sc.read(KEY_CHARS)
  if (key === '') sc.fail('identifier')
  checkKey(key)
  sc.ws()
  if (sc.i >= sc.s.length || sc.peek() === ',') return { key, op: 'exists', values: [] }
  let op: Op
  if (sc.peek(2) === '==') { op = '='; sc.i += 2 } else if (sc.peek(2) === '!=') { op = '!='; sc.i += 2 } else if (sc.peek() === '=') { op = '='; sc.i++ } else if (sc.peek() === '>') { op = 'gt'; sc.i++ } else if (sc.peek() === '<') { op = 'lt'; sc.i++ } else {
    const word = sc.read(/[a-z]/)
    if (word === 'in') op = 'in'
    else if (word === 'notin') op = 'notin'
    else sc.fail('=, !=, ==, in, notin, >, <')
  }
  sc.ws()
  if (op === 'in' || op === 'notin') {
    if (sc.peek() !== '(') sc.fail('(')
    sc.i++
    const values: string[] = []
    for (let n = 0; n <= sc.s.length; n++) {
      sc.ws()
      const v = sc.read(VALUE_CHARS)
      checkValue(v)
      values.push(v)
      sc.ws()
      if (sc.peek() === ',') { sc.i++; continue }
      if (sc.peek() === ')') { sc.i++; break }
      sc.fail(', or )')
    }
    if (values.length === 1 && values[0] === '') throw badRequest(`unable to parse requirement: values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty`)
    return { key, op, values }
  }
  const v = sc.read(VALUE_CHARS)
  if ((op === 'gt' || op === 'lt') && !/^-?\d+$/.test(v)) sc.fail('integer')
  checkValue(v)
  return { key, op, values: [v] }
}

export function parseLabelSelector (raw: string | null | undefined): LabelSelector {
  if (raw === null || raw === undefined || raw.trim() === '') return () => true
  const sc = new Scanner(raw)
  const reqs: LabelRequirement[] = []
  for (let n = 0; n <= raw.length; n++) {
    reqs.push(parseRequirement(sc))
    if (sc.end()) break
    if (sc.peek() !== ',') sc.fail(',')
    sc.i++
  }
  return (labels) => reqs.every((r) => matchRequirement(r, labels ?? {}))
}

function matchRequirement (r: LabelRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key)
  const v = labels[r.key]
  switch (r.op) {
    case 'exists': return has
    case '!exists': return !has
    case '=': return has && v === r.values[0]
    case '!=': return !has || v !== r.values[0]
    case 'in': return has && r.values.includes(v as string)
    case 'notin': return !has || !r.values.includes(v as string)
    case 'gt': return has && /^-?\d+$/.test(v as string) && Number(v) > Number(r.values[0])
    case 'lt': return has && /^-?\d+$/.test(v as string) && Number(v) < Number(r.values[0])
  }
}

/** Splits on an unescaped separator; `\` escapes `\`, `,` and `=` (fields.EscapeValue). */
function splitEscaped (s: string, sep: string): string[] {
  const out: string[] = []
  let cur = ''
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string
    if (c === '\\' && i + 1 < s.length) { cur += c + (s[i + 1] as string); i++; continue }
    if (c === sep) { out.push(cur); cur = ''; continue }
    cur += c
  }
  out.push(cur)
  return out
}

function unescape (s: string): string {
  return s.replace(/\\(.)/g, '$1')
}

export function parseFieldSelector (raw: string | null | undefined, r: ResourceDef): FieldSelector {
  if (raw === null || raw === undefined || raw.trim() === '') return () => true
  const terms: Array<{ read: (o: KubeObject) => string, neg: boolean, value: string }> = []
  for (const term of splitEscaped(raw, ',')) {
    let m = /^(.*?)(==|!=|=)(.*)$/s.exec(term)
    // The operator must be unescaped: re-find past any backslash-escaped '='.
    if (m !== null && (m[1] as string).endsWith('\\')) m = null
    if (m === null) throw badRequest(`invalid selector: '${raw}'; can't understand '${term}'`)
    const label = (m[1] as string).trim()
    const read = fieldReader(r, label)
    if (read === undefined) throw badRequest(`field label not supported: ${label}`)
    terms.push({ read, neg: m[2] === '!=', value: unescape(m[3] as string) })
  }
  return (o) => terms.every((t) => (t.read(o) === t.value) !== t.neg)
}
