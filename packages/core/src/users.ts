import { InvalidSpecError } from './errors.js';

/**
 * Numeric identity a command runs as.
 *
 * @example
 * ```ts
 * import { type ResolvedUser, resolveUser } from '@execenv/core';
 * const who: ResolvedUser = resolveUser(opts.user ?? 'root', passwd, group, this.id);
 * const setpriv = ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, `--groups=${who.groups.join(',')}`, '--'];
 * ```
 */
export interface ResolvedUser {
  /** User id. */
  uid: number;
  /** Primary group id. */
  gid: number;
  /** Supplementary group ids (including the primary one, as initgroups does). */
  groups: number[];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split('\n')
    .map((line) => line.split(':'))
    .filter((f) => f.length >= 4 && f[0] && /^\d+$/.test(f[2] ?? '') && /^\d+$/.test(f[3] ?? ''))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
}

function groupsOf(groupText: string, name: string, primary: number): number[] {
  const ids = new Set([primary]);
  for (const line of groupText.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && /^\d+$/.test(f[2] ?? '') && (f[3] ?? '').split(',').includes(name)) ids.add(Number(f[2]));
  }
  return [...ids];
}

/**
 * Resolves ExecOptions.user (a name, `uid` or `uid:gid`) against an
 * environment's /etc/passwd and /etc/group text. Throws InvalidSpecError for
 * a name that is not there.
 *
 * @example
 * ```ts
 * import { resolveUser } from '@execenv/core';
 * // passwd and group: the text of the environment's /etc/passwd and /etc/group
 * resolveUser('nobody', passwd, group); // { uid: 65534, gid: 65534, groups: [65534] }
 * resolveUser('1000:100', passwd, group); // { uid: 1000, gid: 100, groups: [100] }
 * resolveUser('nosuchuser', passwd, group); // throws InvalidSpecError for field 'user'
 * ```
 */
export function resolveUser(user: string, passwd: string, group: string, envId?: string): ResolvedUser {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(user);
  const entries = parsePasswd(passwd);
  if (numeric) {
    const uid = Number(numeric[1]);
    const entry = entries.find((e) => e.uid === uid);
    const gid = numeric[2] !== undefined ? Number(numeric[2]) : (entry?.gid ?? uid);
    return { uid, gid, groups: entry && numeric[2] === undefined ? groupsOf(group, entry.name, gid) : [gid] };
  }
  const entry = entries.find((e) => e.name === user);
  if (!entry)
    throw new InvalidSpecError(
      'user',
      `no user "${user}" in /etc/passwd of the environment; give a uid[:gid] instead`,
      {
        envId,
        op: 'exec',
      },
    );
  return { uid: entry.uid, gid: entry.gid, groups: groupsOf(group, entry.name, entry.gid) };
}
