import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { mountsUnder } from '../../lifecycle/mounts.js';

/** The sha256 of a host file, read in chunks. */
export async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Describes a host tree as sorted `path type mode [target|size]` lines, for comparisons. */
export async function describeTree(root: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const st = await lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) lines.push(`${rel}${name} link -> ${await readlink(p)}`);
      else if (st.isDirectory()) {
        lines.push(`${rel}${name} dir ${mode}`);
        await walk(p, `${rel}${name}/`);
      } else lines.push(`${rel}${name} file ${mode} ${st.size} ${await sha256(p)}`);
    }
  };
  await walk(root, '');
  return lines;
}

/**
 * What a host directory holds and whether anything is mounted at or below it,
 * for before/after comparisons. Mounts are listed first: a tree with a mount
 * in it is not walked, so a mounted /proc or /dev is never read through.
 */
export async function hostState(dir: string): Promise<string[]> {
  const mounts = await mountsUnder(dir);
  if (mounts.length > 0) return mounts.map((m) => `mount at ${m}`);
  return describeTree(dir).catch((err: Error) => [`unreadable: ${err.message}`]);
}
