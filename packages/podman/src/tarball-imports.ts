import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';

/**
 * The podman images this driver instance made from local rootfs tarballs,
 * by the tarball file's identity (device, inode, size, times): a later open
 * of the same unchanged file skips resolving, hashing and looking it up in
 * the image cache.
 *
 * @example
 * ```ts
 * import { TarballImports } from './tarball-imports.js';
 * const imports = new TarballImports();
 * const key = await imports.key('/srv/images/bookworm.tar.zst'); // undefined for oci:, URLs, index:
 * if (key) imports.set(key, 'localhost/execenv-rootfs:0123abcd');
 * ```
 */
export class TarballImports {
  readonly #names = new Map<string, string>();

  /** The key of a local tarball file; undefined for any other reference. */
  async key(reference: string): Promise<string | undefined> {
    if (/^[a-z][a-z0-9+.-]*:/i.test(reference)) return undefined;
    const path = resolve(reference);
    const s = await stat(path).catch(() => undefined);
    if (!s?.isFile()) return undefined;
    return [path, s.dev, s.ino, s.size, s.mtimeMs, s.ctimeMs].join('\0');
  }

  /** The image name made from the tarball with this key. */
  get(key: string): string | undefined {
    return this.#names.get(key);
  }

  set(key: string, name: string): void {
    this.#names.set(key, name);
  }
}
