import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverUnavailableError, type ExecenvEvent, emit, type ProcessRunner, withLock } from '@execenv/core';
import { findBinary, HOST_PATH, pathExists } from '@execenv/core/driver';

/** The suite of the default image. */
export const DEFAULT_SUITE = 'bookworm';

/**
 * Path of the default image in the cache: a Debian minbase root filesystem built by mmdebstrap.
 *
 * @example
 * ```ts
 * import { defaultImagePath } from '@execenv/chroot';
 * import { defaultCacheDir } from '@execenv/core';
 * const image = defaultImagePath(defaultCacheDir()); // ~/.cache/execenv/default-image/debian-bookworm-minbase.tar.zst
 * ```
 */
export function defaultImagePath(cacheDir: string): string {
  return join(cacheDir, 'default-image', `debian-${DEFAULT_SUITE}-minbase.tar.zst`);
}

/** The Debian mirror the host's apt uses (deb822 or one-line sources), else deb.debian.org. */
export async function hostDebianMirror(): Promise<string> {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    const deb822 = /^URIs:\s*(\S+)\s*$/m.exec(text);
    if (deb822?.[1] && !deb822[1].includes('security')) return deb822[1];
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text);
    if (oneLine?.[1]) return oneLine[1];
  }
  return 'http://deb.debian.org/debian';
}

/**
 * Returns the default image, building it with mmdebstrap the first time
 * (about 20 s; later opens find it in the cache).
 *
 * @example
 * ```ts
 * import { ensureDefaultImage } from '@execenv/chroot';
 * import { defaultCacheDir, hostRunner } from '@execenv/core';
 * const image = await ensureDefaultImage(defaultCacheDir(), hostRunner(), (e) => console.error(e.type));
 * ```
 */
export async function ensureDefaultImage(
  cacheDir: string,
  runner: ProcessRunner,
  onEvent?: (e: ExecenvEvent) => void,
): Promise<string> {
  const target = defaultImagePath(cacheDir);
  if (await pathExists(target)) return target;
  const mmdebstrap = await findBinary('mmdebstrap');
  if (!mmdebstrap)
    throw new DriverUnavailableError(
      'chroot',
      'the default image is built with mmdebstrap, which is not installed: apt-get install mmdebstrap, or give spec.image',
    );
  await mkdir(join(cacheDir, 'default-image'), { recursive: true });
  await withLock(`${target}.lock`, async () => {
    if (await pathExists(target)) return;
    emit(onEvent, { type: 'image-convert', reference: 'default', from: `debian ${DEFAULT_SUITE} archive`, to: target });
    const tmp = `${target}.${process.pid}.tmp.tar.zst`;
    try {
      await runner.run([mmdebstrap, '--quiet', '--variant=minbase', DEFAULT_SUITE, tmp, await hostDebianMirror()], {
        env: { PATH: HOST_PATH, TMPDIR: '/tmp' },
      });
      await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
  });
  return target;
}
