import { hostUndo, type LeaseResource, type ProcessRunner, type Undo } from '@execenv/core';
import { NETWORK_LEASE_KIND, releaseLeasedJoin } from '@execenv/net';
import type { NspawnNetworksOptions } from './nspawn-network.js';

/** Lease kind naming the persistent machine directory an environment runs on; it is kept, never removed. */
export const MACHINE = 'machine';

/** The lease record of a persistent machine's directory. */
export function machineResource(name: string, path: string): LeaseResource {
  return { kind: MACHINE, name, path };
}

/**
 * The nspawn driver's undo: a persistent machine's directory outlives its
 * environments, so its record is only dropped; a network attachment goes
 * through @execenv/net; core's kinds (dir, process, mount) go to hostUndo.
 */
export function nspawnUndo(runner: ProcessRunner, networks: NspawnNetworksOptions = {}): Undo {
  const host = hostUndo(runner);
  return async (r) => {
    if (r.kind === MACHINE) return;
    if (r.kind === NETWORK_LEASE_KIND) await releaseLeasedJoin(runner, networks, r);
    else await host(r);
  };
}
