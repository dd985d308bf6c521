// A kubeconfig file that changes under a running controller: a rotated token
// (`kubectl create token` lasts an hour), a re-created cluster. Polled, not
// inotify-watched: editors and `kubectl config` replace the file by rename,
// which an fs.watch on the old inode would miss.

import { readFile } from 'node:fs/promises'
import { unwatchFile, watchFile, type Stats } from 'node:fs'

/**
 * Call `onChange(text)` whenever the file at `path` holds a text other than
 * the last one seen (starting from `initial`). Returns the function that
 * stops watching.
 */
export function watchKubeconfigFile (path: string, initial: string, onChange: (text: string) => void, intervalMs = 2000): () => void {
  let last = initial
  let reading = false
  const listener = (curr: Stats, prev: Stats): void => {
    if (reading || (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino)) return
    reading = true
    readFile(path, 'utf8').then((text) => {
      if (text !== last && text.trim() !== '') {
        last = text
        onChange(text)
      }
    }, () => {}).finally(() => { reading = false })
  }
  watchFile(path, { interval: intervalMs, persistent: false }, listener)
  return () => { unwatchFile(path, listener) }
}
