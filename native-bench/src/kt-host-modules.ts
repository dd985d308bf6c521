// The kind-tunnel modules a bench host process drives (relay-host.ts,
// udp-relay-host.ts), loaded from a built checkout's dist/ (`repo`: this one,
// or another for A/B runs), typed only as far as the hosts use them.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface HostDialer { dial (req: unknown): Promise<unknown>; warm (ms: number): Promise<boolean>; stats (): { dataPath: string; hits: number; misses: number; target: number; transport?: string }; mux?: { ready (ms: number): Promise<boolean> } }

export async function loadHostModules(repo: string) {
  const mod = async <T>(rel: string): Promise<T> => (await import(pathToFileURL(join(repo, 'dist', rel)).href)) as T;
  return {
    engine: await mod<{ connectDocker (o?: object): Promise<{ docker: unknown }> }>('src/docker/engine.js'),
    discover: await mod<{ findCluster (o: object): Promise<unknown> }>('src/docker/discover.js'),
    relayc: await mod<{ ensureRelay (o: object): Promise<{ host: string; port: number; token: Buffer }> }>('src/docker/relay-container.js'),
    client: await mod<{ RelayDialer: new (o: object) => HostDialer }>('src/relay/client.js'),
    lm: await mod<{ ListenerManager: new (o: object) => { apply (t: object): Promise<{ failed: unknown[] }>; close (ms: number): Promise<void> } }>('src/dataplane/listener-manager.js'),
    native: await mod<{ loadNativeSplicer (): unknown }>('src/dataplane/native/index.js'),
    logger: await mod<{ createLogger (o: object): unknown }>('src/observe/logger.js'),
    metrics: await mod<{ Registry: new () => unknown }>('src/observe/metrics.js'),
  };
}
