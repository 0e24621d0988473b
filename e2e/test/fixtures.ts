import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner } from '@execenv/core';

/** Path of the busybox fixture rootfs (plain tar); set by global-setup. */
export function busyboxTarball(ext: '' | '.gz' | '.xz' | '.zst' | '.bz2' = ''): string {
  const path = process.env.EXECENV_FIXTURE_BUSYBOX;
  if (!path) throw new Error('EXECENV_FIXTURE_BUSYBOX is not set: run through vitest (global-setup builds fixtures)');
  return `${path}${ext}`;
}

/** Path of the Debian bookworm minbase fixture rootfs (tar.zst); set by global-setup. */
export function minbaseTarball(): string {
  const path = process.env.EXECENV_FIXTURE_MINBASE;
  if (!path) throw new Error('EXECENV_FIXTURE_MINBASE is not set: run through vitest (global-setup builds fixtures)');
  return path;
}

/** Path of the bootable Debian bookworm fixture rootfs (minbase with systemd, tar.zst); set by global-setup. */
export function systemdTarball(): string {
  const path = process.env.EXECENV_FIXTURE_SYSTEMD;
  if (!path) throw new Error('EXECENV_FIXTURE_SYSTEMD is not set: run through vitest (global-setup builds fixtures)');
  return path;
}

const withSymlinks = new Map<string, Promise<string>>();
let variantsDir: Promise<string> | undefined;

/**
 * A busybox rootfs tarball (`base`, the busybox fixture unless given) whose
 * top-level entries named in `links` (such as `/tmp`) are symlinks to the
 * given paths. Built once per base and set of links in a temporary
 * directory; removeBusyboxVariants removes it.
 */
export function busyboxTarballWithSymlinks(
  links: Record<string, string>,
  base: string = busyboxTarball(),
): Promise<string> {
  const key = JSON.stringify([base, ...Object.entries(links).sort()]);
  let built = withSymlinks.get(key);
  if (!built) {
    built = buildWithSymlinks(links, base);
    withSymlinks.set(key, built);
  }
  return built;
}

async function buildWithSymlinks(links: Record<string, string>, base: string): Promise<string> {
  variantsDir ??= mkdtemp(join(tmpdir(), 'execenv-busybox-variants-'));
  const work = await mkdtemp(join(await variantsDir, 'rootfs-'));
  const root = join(work, 'root');
  await mkdir(root);
  const runner = hostRunner();
  await runner.run(['tar', '--numeric-owner', '-C', root, '-xf', base]);
  for (const [entry, target] of Object.entries(links)) {
    const name = entry.replace(/^\/+/, '');
    if (!name || name.includes('/')) throw new Error(`busyboxTarballWithSymlinks: ${entry} is not a top-level entry`);
    await rm(join(root, name), { recursive: true, force: true });
    await symlink(target, join(root, name));
  }
  const out = join(work, 'busybox-with-symlinks.tar');
  await runner.run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', out, '.']);
  await rm(root, { recursive: true, force: true });
  return out;
}

/** Removes the tarballs busyboxTarballWithSymlinks built. */
export async function removeBusyboxVariants(): Promise<void> {
  const dir = variantsDir;
  variantsDir = undefined;
  withSymlinks.clear();
  if (dir) await rm(await dir, { recursive: true, force: true });
}
