import type { Lease, LeaseResource, ProcessRunner } from '@execenv/core';
import { type NamespaceLink, Networks, type NetworksOptions } from '@execenv/net';

/** Lease kind of an environment's veth and address on an @execenv/net network; its holder is the env id. */
export const NET_RESOURCE = 'chroot-net';

/**
 * How @execenv/net makes the networks environments join: everything but the
 * state directory (the open's) and the runner (the driver's).
 *
 * @example
 * ```ts
 * import { ChrootDriver, type ChrootNetworksOptions } from '@execenv/chroot';
 * const networks: ChrootNetworksOptions = { pools: ['10.77.0.0/16'], enableForwarding: true };
 * const env = await new ChrootDriver({ mode: 'root', networks }).open({ image: './rootfs.tar', network: 'nat' });
 * await env.close();
 * ```
 */
export type ChrootNetworksOptions = Omit<NetworksOptions, 'stateDir' | 'runner'>;

/** Where one environment joins a network. */
export interface NetworkJoin {
  /** The environment's id: the holder of its address. */
  id: string;
  /** The open's state directory: @execenv/net keeps its record there. */
  stateDir: string;
  /** The network's name (`nat` or a named network). */
  network: string;
  /** The environment's network namespace file. */
  netns: string;
  /** The environment's lease: the attachment is recorded in it before it is made. */
  lease: Lease;
}

/**
 * Puts the environment's namespace on a network: a veth pair whose host end
 * is on the network's bridge, made after it is recorded in the lease, so
 * close, a failed open and gc release it.
 */
export async function joinNetwork(
  runner: ProcessRunner,
  options: ChrootNetworksOptions,
  join: NetworkJoin,
): Promise<NamespaceLink> {
  await join.lease.add({ kind: NET_RESOURCE, holder: join.id, network: join.network, stateDir: join.stateDir });
  const networks = new Networks({ ...options, stateDir: join.stateDir, runner });
  return networks.attachNamespace({ network: join.network, holder: join.id, netns: { path: join.netns } });
}

/** Undoes a NET_RESOURCE record: the holder's veth and address go, and the network with its last holder. */
export async function leaveNetwork(
  runner: ProcessRunner,
  options: ChrootNetworksOptions,
  record: LeaseResource,
): Promise<void> {
  const { holder, network, stateDir } = record;
  if (typeof holder !== 'string' || typeof network !== 'string' || typeof stateDir !== 'string')
    throw new Error(`execenv: malformed ${NET_RESOURCE} lease record for ${String(holder)}`);
  await new Networks({ ...options, stateDir, runner }).release(holder, network);
}
