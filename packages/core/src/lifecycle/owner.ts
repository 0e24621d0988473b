import { readFile } from 'node:fs/promises';

/** Owner identifies a process across pid reuse: its pid and its kernel start time. */
export interface Owner {
  /** Process id. */
  pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  startTime: string;
}

/** Reads the start time of `pid`, or undefined when no such process exists. */
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

/** The Owner record of a process (default: this one). */
export async function ownerOf(pid: number = process.pid): Promise<Owner> {
  const startTime = await processStartTime(pid);
  if (startTime === undefined) throw new Error(`execenv: process ${pid} does not exist`);
  return { pid, startTime };
}

/** Reports whether the process recorded as `owner` still runs (same pid and same start time). */
export async function isAlive(owner: Owner): Promise<boolean> {
  return (await processStartTime(owner.pid)) === owner.startTime;
}
