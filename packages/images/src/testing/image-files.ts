import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner, type ProcessRunner } from '@execenv/core';
import { type Header, pack } from 'tar-stream';
import { archNames } from '../arch.js';
import { type LxdImageInfo, lxdMetadataEntries, type TarEntryHeader } from '../lxd-unified.js';
import type { ImageFiles } from './image-server.js';

/**
 * A tar archive of `entries`, in memory (test fixtures are small).
 *
 * @example
 * ```ts
 * import { tarOf } from '@execenv/images/testing';
 * const rootfs = await tarOf([
 *   { header: { name: './', type: 'directory', mode: 0o755 } },
 *   { header: { name: './etc/', type: 'directory', mode: 0o755 } },
 *   { header: { name: './etc/os-release', mode: 0o644 }, body: 'ID=test\n' },
 * ]);
 * ```
 */
export async function tarOf(entries: readonly { header: TarEntryHeader; body?: string | Buffer }[]): Promise<Buffer> {
  const p = pack();
  for (const { header, body } of entries) {
    if (body === undefined) p.entry(header as Header);
    else p.entry(header as Header, body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * `data` compressed by the host's xz, as image servers ship it.
 *
 * @example
 * ```ts
 * import { tarOf, xzCompress } from '@execenv/images/testing';
 * const tar = await tarOf([{ header: { name: './hello', mode: 0o644 }, body: 'hi\n' }]);
 * const rootfsXz = await xzCompress(tar); // runs the host's xz
 * server.http.routes.set('/images/rootfs.tar.xz', { body: rootfsXz });
 * ```
 */
export async function xzCompress(data: Uint8Array, runner: ProcessRunner = hostRunner()): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'execenv-xz-'));
  try {
    await writeFile(join(dir, 'data'), data);
    await runner.run(['xz', '--compress', '--keep', join(dir, 'data')]);
    return await readFile(join(dir, 'data.xz'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * An lxc-download metadata tarball (xz), as images.linuxcontainers.org
 * ships `meta.tar.xz`: LXC's `config` (its common config included, `lxc.arch`),
 * `templates` listing /etc/hostname and /etc/hosts, `create-message`,
 * `expiry`, and no metadata.yaml.
 *
 * @example
 * ```ts
 * import { resolveImage } from '@execenv/images';
 * import { lxcDownloadMeta } from '@execenv/images/testing';
 * import { writeFile } from 'node:fs/promises';
 * const meta = await lxcDownloadMeta({ architecture: 'amd64', os: 'alpine', release: '3.20' });
 * await writeFile(`${dir}/meta.tar.xz`, meta); // beside a rootfs.tar.xz
 * const image = await resolveImage(`lxd-split:${dir}/meta.tar.xz,${dir}/rootfs.tar.xz`, { cache });
 * console.log(image.kind); // 'lxc-download'
 * ```
 */
export async function lxcDownloadMeta(info: LxdImageInfo, runner: ProcessRunner = hostRunner()): Promise<Buffer> {
  const mtime = info.creationDate ?? new Date();
  const file = (name: string, body: string) => ({ header: { name, mode: 0o644, mtime }, body });
  const config = `lxc.include = LXC_TEMPLATE_CONFIG/${info.os}.common.conf\nlxc.arch = ${archNames(info.architecture).kernel}\n`;
  return xzCompress(
    await tarOf([
      file('config', config),
      file('config-user', `${config}lxc.include = LXC_TEMPLATE_CONFIG/${info.os}.userns.conf\n`),
      file('create-message', `You just created a ${info.os} ${info.release} container.\n`),
      file('excludes-user', ''),
      file('expiry', `${Math.floor(mtime.getTime() / 1000) + 30 * 86400}\n`),
      file('templates', '/etc/hostname\n/etc/hosts\n'),
    ]),
    runner,
  );
}

/**
 * The files of a split image made from a root filesystem tarball: the tarball
 * as `rootfs`, an xz LXD metadata tarball (metadata.yaml and templates) as
 * `meta`, and lxc-download's metadata as `lxcMeta`.
 *
 * @example
 * ```ts
 * import { splitImageFiles, tarOf, xzCompress } from '@execenv/images/testing';
 * const rootfs = await xzCompress(await tarOf([{ header: { name: './', type: 'directory', mode: 0o755 } }]));
 * const files = await splitImageFiles(rootfs, { architecture: 'amd64', os: 'busybox', release: '1.36' });
 * // files.rootfs; files.meta: LXD's metadata.yaml and templates; files.lxcMeta: LXC's config and templates
 * ```
 */
export async function splitImageFiles(
  rootfs: Buffer,
  info: LxdImageInfo,
  runner: ProcessRunner = hostRunner(),
): Promise<ImageFiles> {
  return {
    rootfs,
    meta: await xzCompress(await tarOf(lxdMetadataEntries(info)), runner),
    lxcMeta: await lxcDownloadMeta(info, runner),
  };
}
