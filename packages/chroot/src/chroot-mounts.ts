import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidSpecError, type MountSpec, resolveInRoot } from '@execenv/core';
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

const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

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
 * Mounts the environment's root: an overlay over the base, then /proc, /sys,
 * a minimal /dev with its own devpts, and /dev/shm. Every mount is below
 * `layout.root`, so unmounting that tree (or ending the holder namespace)
 * undoes all of them.
 */
export async function mountRoot(layout: RootLayout, ctx: MountContext): Promise<void> {
  const { root } = layout;
  const host = (p: string) => ctx.hostPath(join(root, p));
  const bind = ctx.mode === 'rootless' ? ['mount', '--rbind'] : ['mount', '--bind'];
  await ctx.run(['mount', '-t', 'overlay', 'overlay', '-o', overlayOptions(layout, ctx.mode), root]);
  for (const dir of ['proc', 'sys', 'dev', 'tmp']) await mkdir(host(dir), { recursive: true });
  if (ctx.mode === 'root')
    await ctx.run(['mount', '-t', 'proc', '-o', 'nosuid,nodev,noexec', 'proc', join(root, 'proc')]);
  // Only an rbind of the host's /proc is allowed in a user namespace; each exec mounts its own on top.
  else await ctx.run([...bind, '/proc', join(root, 'proc')]);
  await ctx.run(['mount', '--rbind', '/sys', join(root, 'sys')]);
  await ctx.run(['mount', '--make-rslave', join(root, 'sys')]);
  await ctx.run(['mount', '-t', 'tmpfs', '-o', 'mode=755,nosuid,size=65536k', 'tmpfs', join(root, 'dev')]);
  for (const dev of DEVICES) {
    await writeFile(host(`dev/${dev}`), '');
    await ctx.run(['mount', '--bind', `/dev/${dev}`, join(root, 'dev', dev)]);
  }
  await mkdir(host('dev/pts'));
  await mkdir(host('dev/shm'));
  await ctx.run(['mount', '-t', 'devpts', '-o', 'newinstance,ptmxmode=0666,mode=620', 'devpts', join(root, 'dev/pts')]);
  await ctx.run(['mount', '-t', 'tmpfs', '-o', 'mode=1777,nosuid,nodev', 'tmpfs', join(root, 'dev/shm')]);
  for (const [name, target] of [
    ['ptmx', 'pts/ptmx'],
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
  ] as const)
    await symlink(target, host(`dev/${name}`));
}

/**
 * Bind-mounts host directories into the environment. Targets resolve inside
 * the root, so a symlink in the image cannot redirect a mount onto the host.
 */
export async function mountBinds(layout: RootLayout, mounts: readonly MountSpec[], ctx: MountContext): Promise<void> {
  for (const m of mounts) {
    const hostTarget = await resolveInRoot(ctx.hostPath(layout.root), m.target, { followFinal: true });
    await mkdir(hostTarget, { recursive: true });
    const inNamespace = join(layout.root, hostTarget.slice(ctx.hostPath(layout.root).length));
    await ctx.run(['mount', '--rbind', m.source, inNamespace]);
    if (m.readOnly) await ctx.run(['mount', '-o', 'remount,bind,ro', inNamespace]);
  }
}

/**
 * Creates the environment's network namespace, kept alive by a bind mount on
 * `file`, with its loopback up; the exec server joins it, so every command shares it.
 */
export async function createNetworkNamespace(file: string, ctx: MountContext): Promise<void> {
  await writeFile(ctx.hostPath(file), '');
  await ctx.run(['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', file]);
  await ctx.run(['nsenter', `--net=${file}`, '--', 'ip', 'link', 'set', 'lo', 'up']);
}
