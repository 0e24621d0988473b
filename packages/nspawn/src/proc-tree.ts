import { readFile } from 'node:fs/promises';
import { processStartTime } from '@execenv/core';

/** A host process, with its start time so a recycled pid is never mistaken for it. */
export interface HostProcess {
  pid: number;
  startTime: string;
}

/** Direct children of a host process, from /proc/PID/task/PID/children. */
export async function childrenOf(pid: number, proc = '/proc'): Promise<number[]> {
  const text = await readFile(`${proc}/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

/** Whether a host process is PID 1 of a pid namespace below the host's: its NSpid line ends in 1 after its host pid. */
export async function isNamespaceInit(pid: number, proc = '/proc'): Promise<boolean> {
  const status = await readFile(`${proc}/${pid}/status`, 'utf8').catch(() => '');
  const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
  return nspid !== undefined && nspid.length >= 2 && nspid[nspid.length - 1] === '1';
}

/**
 * Finds the container's init, the child of systemd-nspawn that is PID 1 of
 * the container's pid namespace, once it has executed its program (its
 * command name is no longer nspawn's). Undefined while there is none yet.
 */
export async function containerInit(nspawnPid: number, proc = '/proc'): Promise<HostProcess | undefined> {
  for (const pid of await childrenOf(nspawnPid, proc)) {
    if (!(await isNamespaceInit(pid, proc))) continue;
    const comm = (await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (comm === '' || comm === 'systemd-nspawn') return undefined;
    const startTime = await processStartTime(pid);
    return startTime ? { pid, startTime } : undefined;
  }
  return undefined;
}
