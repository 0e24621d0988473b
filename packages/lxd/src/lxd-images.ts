import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { type ExecenvEvent, hostRunner, ImageNotFoundError, InvalidSpecError } from '@execenv/core';
import { hostArch } from '@execenv/core/driver';
import {
  convertToLxdUnified,
  fileDigest,
  type ImageCache,
  type ImageSettings,
  lxdImageFiles,
  type ResolvedImage,
  resolveImage,
} from '@execenv/images';
import { LxdApiError, type LxdClient, type LxdOperation } from './lxd-client.js';

/**
 * Where an instance's image comes from, as `POST /1.0/instances` takes it in `source`.
 *
 * @example
 * ```ts
 * import { LxdClient, type LxdImageSource } from '@execenv/lxd';
 * const source: LxdImageSource = {
 *   type: 'image', alias: 'debian/12', server: 'https://images.example.org', protocol: 'simplestreams', mode: 'pull',
 * };
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * await client.run({ method: 'POST', path: '/1.0/instances', body: { name: 'scratch', type: 'container', source } });
 * ```
 */
export type LxdImageSource =
  | { type: 'image'; alias: string }
  | { type: 'image'; fingerprint: string }
  | { type: 'image'; alias: string; server: string; protocol: 'simplestreams'; mode: 'pull' };

/**
 * Prefix of the aliases this driver gives the images it imports; the rest is the tarball's digest.
 *
 * @example
 * ```ts
 * import { IMAGE_ALIAS_PREFIX, LxdClient } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * const aliases = await client.get<{ name: string; target: string }[]>('/1.0/images/aliases', { recursion: '1' });
 * const imported = aliases.filter((a) => a.name.startsWith(IMAGE_ALIAS_PREFIX)); // what open() imported
 * ```
 */
export const IMAGE_ALIAS_PREFIX = 'execenv-img-';

/** Image property recording that this driver imported the image. */
export const IMAGE_PROPERTY = 'execenv.imported';

/** What resolving an image needs. */
export interface ImageContext {
  client: LxdClient;
  /** The effective image settings: servers, trusted keys, verification (see driverImages). */
  images: ImageSettings;
  /** The image cache conversions and downloads go to. */
  cache: ImageCache;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

const importing = new Map<string, Promise<string>>();

/**
 * The alias an imported tarball of this digest gets.
 *
 * @example
 * ```ts
 * import { createHash } from 'node:crypto';
 * import { readFile } from 'node:fs/promises';
 * import { aliasOfDigest } from '@execenv/lxd';
 * // An LXD unified tarball is imported under the alias of its own sha256.
 * const digest = createHash('sha256').update(await readFile('/srv/images/bookworm-lxd.tar.gz')).digest('hex');
 * const image = `lxd:${aliasOfDigest(digest)}`; // lxd:execenv-img- and the digest's first 32 hex digits
 * ```
 */
export function aliasOfDigest(digest: string): string {
  return `${IMAGE_ALIAS_PREFIX}${digest.slice(0, 32)}`;
}

/**
 * Resolves an image reference to an LXD image source: `lxd:ALIAS` as it is,
 * `simplestreams:https://SERVER#ALIAS` pulled by the daemon from a simplestreams remote, and local files (rootfs tarballs
 * converted to unified tarballs, unified tarballs, split images, index
 * images) imported once under an alias keyed by their digest.
 */
export async function lxdImageSource(reference: string, ctx: ImageContext): Promise<LxdImageSource> {
  const remote = /^simplestreams:(https:\/\/[^#\s]+)#([^\s]+)$/.exec(reference);
  if (remote) return { type: 'image', alias: remote[2]!, server: remote[1]!, protocol: 'simplestreams', mode: 'pull' };
  const cache = ctx.cache;
  const runner = hostRunner();
  ctx.onEvent?.({ type: 'image-resolve', reference });
  const resolved = await resolveImage(reference, {
    ...ctx.images,
    cache,
    runner,
    onEvent: ctx.onEvent,
    signal: ctx.signal,
  });
  return sourceOf(reference, resolved, ctx, cache, runner);
}

async function sourceOf(
  reference: string,
  img: ResolvedImage,
  ctx: ImageContext,
  cache: ImageCache,
  runner: ReturnType<typeof hostRunner>,
): Promise<LxdImageSource> {
  switch (img.kind) {
    case 'lxd-alias':
      return { type: 'image', alias: img.alias };
    case 'lxd-unified': {
      const digest = await fileDigest(img.path, cache);
      return { type: 'image', alias: await importOnce(ctx.client, digest, [img.path]) };
    }
    case 'lxd-split':
    case 'lxc-download': {
      // lxc-download metadata is not LXD's: lxdImageFiles converts it (metadata.yaml, templates) first.
      const files = await lxdImageFiles(img, { cache, runner, onEvent: ctx.onEvent });
      if (files.kind !== 'split')
        throw new InvalidSpecError('image', `"${reference}" did not resolve to an LXD split image`, {
          driver: 'lxd',
          op: 'open',
        });
      const digest = `${await fileDigest(files.meta, cache)}${await fileDigest(files.rootfs, cache)}`;
      const combined = createHash('sha256').update(digest).digest('hex');
      return { type: 'image', alias: await importOnce(ctx.client, combined, [files.meta, files.rootfs]) };
    }
    case 'rootfs-tarball': {
      ctx.onEvent?.({ type: 'image-convert', reference, from: 'rootfs-tarball', to: 'lxd-unified' });
      const unified = await convertToLxdUnified(
        img.path,
        { architecture: hostArch(), os: 'execenv', release: 'rootfs' },
        { cache, runner, onEvent: ctx.onEvent },
      );
      return { type: 'image', alias: await importOnce(ctx.client, unified.digest, [unified.path]) };
    }
    default:
      throw new InvalidSpecError(
        'image',
        `"${reference}" is a ${img.kind} image; the lxd driver takes rootfs tarballs, LXD images (unified or split), index: references and lxd: aliases`,
        { driver: 'lxd', op: 'open' },
      );
  }
}

/** Imports a unified tarball (one file) or a split image (two) once per digest; returns its alias. */
export function importOnce(client: LxdClient, digest: string, files: readonly string[]): Promise<string> {
  const alias = aliasOfDigest(digest);
  const key = `${client.address} ${client.project ?? ''} ${alias}`;
  let p = importing.get(key);
  if (!p) {
    p = importImage(client, alias, files).finally(() => importing.delete(key));
    importing.set(key, p);
  }
  return p;
}

async function aliasExists(client: LxdClient, alias: string): Promise<boolean> {
  try {
    await client.get(`/1.0/images/aliases/${encodeURIComponent(alias)}`);
    return true;
  } catch (err) {
    if (err instanceof LxdApiError && err.status === 404) return false;
    throw err;
  }
}

async function importImage(client: LxdClient, alias: string, files: readonly string[]): Promise<string> {
  if (await aliasExists(client, alias)) return alias;
  const fingerprint = await uploadImage(client, alias, files);
  try {
    await client.call({ method: 'POST', path: '/1.0/images/aliases', body: { name: alias, target: fingerprint } });
  } catch (err) {
    // Another process imported the same tarball and named it first: the same content, so the same image.
    if (!(err instanceof LxdApiError && err.status === 409) && !(await aliasExists(client, alias))) throw err;
  }
  return alias;
}

/**
 * Uploads the files and returns the fingerprint LXD gave them. When the
 * daemon already holds the same image (imported by hand or by another tool
 * under its own alias), that image is the one: LXD's fingerprint of it is the
 * sha256 of the files one after another, and that is what the alias points at.
 */
async function uploadImage(client: LxdClient, alias: string, files: readonly string[]): Promise<string> {
  const { body, contentType } =
    files.length === 1
      ? { body: createReadStream(files[0]!, { highWaterMark: 1 << 20 }), contentType: 'application/octet-stream' }
      : splitImageBody(files[0]!, files[1]!);
  let op: LxdOperation;
  try {
    op = await client.run({
      method: 'POST',
      path: '/1.0/images',
      headers: { 'Content-Type': contentType, 'X-LXD-properties': `${IMAGE_PROPERTY}=${alias}` },
      body,
    });
  } catch (err) {
    if (err instanceof LxdApiError && /same fingerprint already exists/i.test(err.message))
      return lxdFingerprint(files);
    throw err;
  }
  const fingerprint = (op.metadata as { fingerprint?: string } | null)?.fingerprint;
  if (!fingerprint) throw new ImageNotFoundError(alias, 'LXD imported the image but gave no fingerprint');
  return fingerprint;
}

/** LXD's fingerprint of an image made of these files: the sha256 of their contents in order. */
async function lxdFingerprint(files: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files)
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The multipart body `POST /1.0/images` takes for a split image: the metadata tarball, then the rootfs. */
function splitImageBody(meta: string, rootfs: string) {
  const boundary = `execenv${Math.random().toString(16).slice(2)}`;
  const part = (name: string) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
  async function* multipart() {
    yield part('metadata');
    for await (const c of createReadStream(meta)) yield c as Buffer;
    yield Buffer.from('\r\n');
    yield part('rootfs');
    for await (const c of createReadStream(rootfs, { highWaterMark: 1 << 20 })) yield c as Buffer;
    yield Buffer.from(`\r\n--${boundary}--\r\n`);
  }
  return { body: Readable.from(multipart()), contentType: `multipart/form-data; boundary=${boundary}` };
}
