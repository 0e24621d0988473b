import { writeFile } from 'node:fs/promises';
import { InvalidSpecError } from '@execenv/core';
import type { ChrootMode } from './chroot-options.js';

/** Layout of one environment's directories, as seen from the namespace that holds its mounts. */
export interface RootLayout {
  /** Read-only lower layer: the prepared root filesystem. */
  base: string;
  /** Overlay upper layer: every change the environment makes. */
  upper: string;
  /** Overlay work directory. */
  work: string;
  /** Where the merged root is mounted. */
  root: string;
}

/** How mount steps reach the namespace holding the mounts. */
export interface MountContext {
  mode: ChrootMode;
  /** Runs a host command (prefixed with nsenter in rootless mode). */
  run(argv: string[]): Promise<unknown>;
  /** Maps a path of the mount namespace to one the host process can open (via /proc/<pid>/root in rootless mode). */
  hostPath(path: string): string;
}

function overlayOptions(layout: RootLayout, mode: ChrootMode): string {
  for (const [name, dir] of Object.entries(layout))
    if (/[,:\\]/.test(dir))
      throw new InvalidSpecError(
        name === 'base' ? 'image' : 'stateDir',
        `path ${dir} must not contain ",", ":" or "\\" (overlayfs options)`,
      );
  const opts = [`lowerdir=${layout.base}`, `upperdir=${layout.upper}`, `workdir=${layout.work}`];
  // Inside a user namespace overlayfs must keep its metadata in user.* xattrs.
  if (mode === 'rootless') opts.push('userxattr');
  return opts.join(',');
}

/**
 * Mounts the environment's root: an overlay over the base, so the image
 * never changes. Everything inside it (/proc, /sys, /dev, the spec's binds)
 * is mounted by the agent after it has pivoted into the root, at paths
 * resolved there: a symlink in the image can never place a mount on the host.
 */
export async function mountOverlay(layout: RootLayout, ctx: MountContext): Promise<void> {
  await ctx.run(['mount', '-t', 'overlay', 'overlay', '-o', overlayOptions(layout, ctx.mode), layout.root]);
}

/**
 * Creates the environment's network namespace, kept alive by a bind mount on
 * `file`, with its loopback up; the agent joins it, so every command shares it.
 */
export async function createNetworkNamespace(file: string, ctx: MountContext): Promise<void> {
  await writeFile(ctx.hostPath(file), '');
  await ctx.run(['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', file]);
  await ctx.run(['nsenter', `--net=${file}`, '--', 'ip', 'link', 'set', 'lo', 'up']);
}
