import { createHash } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { IndexQuery } from '../lxc-index.js';
import { HttpFixture } from './http-fixture.js';

/**
 * The files of a split image: its root filesystem and its metadata tarballs.
 *
 * @example
 * ```ts
 * import { type ImageFiles, ImageServer } from '@execenv/images/testing';
 * const server = await new ImageServer().start();
 * const files: ImageFiles = { rootfs: rootfsTarXz, meta: lxdMetaTarXz }; // lxc-download serves meta too
 * await server.publishSimplestreams({ distribution: 'busybox', release: '1.36', architecture: 'amd64' }, files);
 * ```
 */
export interface ImageFiles {
  rootfs: Buffer;
  /** LXD metadata (metadata.yaml): served by simplestreams as `lxd.tar.xz`. */
  meta: Buffer;
  /** lxc-download metadata (config, templates): served as `meta.tar.xz`. @default meta */
  lxcMeta?: Buffer;
}

/**
 * An image to serve: what `index:DISTRIBUTION/RELEASE/ARCH/VARIANT` names, and its build serial.
 *
 * @example
 * ```ts
 * import type { ServedImage } from '@execenv/images/testing';
 * const old: ServedImage = { distribution: 'busybox', release: '1.36', architecture: 'amd64', build: '20240101' };
 * await server.publishLxcDownload(old, oldFiles, key.privateKey);
 * await server.publishLxcDownload({ ...old, build: '20250101' }, files, key.privateKey); // clients pick this
 * ```
 */
export interface ServedImage extends Omit<IndexQuery, 'variant'> {
  /** @default 'default' */
  variant?: string;
  /** Build serial; the newest one is what clients pick. @default '20261122_00:00' */
  build?: string;
}

/**
 * An OpenPGP key pair, armored.
 *
 * @example
 * ```ts
 * import { generateSigningKey, type SigningKey } from '@execenv/images/testing';
 * const trusted: SigningKey = await generateSigningKey();
 * const stranger: SigningKey = await generateSigningKey('not trusted');
 * await server.publishLxcDownload(image, files, stranger.privateKey);
 * // resolveImage(..., { keys: [trusted.publicKey] }) now rejects with IMAGE_VERIFY_FAILED
 * ```
 */
export interface SigningKey {
  publicKey: string;
  privateKey: string;
}

/**
 * Generates a fresh ed25519 signing key for a test.
 *
 * @example
 * ```ts
 * import { resolveImage } from '@execenv/images';
 * import { generateSigningKey } from '@execenv/images/testing';
 * const key = await generateSigningKey();
 * const busybox = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
 * await server.publishLxcDownload(busybox, files, key.privateKey);
 * const opts = { servers: { lxc: server.url }, keys: [key.publicKey], cache }; // trusted like a key file
 * const image = await resolveImage('index:busybox/1.36/amd64', opts);
 * ```
 */
export async function generateSigningKey(name = 'execenv test images'): Promise<SigningKey> {
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name }],
    format: 'armored',
  });
  return { publicKey, privateKey };
}

/**
 * A detached armored signature of `data` (what an lxc-download server serves as `.asc`).
 *
 * @example
 * ```ts
 * import { signDetached } from '@execenv/images/testing';
 * const index = Buffer.from('busybox;1.36;amd64;default;20990101_00:00;/images/old/\n'); // a rewritten index
 * server.http.routes.set('/meta/1.0/index-system', { body: index });
 * server.http.routes.set('/meta/1.0/index-system.asc', { body: await signDetached(index, stranger.privateKey) });
 * // resolveImage now rejects with IMAGE_VERIFY_FAILED: signed, but not by a trusted key
 * ```
 */
export async function signDetached(data: Uint8Array, privateKey: string): Promise<string> {
  const message = await openpgp.createMessage({ binary: data });
  const signingKeys = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return (await openpgp.sign({ message, signingKeys, detached: true })) as string;
}

/**
 * `text` clearsigned (what a simplestreams server serves as `.sjson`).
 *
 * @example
 * ```ts
 * import { signCleartext } from '@execenv/images/testing';
 * const text = JSON.stringify({ format: 'index:1.0', index: {} });
 * server.http.routes.set('/streams/v1/index.json', { body: text });
 * server.http.routes.set('/streams/v1/index.sjson', { body: await signCleartext(text, key.privateKey) });
 * ```
 */
export async function signCleartext(text: string, privateKey: string): Promise<string> {
  const message = await openpgp.createCleartextMessage({ text });
  const signingKeys = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return openpgp.sign({ message, signingKeys });
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * A loopback image server for tests: publishes images in the lxc-download
 * layout (`meta/1.0/index-system`, `rootfs.tar.xz`, `meta.tar.xz`, detached
 * `.asc`) and the simplestreams layout (`streams/v1/index.json`, products,
 * items with sha256, clearsigned `.sjson` twins), signed with the key given
 * or unsigned without one. Its HttpFixture is open for tampering.
 *
 * @example
 * ```ts
 * import { ImageCache, resolveImage } from '@execenv/images';
 * import { generateSigningKey, ImageServer, splitImageFiles } from '@execenv/images/testing';
 * const [key, server] = await Promise.all([generateSigningKey(), new ImageServer().start()]);
 * const files = await splitImageFiles(rootfsTarXz, { architecture: 'amd64', os: 'busybox', release: '1.36' });
 * const busybox = { distribution: 'busybox', release: '1.36', architecture: 'amd64' };
 * await server.publishLxcDownload(busybox, files, key.privateKey);
 * const opts = { servers: { lxc: server.url }, keys: [key.publicKey], cache: new ImageCache({ dir: tmpDir }) };
 * console.log((await resolveImage('index:busybox/1.36/amd64', opts)).kind); // 'lxc-download'
 * await server.stop();
 * ```
 */
export class ImageServer {
  /** The underlying server; change its routes to serve broken or hostile answers. */
  readonly http = new HttpFixture();
  readonly #lxcIndex: string[] = [];
  readonly #products: Record<string, { versions: Record<string, unknown> } & Record<string, unknown>> = {};

  /** Base URL, valid once started. */
  get url(): string {
    return this.http.url;
  }

  async start(): Promise<this> {
    await this.http.start();
    return this;
  }

  async stop(): Promise<void> {
    await this.http.stop();
  }

  /**
   * Serves `files` as an lxc-download image, adding it to `index-system`;
   * with a signing key, the index and both files get detached `.asc`
   * signatures. Returns the path of its build directory.
   */
  async publishLxcDownload(image: ServedImage, files: ImageFiles, signingKey?: string): Promise<string> {
    const { distribution, release, architecture, variant = 'default', build = '20261122_00:00' } = image;
    const base = `/images/${distribution}/${release}/${architecture}/${variant}/${build}`;
    this.#lxcIndex.push([distribution, release, architecture, variant, build, base].join(';'));
    const index = `${this.#lxcIndex.join('\n')}\n`;
    this.http.routes.set('/meta/1.0/index-system', { body: index });
    if (signingKey)
      this.http.routes.set('/meta/1.0/index-system.asc', {
        body: await signDetached(Buffer.from(index), signingKey),
      });
    else this.http.routes.delete('/meta/1.0/index-system.asc');
    for (const [name, body] of [
      ['rootfs.tar.xz', files.rootfs],
      ['meta.tar.xz', files.lxcMeta ?? files.meta],
    ] as const) {
      this.http.routes.set(`${base}/${name}`, { body });
      if (signingKey) this.http.routes.set(`${base}/${name}.asc`, { body: await signDetached(body, signingKey) });
    }
    return base;
  }

  /** Serves `files` as a simplestreams image (items `lxd.tar.xz` and `root.tar.xz`). */
  async publishSimplestreams(image: ServedImage, files: ImageFiles, signingKey?: string): Promise<void> {
    const { distribution, release, architecture, variant = 'default', build = '20261122_00:00' } = image;
    const productName = `${distribution}:${release}:${architecture}:${variant}`;
    const dir = `images/${distribution}/${release}/${architecture}/${variant}/${build}`;
    const item = (ftype: string, body: Buffer) => ({
      ftype,
      path: `${dir}/${ftype}`,
      sha256: sha256(body),
      size: body.length,
    });
    const product = (this.#products[productName] ??= {
      os: distribution,
      release,
      arch: architecture,
      variant,
      versions: {},
    });
    product.versions[build] = {
      items: { 'lxd.tar.xz': item('lxd.tar.xz', files.meta), 'root.tar.xz': item('root.tar.xz', files.rootfs) },
    };
    this.http.routes.set(`/${dir}/lxd.tar.xz`, { body: files.meta });
    this.http.routes.set(`/${dir}/root.tar.xz`, { body: files.rootfs });
    const documents = {
      'streams/v1/index.json': {
        format: 'index:1.0',
        index: { images: { datatype: 'image-downloads', format: 'products:1.0', path: 'streams/v1/images.json' } },
      },
      'streams/v1/images.json': { format: 'products:1.0', content_id: 'images', products: this.#products },
    };
    for (const [path, document] of Object.entries(documents)) {
      const text = JSON.stringify(document);
      this.http.routes.set(`/${path}`, { body: text });
      const signed = `/${path.replace(/\.json$/, '.sjson')}`;
      if (signingKey) this.http.routes.set(signed, { body: await signCleartext(text, signingKey) });
      else this.http.routes.delete(signed);
    }
  }
}
