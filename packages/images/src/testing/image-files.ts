import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner, type ProcessRunner } from '@execenv/core';
import { pack } from 'tar-stream';
import { type LxdImageInfo, lxdMetadataEntries, type TarEntryHeader } from '../lxd-unified.js';
import type { ImageFiles } from './image-server.js';

/** A tar archive of `entries`, in memory (test fixtures are small). */
export async function tarOf(entries: readonly { header: TarEntryHeader; body?: string | Buffer }[]): Promise<Buffer> {
  const p = pack();
  for (const { header, body } of entries) {
    if (body === undefined) p.entry(header);
    else p.entry(header, body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** `data` compressed by the host's xz, as image servers ship it. */
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
 * The files of a split image made from a root filesystem tarball: the tarball
 * as `rootfs`, and an xz metadata tarball (metadata.yaml and templates) as `meta`.
 */
export async function splitImageFiles(
  rootfs: Buffer,
  info: LxdImageInfo,
  runner: ProcessRunner = hostRunner(),
): Promise<ImageFiles> {
  return { rootfs, meta: await xzCompress(await tarOf(lxdMetadataEntries(info)), runner) };
}
