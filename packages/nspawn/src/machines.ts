import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidSpecError, type ProcessRunner, withLock } from '@execenv/core';
import { hostEnv, pathExists } from '@execenv/core/driver';

/** Names of persistent machines: a valid hostname label. */
export const MACHINE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,62})$/;

/** Throws InvalidSpecError('driverOptions.machine') unless `name` is a valid machine name. */
export function checkMachineName(name: unknown): string {
  if (typeof name !== 'string' || !MACHINE_NAME.test(name))
    throw new InvalidSpecError(
      'driverOptions.machine',
      `must be lower-case letters, digits and dashes (at most 63, not starting with a dash), got ${JSON.stringify(name)}`,
      { driver: 'nspawn', op: 'open' },
    );
  return name;
}

/** The directory of a persistent machine. */
export function machineDirectory(machinesDir: string, name: string): string {
  return join(machinesDir, checkMachineName(name));
}

/**
 * Returns the directory of machine `name`, copying `base` (the cached image)
 * into it when it does not exist yet. The copy goes to a temporary name and
 * is renamed at the end, so a failed copy leaves no half machine.
 */
export async function ensureMachine(
  runner: ProcessRunner,
  machinesDir: string,
  name: string,
  base: string,
): Promise<{ dir: string; created: boolean }> {
  const dir = machineDirectory(machinesDir, name);
  return withLock(`${dir}.create.lock`, async () => {
    if (await pathExists(dir)) return { dir, created: false };
    const tmp = `${dir}.${process.pid}.tmp`;
    try {
      await runner.run(['cp', '-a', '--reflink=auto', '--', base, tmp], { env: hostEnv() });
      await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return { dir, created: true };
  });
}
