import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { lxdImageFiles } from '../src/lxd-image-files.js';
import { resolveImage } from '../src/resolve-image.js';
import { lxcDownloadMeta, tarOf, xzCompress } from '../src/testing/image-files.js';

const run = promisify(execFile);
let dir: string;
let cache: ImageCache;
const ctx = () => ({ cache, runner: hostRunner() });
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-lxcmeta-'));
  cache = new ImageCache({ dir: join(dir, 'cache') });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rootfs(): Promise<string> {
  const path = join(dir, 'rootfs.tar.xz');
  const file = (name: string, body: string) => ({ header: { name, mode: 0o644 }, body });
  await writeFile(
    path,
    await xzCompress(
      await tarOf([
        { header: { name: './', type: 'directory', mode: 0o755 } },
        { header: { name: './etc/', type: 'directory', mode: 0o755 } },
        file('./etc/hostname', 'LXC_NAME\n'),
        file('./etc/hosts', '127.0.0.1 localhost\n'),
        file('./etc/motd', 'Welcome to LXC_NAME\n'),
      ]),
    ),
  );
  return path;
}

async function lxcMeta(templates: string): Promise<string> {
  const path = join(dir, 'meta.tar.xz');
  const mtime = new Date('2026-11-22T00:00:00Z');
  const file = (name: string, body: string) => ({ header: { name, mode: 0o644, mtime }, body });
  await writeFile(
    path,
    await xzCompress(
      await tarOf([
        file('config', 'lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = x86_64\n'),
        file('create-message', 'hello\n'),
        file('templates', templates),
      ]),
    ),
  );
  return path;
}

async function untar(path: string, name: string): Promise<string> {
  return (await run('tar', ['-xOf', path, name])).stdout;
}

describe('lxc-download metadata', () => {
  it('lxd-split: with lxc-download metadata resolves as lxc-download, not as an LXD image', async () => {
    const image = `lxd-split:${await lxcMeta('/etc/hostname\n')},${await rootfs()}`;
    expect(await resolveImage(image, { cache })).toMatchObject({ kind: 'lxc-download' });
  });

  it('converts to LXD metadata: metadata.yaml from its config, its templates mapped from the rootfs', async () => {
    const resolved = await resolveImage(
      `lxd-split:${await lxcMeta('/etc/hostname\n/etc/hosts\n/etc/motd\n')},${await rootfs()}`,
      {
        cache,
      },
    );
    const files = await lxdImageFiles(resolved, ctx());
    if (files.kind !== 'split') throw new Error('expected a split image');
    expect(files.rootfs).toBe(join(dir, 'rootfs.tar.xz'));
    const yaml = await untar(files.meta, 'metadata.yaml');
    expect(yaml).toContain('architecture: "x86_64"');
    expect(yaml).toContain(`creation_date: ${Date.parse('2026-11-22T00:00:00Z') / 1000}`);
    expect(yaml).toContain('os: "debian"');
    expect(yaml).toContain(
      '  /etc/motd:\n    when:\n      - create\n      - copy\n    create_only: false\n    template: etc-motd.tpl\n',
    );
    expect(await untar(files.meta, 'templates/etc-motd.tpl')).toBe('Welcome to {{ container.name }}\n');
    expect(await untar(files.meta, 'templates/etc-hostname.tpl')).toBe('{{ container.name }}\n');
    // The rootfs /etc/hosts names no LXC_NAME: LXD's usual template stands in.
    expect(await untar(files.meta, 'templates/hosts.tpl')).toContain('127.0.1.1   {{ container.name }}');
    expect((await lxdImageFiles(resolved, ctx())).kind).toBe('split');
    expect((await cache.list()).filter((e) => e.name.includes('lxd metadata')).length).toBe(1);
  });

  it('takes os and release from the index entry when it came from one', async () => {
    const meta = await lxcMeta('');
    const resolved = {
      kind: 'lxc-download' as const,
      meta,
      rootfs: await rootfs(),
      origin: { distribution: 'busybox', release: '1.36', architecture: 'amd64', variant: 'default' },
    };
    const files = await lxdImageFiles(resolved, ctx());
    if (files.kind !== 'split') throw new Error('expected a split image');
    const yaml = await untar(files.meta, 'metadata.yaml');
    expect(yaml).toContain('os: "busybox"');
    expect(yaml).toContain('release: "1.36"');
  });

  it('the testing server ships lxc-download metadata as meta.tar.xz', async () => {
    const meta = await lxcDownloadMeta({ architecture: 'arm64', os: 'alpine', release: '3.20' });
    await mkdir(join(dir, 'm'));
    await writeFile(join(dir, 'm', 'meta.tar.xz'), meta);
    expect(await untar(join(dir, 'm', 'meta.tar.xz'), 'config')).toContain('lxc.arch = aarch64');
    await expect(untar(join(dir, 'm', 'meta.tar.xz'), 'metadata.yaml')).rejects.toThrow();
  });
});

describe('lxdImageFiles', () => {
  it('converts a rootfs tarball to a zstd unified tarball, refusing without os and release', async () => {
    const path = await rootfs();
    const resolved = await resolveImage(path, { cache });
    await expect(lxdImageFiles(resolved, ctx())).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    const files = await lxdImageFiles(resolved, ctx(), { architecture: 'amd64', os: 'debian', release: 'bookworm' });
    if (files.kind !== 'unified') throw new Error('expected a unified image');
    expect((await readFile(files.path)).subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
  });
});
