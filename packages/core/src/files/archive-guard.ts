import { UnsafePathError } from '../errors.js';

/**
 * The fields of a tar header the guard looks at.
 *
 * @example
 * ```ts
 * import { ArchiveGuard, type EntryHeader } from '@execenv/core';
 * const guard = new ArchiveGuard();
 * const header: EntryHeader = { name: './bin/sh', type: 'symlink', linkname: 'busybox' };
 * guard.record(guard.check(header), header.type); // check returns 'bin/sh'
 * ```
 */
export interface EntryHeader {
  name: string;
  type?: string | null;
  linkname?: string | null;
}

/**
 * Normalises an archive member name to a relative path (`./a//b/` -> `a/b`,
 * `.` or `./` -> ``), refusing absolute names, `..` components and NUL bytes.
 *
 * @example
 * ```ts
 * import { normaliseEntryName } from '@execenv/core';
 * normaliseEntryName('./usr//bin/'); // 'usr/bin'
 * normaliseEntryName('../etc/passwd'); // throws UnsafePathError
 * ```
 */
export function normaliseEntryName(name: string): string {
  if (name.includes('\0')) throw new UnsafePathError(name, 'archive entry name contains a NUL byte');
  if (name.startsWith('/')) throw new UnsafePathError(name, 'archive entry names must be relative');
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new UnsafePathError(name, 'archive entry name contains ".."');
  return parts.join('/');
}

/**
 * ArchiveGuard checks tar entries one by one, in archive order, before they
 * are extracted: no entry may leave the destination, whether by its name, a
 * hardlink, a symlink that climbs out, or a path through a symlink the same
 * archive created. Absolute symlink targets are allowed: inside an
 * environment they resolve inside it.
 *
 * @example
 * ```ts
 * import { ArchiveGuard } from '@execenv/core';
 * import { extract } from 'tar-stream';
 * const guard = new ArchiveGuard();
 * for await (const entry of tar.pipe(extract())) {
 *   const name = guard.check(entry.header); // UnsafePathError for an entry that would leave the destination
 *   await writeEntry(name, entry); // yours: create it below the destination
 *   guard.record(name, entry.header.type);
 * }
 * ```
 */
export class ArchiveGuard {
  readonly #entries = new Set<string>(['']);
  readonly #symlinks = new Set<string>();

  /** Returns the entry's normalised name, or throws UnsafePathError. */
  check(header: EntryHeader): string {
    const name = normaliseEntryName(header.name);
    if (name === '' && header.type !== 'directory')
      throw new UnsafePathError(header.name, 'only a directory may name the destination itself');
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (this.#symlinks.has(parent))
        throw new UnsafePathError(header.name, `its parent "${parent}" is a symlink from the same archive`);
    }
    if (header.type === 'link') {
      const target = normaliseEntryName(header.linkname ?? '');
      if (!this.#entries.has(target) || target === '')
        throw new UnsafePathError(header.name, `hardlink to "${header.linkname}", which is not an earlier entry`);
    }
    if (header.type === 'symlink') {
      const target = header.linkname ?? '';
      if (target.includes('\0')) throw new UnsafePathError(header.name, 'symlink target contains a NUL byte');
      if (!target.startsWith('/') && climbsOut(name, target))
        throw new UnsafePathError(header.name, `symlink to "${target}" climbs out of the archive`);
    }
    return name;
  }

  /** Records an extracted entry so later hardlinks and parents are judged against it. */
  record(name: string, type: string | null | undefined): void {
    this.#entries.add(name);
    if (type === 'symlink') this.#symlinks.add(name);
    else this.#symlinks.delete(name);
  }
}

/** Whether a relative symlink target, read from the link's directory, climbs above the archive root. */
function climbsOut(name: string, target: string): boolean {
  let depth = name.split('/').length - 1;
  for (const c of target.split('/')) {
    if (c === '..') depth--;
    else if (c !== '' && c !== '.') depth++;
    if (depth < 0) return true;
  }
  return false;
}
