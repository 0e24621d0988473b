import { Transform, type TransformCallback } from 'node:stream';
import { ExecenvError, UnsafePathError } from '../errors.js';
import { ArchiveGuard } from './archive-guard.js';

/** What a TarGate let through and held back. */
export interface TarGateStats {
  /** Entries forwarded. */
  entries: number;
  /** Bytes of file content forwarded. */
  bytes: number;
  /** Device nodes and fifos dropped: neither their header nor their content was forwarded. */
  droppedSpecial: number;
}

const BLOCK = 512;
/** The largest pax extended header a TarGate accepts. */
export const MAX_PAX_HEADER = 1 << 20;

/** Pax keys a TarGate lets through; SCHILY.xattr.* too. Anything else fails closed. */
const PAX_KEYS = new Set(['path', 'linkpath', 'size', 'mtime', 'atime', 'ctime', 'uid', 'gid', 'uname', 'gname']);
const PAX_XATTR = 'SCHILY.xattr.';
const DECIMAL = /^[0-9]+$/;
const TIME = /^-?[0-9]+(\.[0-9]+)?$/;

const TYPES: Readonly<Record<string, string>> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '5': 'directory',
  '3': 'character-device',
  '4': 'block-device',
  '6': 'fifo',
};
const DROPPED = new Set(['3', '4', '6']);
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

type State = 'header' | 'pax' | 'content' | 'end';

/**
 * TarGate passes a POSIX pax tar stream through, entry by entry, releasing
 * an entry's bytes (its pax header, its header, its content) only after
 * ArchiveGuard accepted it, so that GNU tar reading the output extracts
 * nothing the guard did not see. It reads a strict subset of the format,
 * the one where it and GNU tar cannot read a header differently: magic
 * "ustar\0" version "00", a valid checksum, typeflags 0, 1, 2, 5 and per-entry
 * pax headers with known keys; anything else fails the stream with
 * UnsafePathError or an ExecenvError naming the entry. Device nodes and
 * fifos are dropped and counted. The output ends with the archive's
 * end-of-archive blocks; whatever follows them is read and discarded.
 *
 * Memory stays bounded: content goes out as slices of the input, and a pax
 * header is held only up to MAX_PAX_HEADER bytes.
 */
export class TarGate extends Transform {
  /** What went through so far. */
  readonly stats: TarGateStats = { entries: 0, bytes: 0, droppedSpecial: 0 };
  readonly #guard = new ArchiveGuard();
  /** Symlinks of this archive and hardlinks to them: a later entry must not pass through or over them. */
  readonly #links = new Set<string>();
  #state: State = 'header';
  /** A header block split across input chunks. */
  readonly #partial = Buffer.alloc(BLOCK);
  #partialLength = 0;
  /** The pending pax header block and its data, padded to whole blocks. */
  #paxHeader: Buffer | undefined;
  #paxData: Buffer | undefined;
  #paxLength = 0;
  #paxSize = 0;
  /** Content and padding bytes left of the current entry, and whether they go out. */
  #left = 0;
  #forward = false;
  #contentLeft = 0;

  constructor() {
    super({ readableHighWaterMark: 1 << 20, writableHighWaterMark: 1 << 20 });
  }

  /** Whether the end-of-archive blocks have been seen. */
  get ended(): boolean {
    return this.#state === 'end';
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.#consume(chunk);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.#state === 'end') done();
    else done(new ExecenvError('EXEC_FAILED', 'execenv: the archive ended before its end-of-archive blocks'));
  }

  #consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.#state) {
        case 'end':
          return;
        case 'content': {
          const n = Math.min(this.#left, chunk.length - off);
          if (this.#forward) this.push(chunk.subarray(off, off + n));
          const content = Math.min(n, this.#contentLeft);
          this.#contentLeft -= content;
          if (this.#forward) this.stats.bytes += content;
          this.#left -= n;
          off += n;
          if (this.#left === 0) this.#state = 'header';
          break;
        }
        case 'pax': {
          const data = this.#paxData as Buffer;
          const n = Math.min(data.length - this.#paxLength, chunk.length - off);
          chunk.copy(data, this.#paxLength, off, off + n);
          this.#paxLength += n;
          off += n;
          if (this.#paxLength === data.length) this.#state = 'header';
          break;
        }
        case 'header': {
          if (this.#partialLength === 0 && chunk.length - off >= BLOCK) {
            this.#header(chunk.subarray(off, off + BLOCK));
            off += BLOCK;
            break;
          }
          const n = Math.min(BLOCK - this.#partialLength, chunk.length - off);
          chunk.copy(this.#partial, this.#partialLength, off, off + n);
          this.#partialLength += n;
          off += n;
          if (this.#partialLength === BLOCK) {
            this.#partialLength = 0;
            this.#header(this.#partial);
          }
          break;
        }
      }
    }
  }

  /** Judges one header block; forwards what it releases. */
  #header(block: Buffer): void {
    if (isZero(block)) {
      if (this.#paxHeader) throw malformed('a pax header', 'is followed by the end of the archive');
      this.push(END_OF_ARCHIVE);
      this.#state = 'end';
      return;
    }
    const label = cString(block, 0, 100) || '(no name)';
    if (!checksumOk(block)) throw malformed(label, 'has a bad header checksum');
    if (block.toString('latin1', 257, 263) !== 'ustar\0' || block.toString('latin1', 263, 265) !== '00')
      throw new UnsafePathError(label, 'not a POSIX ustar header (magic "ustar\\0", version "00")');
    const flag = String.fromCharCode(block[156] as number);
    const headerSize = numeric(block, 124, 12, label, 'size');
    if (flag === 'x') {
      if (this.#paxHeader) throw new UnsafePathError(label, 'a second pax header in a row');
      if (headerSize > MAX_PAX_HEADER) throw new UnsafePathError(label, `a pax header over ${MAX_PAX_HEADER} bytes`);
      this.#paxHeader = Buffer.from(block);
      this.#paxData = Buffer.alloc(padded(headerSize));
      this.#paxLength = 0;
      // Parsed by the entry header that follows it, once complete.
      this.#paxSize = headerSize;
      this.#state = headerSize === 0 ? 'header' : 'pax';
      return;
    }
    const type = TYPES[flag];
    if (!type) throw new UnsafePathError(label, `tar entry type ${JSON.stringify(flag)} is not accepted`);
    const pax = this.#paxHeader ? parsePax((this.#paxData as Buffer).subarray(0, this.#paxSize), label) : undefined;
    const rawName = pax?.has('path')
      ? (pax.get('path') as Buffer).toString('latin1')
      : joinName(cString(block, 345, 155), cString(block, 0, 100));
    const linkname = pax?.has('linkpath')
      ? (pax.get('linkpath') as Buffer).toString('latin1')
      : cString(block, 157, 100);
    const size = pax?.has('size') ? Number((pax.get('size') as Buffer).toString('latin1')) : headerSize;
    for (const [field, at, width] of FIELDS) numeric(block, at, width, rawName, field);
    if (rawName === '') throw new UnsafePathError(rawName, 'archive entry has an empty name');
    if (type !== 'file' && size !== 0)
      throw new UnsafePathError(rawName, `a ${type} entry with ${size} bytes of content`);
    if (type !== 'directory' && rawName.endsWith('/'))
      throw new UnsafePathError(rawName, `a ${type} entry whose name ends with "/"`);
    const name = this.#guard.check({ name: rawName, type, linkname });
    this.#checkLinks(rawName, name, type);

    const paxHeader = this.#paxHeader;
    const paxData = this.#paxData;
    this.#paxHeader = this.#paxData = undefined;
    this.#left = padded(size);
    this.#contentLeft = size;
    this.#state = this.#left > 0 ? 'content' : 'header';
    if (DROPPED.has(flag)) {
      this.#forward = false;
      this.stats.droppedSpecial++;
      return;
    }
    this.#guard.record(name, type);
    this.#record(name, type, linkname);
    this.#forward = true;
    if (paxHeader && paxData) {
      this.push(paxHeader);
      this.push(paxData);
    }
    this.push(block === this.#partial ? Buffer.from(block) : block);
    this.stats.entries++;
  }

  /** Refuses what ArchiveGuard does not see: a path through, or a directory over, a hardlink to a symlink. */
  #checkLinks(rawName: string, name: string, type: string): void {
    if (this.#links.size === 0) return;
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (this.#links.has(parent))
        throw new UnsafePathError(rawName, `its parent "${parent}" is a symlink from the same archive`);
    }
    // GNU tar keeps an existing directory, following a symlink to it: a directory must not land on a symlink.
    if (type === 'directory' && this.#links.has(name))
      throw new UnsafePathError(rawName, 'a directory over a symlink from the same archive');
  }

  #record(name: string, type: string, linkname: string): void {
    if (type === 'symlink') this.#links.add(name);
    else if (type === 'link' && this.#links.has(normalise(linkname))) this.#links.add(name);
    else this.#links.delete(name);
  }
}

/** The numeric header fields other than size and checksum: name, offset, width. */
const FIELDS: readonly [string, number, number][] = [
  ['mode', 100, 8],
  ['uid', 108, 8],
  ['gid', 116, 8],
  ['mtime', 136, 12],
  ['devmajor', 329, 8],
  ['devminor', 337, 8],
];

function normalise(name: string): string {
  return name
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
}

function malformed(name: string, problem: string): ExecenvError {
  return new ExecenvError('EXEC_FAILED', `execenv: refusing archive entry "${name}": it ${problem}`);
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i += 8) if (block.readBigUInt64LE(i) !== 0n) return false;
  return true;
}

/** A NUL-terminated field, byte for byte (latin1), as GNU tar reads it. */
function cString(block: Buffer, at: number, width: number): string {
  let end = block.indexOf(0, at);
  if (end < 0 || end > at + width) end = at + width;
  return block.toString('latin1', at, end);
}

/** prefix/name of a ustar header, as GNU tar joins them. */
function joinName(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}/${name}`;
}

function checksumOk(block: Buffer): boolean {
  const recorded = octal(block, 148, 8);
  if (recorded === undefined) return false;
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i] as number;
  return sum === recorded;
}

/**
 * An octal field as GNU tar reads it, in the strict form both agree on:
 * leading spaces, at least one digit, then the end of the field, a NUL or a
 * space. undefined otherwise.
 */
function octal(block: Buffer, at: number, width: number): number | undefined {
  const end = at + width;
  let i = at;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  const start = i;
  for (; i < end; i++) {
    const c = block[i] as number;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
  }
  if (i === start) return undefined;
  if (i < end && block[i] !== 0 && block[i] !== 0x20) return undefined;
  return value;
}

/** A numeric header field: strict octal, all NULs (zero), or positive base-256; else it fails closed. */
function numeric(block: Buffer, at: number, width: number, name: string, field: string): number {
  const first = block[at] as number;
  if (first === 0x80) {
    let value = 0;
    for (let i = at + 1; i < at + width; i++) value = value * 256 + (block[i] as number);
    if (value > Number.MAX_SAFE_INTEGER) throw malformed(name, `has an out-of-range ${field}`);
    return value;
  }
  if (first === 0) {
    for (let i = at; i < at + width; i++) if (block[i] !== 0) throw malformed(name, `has a malformed ${field}`);
    return 0;
  }
  const value = octal(block, at, width);
  if (value === undefined) throw malformed(name, `has a malformed ${field}`);
  return value;
}

/**
 * Parses pax records ("LEN key=value\n") that must fill the data exactly,
 * with only the keys a TarGate lets through and values GNU tar reads the
 * same way; throws otherwise. Values are raw bytes.
 */
function parsePax(data: Buffer, label: string): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    let i = off;
    while (i < data.length && i - off < 8 && (data[i] as number) >= 0x30 && (data[i] as number) <= 0x39) i++;
    if (i === off || data[i] !== 0x20) throw malformed(label, 'has a malformed pax record length');
    const length = Number(data.toString('latin1', off, i));
    const end = off + length;
    if (end > data.length || length <= i - off + 1) throw malformed(label, 'has a pax record past its header');
    if (data[end - 1] !== 0x0a) throw malformed(label, 'has a pax record without its newline');
    const eq = data.indexOf(0x3d, i + 1);
    if (eq < 0 || eq >= end - 1) throw malformed(label, 'has a pax record without "="');
    const key = data.toString('latin1', i + 1, eq);
    const value = data.subarray(eq + 1, end - 1);
    if (!PAX_KEYS.has(key) && !(key.startsWith(PAX_XATTR) && key.length > PAX_XATTR.length && !key.includes('\0')))
      throw new UnsafePathError(label, `pax key ${JSON.stringify(key)} is not accepted`);
    const text = value.toString('latin1');
    if (key === 'size' && !(DECIMAL.test(text) && Number(text) <= Number.MAX_SAFE_INTEGER))
      throw malformed(label, 'has a malformed pax size');
    if ((key === 'uid' || key === 'gid') && !DECIMAL.test(text)) throw malformed(label, `has a malformed pax ${key}`);
    if ((key === 'mtime' || key === 'atime' || key === 'ctime') && !TIME.test(text))
      throw malformed(label, `has a malformed pax ${key}`);
    records.set(key, value);
    off = end;
  }
  return records;
}
