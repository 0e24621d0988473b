import { readFile } from 'node:fs/promises';

/**
 * Owner identifies a process across pid reuse: its pid and its kernel start time.
 *
 * @example
 * ```ts
 * import { isAlive, type Owner, ownerOf } from '@execenv/core';
 * const owner: Owner = await ownerOf(); // e.g. { pid: 4242, startTime: '1234567' }
 * await writeFile(`${dir}/owner.json`, JSON.stringify(owner));
 * // later, from another process: a pid reused by someone else does not count
 * const alive = await isAlive(JSON.parse(await readFile(`${dir}/owner.json`, 'utf8')) as Owner);
 * ```
 */
export interface Owner {
  /** Process id. */
  pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  startTime: string;
}

/**
 * Reads the start time of `pid`, or undefined when no such process exists.
 *
 * @example
 * ```ts
 * import { processStartTime } from '@execenv/core';
 * const pid = daemon.pid!; // a host process the driver started
 * const startTime = await processStartTime(pid); // undefined when no such process exists
 * if (startTime) await lease.add({ kind: 'process', pid, startTime });
 * ```
 */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/**
 * The Owner record of a process (default: this one).
 *
 * @example
 * ```ts
 * import { ownerOf } from '@execenv/core';
 * const me = await ownerOf(); // this process
 * const daemon = await ownerOf(daemonPid); // throws when it is already gone
 * ```
 */
export async function ownerOf(pid: number = process.pid): Promise<Owner> {
  const startTime = await processStartTime(pid);
  if (startTime === undefined) throw new Error(`execenv: process ${pid} does not exist`);
  return { pid, startTime };
}

/**
 * Reports whether the process recorded as `owner` still runs (same pid and same start time).
 *
 * @example
 * ```ts
 * import { isAlive, type Owner } from '@execenv/core';
 * const owner = JSON.parse(await readFile(`${dir}/owner.json`, 'utf8')) as Owner;
 * if (!(await isAlive(owner))) await rm(dir, { recursive: true, force: true }); // its process is gone
 * ```
 */
export async function isAlive(owner: Owner): Promise<boolean> {
  return (await processStartTime(owner.pid)) === owner.startTime;
}
