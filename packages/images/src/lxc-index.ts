import { ImageNotFoundError } from '@execenv/core';
import { getDocument } from './http-get.js';

/** One line of an lxc-download index (`distribution;release;architecture;variant;build;path`). */
export interface IndexEntry {
  distribution: string;
  release: string;
  architecture: string;
  variant: string;
  build: string;
  path: string;
}

/** Parses an lxc-download `index-system` or `index-user` file; malformed lines are skipped. */
export function parseIndex(text: string): IndexEntry[] {
  const entries: IndexEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(';');
    if (f.length !== 6 || f.some((x) => x === '')) continue;
    const [distribution, release, architecture, variant, build, path] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (!path.startsWith('/') || path.includes('..')) continue;
    entries.push({ distribution, release, architecture, variant, build, path });
  }
  return entries;
}

/** What to look for in an index. */
export interface IndexQuery {
  distribution: string;
  release: string;
  architecture: string;
  variant: string;
}

/** The newest build (by build string) of the entries matching `q`, or undefined. */
export function findEntry(entries: readonly IndexEntry[], q: IndexQuery): IndexEntry | undefined {
  return entries
    .filter(
      (e) =>
        e.distribution === q.distribution &&
        e.release === q.release &&
        e.architecture === q.architecture &&
        e.variant === q.variant,
    )
    .sort((a, b) => (a.build < b.build ? 1 : a.build > b.build ? -1 : 0))[0];
}

/** Options of resolveIndex. */
export interface ResolveIndexOptions {
  /** `system` (images for privileged containers) or `user` (unprivileged), as lxc-download's modes. @default 'system' */
  mode?: 'system' | 'user';
  /** lxc-download compatibility level: `index-<mode>.<N>` is used when the server has it. */
  compatLevel?: number;
  signal?: AbortSignal;
}

/**
 * Finds `q` on an lxc-download server: `meta/1.0/index-<mode>.<compat>` when
 * a compatibility level is given and the server has it, else
 * `index-<mode>`, as lxc-download does. Returns the entry and the URL of its
 * directory. Throws ImageNotFoundError listing what the server offers.
 */
export async function resolveIndex(
  server: string,
  q: IndexQuery,
  opts: ResolveIndexOptions = {},
): Promise<{ entry: IndexEntry; base: string }> {
  const root = server.replace(/\/+$/, '');
  const plain = `index-${opts.mode ?? 'system'}`;
  const names = [...(opts.compatLevel !== undefined ? [`${plain}.${opts.compatLevel}`] : []), plain];
  const seen: IndexEntry[] = [];
  for (const name of names) {
    const text = await getDocument(`${root}/meta/1.0/${name}`, opts.signal);
    if (text === undefined) continue;
    const entries = parseIndex(text);
    const entry = findEntry(entries, q);
    if (entry) return { entry, base: `${root}${entry.path.replace(/\/+$/, '')}` };
    seen.push(...entries);
    // An index that exists is the answer: a compat-level one overrides the plain one.
    break;
  }
  const offered = [...new Set(seen.map((e) => `${e.distribution}/${e.release}/${e.architecture}/${e.variant}`))].slice(
    0,
    10,
  );
  throw new ImageNotFoundError(
    `index:${q.distribution}/${q.release}/${q.architecture}/${q.variant}`,
    `not in the index of ${root}${offered.length ? `; it has ${offered.join(', ')}` : ''}`,
    { op: 'resolve' },
  );
}
