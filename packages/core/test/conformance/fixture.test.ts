import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REQUIRED_COMMANDS } from '../../src/conformance/checks/prerequisites.js';
import { buildConformanceImage } from '../../src/conformance/fixture.js';
import { findBinary } from '../../src/driver/host.js';
import { isStaticElf } from '../../src/driver/static-elf.js';

const busybox = await findBinary('busybox');
const usable = busybox !== undefined && (await isStaticElf(busybox));

describe.skipIf(!usable)('buildConformanceImage (with the host busybox, which is static here)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'execenv-fixture-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a rootfs with every required command, nobody 65534:65534 and /tmp 1777', async () => {
    const dest = await buildConformanceImage({ dest: join(dir, 'image.tar') });
    const entries = new Map<string, { type: string; mode: number; linkname?: string | null; text?: string }>();
    const ex = extract();
    createReadStream(dest).pipe(ex);
    for await (const e of ex) {
      const chunks: Buffer[] = [];
      for await (const c of e as AsyncIterable<Buffer>) chunks.push(c);
      entries.set(e.header.name.replace(/^\.\//, '').replace(/\/$/, ''), {
        type: e.header.type ?? 'file',
        mode: e.header.mode ?? 0,
        linkname: e.header.linkname,
        text: e.header.name.includes('etc/') ? Buffer.concat(chunks).toString() : undefined,
      });
    }
    const commandPaths = REQUIRED_COMMANDS.map((c) =>
      ['bin', 'usr/bin', 'sbin', 'usr/sbin'].some((d) => entries.get(`${d}/${c}`)?.linkname === '/bin/busybox'),
    );
    expect(commandPaths.every(Boolean)).toBe(true);
    expect(entries.get('tmp')).toMatchObject({ type: 'directory', mode: 0o1777 });
    expect(entries.get('etc/passwd')?.text).toContain('nobody:x:65534:65534:');
    expect(await isStaticElf(dest).catch(() => false)).toBe(false);
    expect((await readFile(dest)).length).toBeLessThan(8 << 20);
  });
});

it('isStaticElf tells a static busybox from a dynamic node', async () => {
  expect(await isStaticElf(process.execPath)).toBe(false);
});
