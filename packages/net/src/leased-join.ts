import { ExecenvError, type Lease, type LeaseResource, type ProcessRunner } from '@execenv/core';
import type { NetworksOptions } from './network-types.js';
import { Networks } from './networks.js';

/**
 * Lease kind of an environment's place on an @execenv/net network; its holder is the environment id.
 *
 * @example
 * ```ts
 * import { readLeases } from '@execenv/core';
 * import { NETWORK_LEASE_KIND } from '@execenv/net';
 * // Which networks the environments of a state directory hold places on:
 * for (const lease of await readLeases(stateDir))
 *   for (const r of lease.resources) if (r.kind === NETWORK_LEASE_KIND) console.log(lease.id, r.network);
 * ```
 */
export const NETWORK_LEASE_KIND = 'execenv-net';

/**
 * How a driver makes the networks its environments join: everything but
 * the state directory (the open's) and the runner (the driver's).
 *
 * @example
 * ```ts
 * import type { DriverNetworksOptions } from '@execenv/net';
 * // A driver option, passed on to every join and release.
 * const networks: DriverNetworksOptions = { pools: ['10.77.0.0/16'], enableForwarding: true };
 * ```
 */
export type DriverNetworksOptions = Omit<NetworksOptions, 'stateDir' | 'runner'>;

/**
 * One environment joining a network.
 *
 * @example
 * ```ts
 * import { type LeasedJoin, leaseJoin } from '@execenv/net';
 * const join: LeasedJoin = { id: env.id, stateDir, network: 'builds', lease };
 * const tap = await (await leaseJoin(runner, {}, join)).attachTap({ network: join.network, holder: join.id });
 * ```
 */
export interface LeasedJoin {
  /** The environment's id: the holder of its address. */
  id: string;
  /** The open's state directory: @execenv/net keeps its record there. */
  stateDir: string;
  /** The network's name (`nat` or a named network). */
  network: string;
  /** The environment's lease: the join is recorded in it before it is made. */
  lease: Lease;
}

/**
 * leaseJoin records in the environment's lease that it joins a network,
 * before anything is made, and gives the Networks to make the join with
 * (attachNamespace, attachTap): close, a failed open's rollback and gc then
 * undo it with releaseLeasedJoin, whatever step it got to.
 *
 * @example
 * ```ts
 * import { leaseJoin } from '@execenv/net';
 * // In a driver's open, inside openWithLease's create:
 * const networks = await leaseJoin(runner, options.networks ?? {}, { id, stateDir, network: 'nat', lease });
 * const link = await networks.attachNamespace({ network: 'nat', holder: id, netns: { path: netnsFile } });
 * ```
 */
export async function leaseJoin(
  runner: ProcessRunner,
  options: DriverNetworksOptions,
  join: LeasedJoin,
): Promise<Networks> {
  await join.lease.add({ kind: NETWORK_LEASE_KIND, holder: join.id, network: join.network, stateDir: join.stateDir });
  return new Networks({ ...options, stateDir: join.stateDir, runner });
}

/**
 * releaseLeasedJoin undoes a NETWORK_LEASE_KIND lease record: the holder's
 * link and address go, and the network with its last holder. It is
 * idempotent, so gc may run it again after an interrupted close.
 *
 * @example
 * ```ts
 * import { hostUndo } from '@execenv/core';
 * import { NETWORK_LEASE_KIND, releaseLeasedJoin } from '@execenv/net';
 * const host = hostUndo(runner);
 * const undo = (r: LeaseResource) =>
 *   r.kind === NETWORK_LEASE_KIND ? releaseLeasedJoin(runner, options.networks ?? {}, r) : host(r);
 * ```
 */
export async function releaseLeasedJoin(
  runner: ProcessRunner,
  options: DriverNetworksOptions,
  record: LeaseResource,
): Promise<void> {
  const { holder, network, stateDir } = record;
  if (typeof holder !== 'string' || typeof network !== 'string' || typeof stateDir !== 'string')
    throw new ExecenvError(
      'CLEANUP_FAILED',
      `execenv: a ${NETWORK_LEASE_KIND} lease record lacks its holder, network or state directory: ${JSON.stringify(record)}`,
    );
  await new Networks({ ...options, stateDir, runner }).release(holder, network);
}
