import { writeFile } from 'node:fs/promises';
import type { ProcessRunner } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { type DriverNetworksOptions, type LeasedJoin, leaseJoin, type NamespaceLink } from '@execenv/net';

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
export type NspawnNetworksOptions = DriverNetworksOptions;

/** Where one container joins a network: its lease, id and state directory, and where its namespace is kept. */
export interface NetworkJoin extends LeasedJoin {
  /** Where the container's network namespace is kept (a bind mount of its nsfs file). */
  netns: string;
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
  const networks = await leaseJoin(runner, options, join);
  return networks.attachNamespace({ network: join.network, holder: join.id, netns: { path: join.netns } });
}
