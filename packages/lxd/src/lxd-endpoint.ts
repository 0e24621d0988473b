import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCAL_SOCKETS } from './lxd-options.js';

/**
 * The local sockets an LXD or Incus daemon may listen on, in the order they
 * are tried: `$LXD_SOCKET`, `$LXD_DIR/unix.socket`, `$INCUS_SOCKET`, then
 * Debian's, the snap's and Incus's default paths.
 *
 * @example
 * ```ts
 * import { candidateSockets } from '@execenv/lxd';
 * candidateSockets({ LXD_DIR: '/srv/lxd' });
 * // ['/srv/lxd/unix.socket', '/var/lib/lxd/unix.socket', '/var/snap/lxd/common/lxd/unix.socket',
 * //  '/var/lib/incus/unix.socket']
 * ```
 */
export function candidateSockets(env: NodeJS.ProcessEnv = process.env): string[] {
  const list: string[] = [];
  if (env.LXD_SOCKET) list.push(env.LXD_SOCKET);
  if (env.LXD_DIR) list.push(join(env.LXD_DIR, 'unix.socket'));
  if (env.INCUS_SOCKET) list.push(env.INCUS_SOCKET);
  list.push(...LOCAL_SOCKETS);
  return [...new Set(list)];
}

/**
 * The first candidate socket that exists, or undefined.
 *
 * @example
 * ```ts
 * import { findLocalSocket, LxdDriver } from '@execenv/lxd';
 * const socketPath = await findLocalSocket({ ...process.env, LXD_DIR: '/srv/lxd' });
 * if (socketPath === undefined) throw new Error('no LXD daemon listens on this host');
 * const driver = new LxdDriver({ endpoint: { socketPath }, project: 'ci' });
 * ```
 */
export async function findLocalSocket(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  for (const path of candidateSockets(env)) {
    const st = await stat(path).catch(() => undefined);
    if (st?.isSocket()) return path;
  }
  return undefined;
}
