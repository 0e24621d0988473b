import { randomBytes } from 'node:crypto';
import { isAlive, type Owner, ownerOf, processStartTime } from '@execenv/core';

/**
 * Temporaries in the cache (partial downloads, staging trees) carry their
 * owner in their name, `<pid>-<start time>-<random>`, so that what a killed
 * process left can be told from what a live one is still writing.
 */

let self: Promise<Owner> | undefined;

/** A fresh temporary name owned by this process. */
export async function ownedTempName(): Promise<string> {
  self ??= ownerOf();
  const { pid, startTime } = await self;
  return `${pid}-${startTime}-${randomBytes(6).toString('hex')}`;
}

const OWNED = /(?:^|\.)(\d+)-(\d+)-[a-f0-9]{12}(?:\.tmp)?$/;
/** Names written before owners were recorded: `<pid>-<random>`. */
const PID_ONLY = /^(\d+)-[a-f0-9]{12}$/;

/**
 * Whether the process that owns the temporary `name` still runs: `alive`,
 * `dead`, or `unknown` when the name records no owner.
 */
export async function tempOwnerState(name: string): Promise<'alive' | 'dead' | 'unknown'> {
  const owned = OWNED.exec(name);
  if (owned) return (await isAlive({ pid: Number(owned[1]), startTime: owned[2]! })) ? 'alive' : 'dead';
  const pidOnly = PID_ONLY.exec(name);
  if (pidOnly) return (await processStartTime(Number(pidOnly[1]))) === undefined ? 'dead' : 'alive';
  return 'unknown';
}
