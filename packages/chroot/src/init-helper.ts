import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverUnavailableError, type ProcessRunner, withLock } from '@execenv/core';
import { findBinary, HOST_PATH, pathExists } from './host-binaries.js';

/** Path of the C source of the init every exec runs as PID 1 of its pid namespace. */
export const INIT_SOURCE = fileURLToPath(new URL('../native/execenv-init.c', import.meta.url));

/**
 * Returns the path of the compiled init helper, building it from its C source
 * into the cache the first time (keyed by the source's hash, so an upgrade
 * rebuilds it). Throws DriverUnavailableError when no compiler is installed.
 */
export async function ensureInitHelper(cacheDir: string, runner: ProcessRunner, cc = 'cc'): Promise<string> {
  const source = await readFile(INIT_SOURCE);
  const digest = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const target = join(cacheDir, 'bin', `execenv-init-${digest}`);
  if (await pathExists(target)) return target;
  const compiler = await findBinary(cc);
  if (!compiler)
    throw new DriverUnavailableError(
      'chroot',
      `building its init helper needs a C compiler ("${cc}" not found): apt-get install gcc libc6-dev`,
    );
  await mkdir(join(cacheDir, 'bin'), { recursive: true });
  await withLock(`${target}.lock`, async () => {
    if (await pathExists(target)) return;
    const tmp = `${target}.${process.pid}.tmp`;
    try {
      await runner.run([compiler, '-O2', '-Wall', '-o', tmp, INIT_SOURCE], { env: { PATH: HOST_PATH } });
      await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
  });
  return target;
}
