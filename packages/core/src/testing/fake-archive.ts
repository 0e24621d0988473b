import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import { type ErrorContext, NotFoundError } from '../errors.js';
import { ArchiveGuard } from '../files/archive-guard.js';
import type { FakeFileSystem } from './fake-filesystem.js';

async function readAll(stream: AsyncIterable<Buffer>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Extracts a tar stream into a FakeFileSystem, refusing unsafe entries as real drivers do; returns entries and content bytes. */
export async function extractToFake(
  tar: Readable,
  files: FakeFileSystem,
  destDir: string,
): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  const guard = new ArchiveGuard();
  const extractor = tarExtract();
  // A refused entry ends the extraction early; the source's error (a closed pipe) then goes to the extractor.
  tar.on('error', (err) => extractor.destroy(err));
  tar.pipe(extractor);
  // Entries are checked and collected first, so a refused archive changes nothing.
  const staged: (() => void)[] = [];
  for await (const entry of extractor) {
    const h = entry.header;
    const name = guard.check(h);
    const path = posix.join(destDir, name);
    const meta = { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime };
    if (h.type === 'file') {
      const data = await readAll(entry as AsyncIterable<Buffer>);
      bytes += data.length;
      staged.push(() => files.writeFile(path, data, meta));
    } else {
      entry.resume();
      if (h.type === 'directory') staged.push(() => files.mkdir(path));
      else if (h.type === 'symlink') staged.push(() => files.symlink(h.linkname ?? '', path));
      else if (h.type === 'link') {
        const target = posix.join(destDir, h.linkname ?? '');
        staged.push(() => files.writeFile(path, files.readFile(target) ?? new Uint8Array(), meta));
      }
    }
    staged.push(() => files.setMeta(path, meta));
    guard.record(name, h.type);
    entries++;
  }
  for (const apply of staged) apply();
  return { entries, bytes };
}

/** Streams part of a FakeFileSystem as tar, with the entry names packTree uses. */
export function packFake(files: FakeFileSystem, srcPath: string, context: ErrorContext): Readable {
  const pack = tarPack();
  const top = files.stat(srcPath);
  if (!top) {
    queueMicrotask(() => pack.destroy(new NotFoundError(srcPath, { ...context, op: 'pullArchive' })));
    return pack as unknown as Readable;
  }
  const base = posix.normalize(srcPath);
  for (const [path, node] of files.entries(srcPath)) {
    const name = top.type === 'directory' ? posix.relative(base, path) || '.' : posix.basename(path);
    // File-type bits keep a mode of 0 from being replaced by tar-stream's default.
    const typeBits = node.type === 'directory' ? 0o040000 : node.type === 'symlink' ? 0o120000 : 0o100000;
    const header = { name, mode: node.mode | typeBits, uid: node.uid, gid: node.gid, mtime: node.mtime };
    if (node.type === 'file') pack.entry({ ...header, type: 'file' }, Buffer.from(node.data));
    else if (node.type === 'symlink') pack.entry({ ...header, type: 'symlink', linkname: node.target });
    else pack.entry({ ...header, type: 'directory' });
  }
  pack.finalize();
  return pack as unknown as Readable;
}
