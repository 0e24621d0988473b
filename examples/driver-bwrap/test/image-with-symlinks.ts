import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner } from '@execenv/core';

const made: string[] = [];

/**
 * A copy of the rootfs tarball `image` whose top-level entries named in
 * `links` (such as `/tmp`) are symlinks to the given host paths: the image a
 * hostile publisher would ship. removeImagesWithSymlinks deletes them.
 */
export async function imageWithSymlinks(image: string, links: Record<string, string>): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'bwrap-hostile-image-'));
  made.push(work);
  const root = join(work, 'root');
  const runner = hostRunner();
  await mkdir(root);
  await runner.run(['tar', '--numeric-owner', '-C', root, '-xf', image]);
  for (const [entry, target] of Object.entries(links)) {
    const name = entry.replace(/^\/+/, '');
    await rm(join(root, name), { recursive: true, force: true });
    await symlink(target, join(root, name));
  }
  const out = join(work, 'image.tar');
  await runner.run(['tar', '--numeric-owner', '-C', root, '-cf', out, '.']);
  return out;
}

/** Deletes what imageWithSymlinks made. */
export async function removeImagesWithSymlinks(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}
