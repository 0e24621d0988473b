import { hostUndo, type LeaseResource, type ProcessRunner, type Undo } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { NETWORK_LEASE_KIND, releaseLeasedJoin } from '@execenv/net';
import type { ChrootNetworksOptions } from './chroot-network.js';

/** Lease kind of a tree whose files subordinate ids may own (rootless mode's overlay upper and work). */
export const MAPPED_TREE = 'mapped-tree';

/** The lease record of `path`, removed in a user namespace mapped by `mapArgs` (unshare's --map-* options). */
export function mappedTree(path: string, mapArgs: readonly string[]): LeaseResource {
  return { kind: MAPPED_TREE, path, mapArgs: [...mapArgs] };
}

/**
 * Removes a tree from inside a fresh user namespace with the environment's id
 * mapping: there, its root owns every mapped id, so files that subordinate
 * ids own (which the unprivileged host user cannot delete) go too. Runs after
 * the holder process is gone, so nothing is mounted any more.
 */
async function removeMappedTree(runner: ProcessRunner, r: LeaseResource): Promise<void> {
  const mapArgs = r.mapArgs;
  // The record is replayed by gc(): only unshare's mapping options, never anything else.
  if (
    typeof r.path !== 'string' ||
    !Array.isArray(mapArgs) ||
    !mapArgs.every((a) => typeof a === 'string' && /^--map-(root-user|users=[\d,]+|groups=[\d,]+)$/.test(a))
  )
    throw new Error(`execenv: malformed ${MAPPED_TREE} lease record for ${String(r.path)}`);
  await runner.run(['unshare', '--user', ...mapArgs, '--', 'rm', '-rf', '--one-file-system', '--', r.path], {
    env: { PATH: HOST_PATH },
  });
}

/**
 * The chroot driver's undo: mapped trees here, network attachments through
 * @execenv/net, core's kinds (dir, mount, process) by hostUndo.
 */
export function chrootUndo(runner: ProcessRunner, networks: ChrootNetworksOptions = {}): Undo {
  const host = hostUndo(runner);
  return (r) => {
    if (r.kind === MAPPED_TREE) return removeMappedTree(runner, r);
    if (r.kind === NETWORK_LEASE_KIND) return releaseLeasedJoin(runner, networks, r);
    return host(r);
  };
}
