import type { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';

/** One entry of an archive a check pushes. */
export interface ArchiveEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  mode?: number;
  linkname?: string;
  content?: string;
}

/**
 * A tar stream of `entries`. A driver may refuse the archive and stop
 * reading; the entries still pending then fail with the archive, and their
 * own errors are not left unhandled to crash the test run.
 */
export function archiveOf(entries: readonly ArchiveEntry[]): Readable {
  const p = tarPack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      ...(e.linkname === undefined ? {} : { linkname: e.linkname }),
    };
    const sink = type === 'file' ? p.entry(header, e.content ?? '') : p.entry(header);
    sink.on('error', () => {});
  }
  p.finalize();
  return p as unknown as Readable;
}
