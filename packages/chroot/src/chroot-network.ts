import type { ProcessRunner } from '@execenv/core';
import { type DriverNetworksOptions, type LeasedJoin, leaseJoin, type NamespaceLink } from '@execenv/net';

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
export type ChrootNetworksOptions = DriverNetworksOptions;

/** Where one environment joins a network: its lease, id and state directory, and the namespace file. */
export interface NetworkJoin extends LeasedJoin {
  /** The environment's network namespace file. */
  netns: string;
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
  const networks = await leaseJoin(runner, options, join);
  return networks.attachNamespace({ network: join.network, holder: join.id, netns: { path: join.netns } });
}
