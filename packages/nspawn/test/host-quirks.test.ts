import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { filesystemTypeOf, propagationDir } from '../src/host-quirks.js';

const MOUNTINFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '30 22 0:25 / /run/systemd/nspawn rw,relatime shared:9 - tmpfs tmpfs rw,mode=755',
  '31 22 0:26 / /run/with\\040space rw - tmpfs tmpfs rw',
].join('\n');

describe('filesystemTypeOf', () => {
  it('finds the filesystem of the longest mount point above a path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nspawn-mountinfo-'));
    const file = join(dir, 'mountinfo');
    await writeFile(file, `${MOUNTINFO}\n`);
    try {
      expect(await filesystemTypeOf('/run/systemd/nspawn', file)).toBe('tmpfs');
      expect(await filesystemTypeOf('/run/systemd/nspawn/propagate/x', file)).toBe('tmpfs');
      expect(await filesystemTypeOf('/run/systemd/nspawnx', file)).toBe('ext4');
      expect(await filesystemTypeOf('/run/with space/a', file)).toBe('tmpfs');
      expect(await filesystemTypeOf('/run/systemd', file)).toBe('ext4');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the propagation directory nspawn makes per machine', () => {
    expect(propagationDir('execenv-abc')).toBe('/run/systemd/nspawn/propagate/execenv-abc');
  });
});
