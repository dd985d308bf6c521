// What `up` and `down` need from the controller (src/control/controller.ts):
// one controller per cluster feeding RouteTables into a sink, and the
// stand-alone undo for a cluster whose `up` died. Loaded on first use (it
// pulls in @kubernetes/client-node), and passed as a parameter so tests can
// give their own.

import type { Controller, ControllerOptions, UndoOptions } from '../control/controller.js'

export type { Controller as ControllerHandle, ControllerOptions as ControllerStartOptions, RouteSink, UndoOptions } from '../control/controller.js'

export interface ControllerModule {
  startController (o: ControllerOptions): Promise<Controller>
  /** Clear our statuses and finalizers without a running controller; returns how many Services were cleaned. */
  undoCluster (o: UndoOptions): Promise<number>
}

export async function loadController (): Promise<ControllerModule> {
  const m = await import('../control/controller.js')
  return { startController: m.startController, undoCluster: m.undoCluster }
}
