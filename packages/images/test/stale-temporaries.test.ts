import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processStartTime } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { ownedTempName } from '../src/temp-names.js';

let dir: string;
const digest = 'a'.repeat(64);
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-stale-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A real process, killed: its pid and start time name what it "left". */
async function deadOwner(): Promise<string> {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const pid = child.pid!;
  let start: string | undefined;
  for (let i = 0; i < 100 && !start; i++) {
    start = await processStartTime(pid);
    if (!start) await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  return `${pid}-${start}-0123456789ab`;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe('temporaries of dead owners', () => {
  it('the next cache operation sweeps a partial download and a half-extracted tree, and keeps a live one', async () => {
    const dead = await deadOwner();
    const partial = join(dir, 'tmp', dead);
    const staging = join(dir, 'converted', 'directory-v2', `${digest}.${dead}.tmp`);
    const legacyStaging = join(dir, 'converted', 'directory-v2', `${digest}.0a1b2c3d.tmp`);
    const live = join(dir, 'tmp', await ownedTempName());
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await writeFile(partial, Buffer.alloc(4096));
    await writeFile(live, 'being written');
    for (const tree of [staging, legacyStaging]) {
      await mkdir(join(tree, 'root', 'etc'), { recursive: true, mode: 0o755 });
      await writeFile(join(tree, 'root', 'etc', 'os-release'), 'ID=x\n');
    }
    expect(await new ImageCache({ dir }).list()).toEqual([]);
    expect(await exists(partial)).toBe(false);
    expect(await exists(staging)).toBe(false);
    expect(await exists(legacyStaging)).toBe(false);
    expect(await exists(live)).toBe(true);
  });

  it('prune sweeps too, and reports what it removed through sweep()', async () => {
    const cache = new ImageCache({ dir });
    await mkdir(join(dir, 'tmp'));
    const dead = await deadOwner();
    await writeFile(join(dir, 'tmp', `qcow2.${dead}`), 'x');
    await cache.prune(0);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    await writeFile(join(dir, 'tmp', dead), 'x');
    expect(await cache.sweep()).toEqual([join(dir, 'tmp', dead)]);
  });

  it('a download in progress is named for its owner, so a crash leaves something sweepable', async () => {
    const cache = new ImageCache({ dir });
    const path = await cache.tempPath();
    expect(path.startsWith(join(dir, 'tmp', `${process.pid}-`))).toBe(true);
    await writeFile(path, 'x');
    expect(await cache.sweep()).toEqual([]);
  });
});
