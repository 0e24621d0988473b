import { writeFile } from 'node:fs/promises';
import type { Lease, LeaseResource, ProcessRunner } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { type NamespaceLink, Networks, type NetworksOptions } from '@execenv/net';

/** Lease kind of a container's veth and address on an @execenv/net network; its holder is the env id. */
export const NET_RESOURCE = 'nspawn-net';

/**
 * How @execenv/net makes the networks containers join: everything but the
 * state directory (the open's) and the runner (the driver's).
 *
 * @example
 * ```ts
 * import { NspawnDriver, type NspawnNetworksOptions } from '@execenv/nspawn';
 * const networks: NspawnNetworksOptions = { pools: ['10.77.0.0/16'], enableForwarding: true };
 * const env = await new NspawnDriver({ networks }).open({ image: './rootfs.tar', network: 'nat' });
 * await env.close();
 * ```
 */
export type NspawnNetworksOptions = Omit<NetworksOptions, 'stateDir' | 'runner'>;

/** Where one container joins a network. */
export interface NetworkJoin {
  /** The environment's id: the holder of its address. */
  id: string;
  /** The open's state directory: @execenv/net keeps its record there. */
  stateDir: string;
  /** The network's name (`nat` or a named network). */
  network: string;
  /** Where the container's network namespace is kept (a bind mount of its nsfs file). */
  netns: string;
  /** The environment's lease: the namespace and the attachment are recorded in it before they are made. */
  lease: Lease;
}

/**
 * Makes the network namespace the container will run in (systemd-nspawn
 * `--network-namespace-path`), kept alive by a bind mount on `join.netns`,
 * and puts it on the network: a veth pair whose host end is on the
 * network's bridge. Both are recorded in the lease before they are made, so
 * close, a failed open and gc undo them.
 */
export async function joinNetwork(
  runner: ProcessRunner,
  options: NspawnNetworksOptions,
  join: NetworkJoin,
): Promise<NamespaceLink> {
  await join.lease.add({ kind: 'mount', path: join.netns });
  await writeFile(join.netns, '', { mode: 0o600 });
  await runner.run(['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', join.netns], {
    env: { PATH: HOST_PATH },
  });
  await join.lease.add({ kind: NET_RESOURCE, holder: join.id, network: join.network, stateDir: join.stateDir });
  const networks = new Networks({ ...options, stateDir: join.stateDir, runner });
  return networks.attachNamespace({ network: join.network, holder: join.id, netns: { path: join.netns } });
}

/** Undoes a NET_RESOURCE record: the holder's veth and address go, and the network with its last holder. */
export async function leaveNetwork(
  runner: ProcessRunner,
  options: NspawnNetworksOptions,
  record: LeaseResource,
): Promise<void> {
  const { holder, network, stateDir } = record;
  if (typeof holder !== 'string' || typeof network !== 'string' || typeof stateDir !== 'string')
    throw new Error(`execenv: malformed ${NET_RESOURCE} lease record for ${String(holder)}`);
  await new Networks({ ...options, stateDir, runner }).release(holder, network);
}
