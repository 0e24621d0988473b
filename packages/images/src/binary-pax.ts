import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * tar-stream reads and writes every pax record value as UTF-8 text. Most are
 * (paths, names, numbers), but extended attributes (`SCHILY.xattr.*`) are
 * bytes: a file capability whose mask has a byte of 0x80 or more comes out
 * mangled, and GNU tar then refuses to set it. This module makes both
 * directions byte-exact for every record except the ones POSIX defines as
 * UTF-8 text, by replacing tar-stream's two pax codecs when first imported.
 * Such values appear in `header.pax` as latin1 strings: one character per
 * byte, written back as the same bytes.
 */

/** Pax keys whose values POSIX defines as UTF-8 text. */
const TEXT_KEYS = new Set(['path', 'linkpath', 'uname', 'gname', 'comment', 'hdrcharset']);

const encodingOf = (key: string): BufferEncoding => (TEXT_KEYS.has(key) ? 'utf8' : 'latin1');

/** One pax record: "LEN KEY=VALUE\n", LEN counting its own digits too. */
function record(key: string, value: string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), Buffer.from(value, encodingOf(key)), Buffer.from('\n')]);
  let digits = 1;
  while (String(body.length + digits).length !== digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits)), body]);
}

/** Encodes a pax header body as tar-stream's pack asks for it. */
export function encodePax(opts: { name?: string; linkname?: string; pax?: Record<string, string> }): Buffer {
  const records: Buffer[] = [];
  if (opts.name) records.push(record('path', opts.name));
  if (opts.linkname) records.push(record('linkpath', opts.linkname));
  for (const [key, value] of Object.entries(opts.pax ?? {})) records.push(record(key, value));
  return Buffer.concat(records);
}

/** Decodes a pax header body: text keys as UTF-8, every other value byte for byte. */
export function decodePax(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let rest = buf;
  while (rest.length > 0) {
    const space = rest.indexOf(0x20);
    const length = space > 0 ? Number.parseInt(rest.subarray(0, space).toString('latin1'), 10) : Number.NaN;
    if (!(length > space + 1) || length > rest.length) break;
    const entry = rest.subarray(space + 1, length - 1);
    const equals = entry.indexOf(0x3d);
    if (equals === -1) break;
    const key = entry.subarray(0, equals).toString('utf8');
    result[key] = entry.subarray(equals + 1).toString(encodingOf(key));
    rest = rest.subarray(length);
  }
  return result;
}

// The codecs live in tar-stream's headers.js, which its exports map hides: found beside its main file.
const require = createRequire(import.meta.url);
const headers = require(join(dirname(require.resolve('tar-stream')), 'headers.js')) as Record<string, unknown>;
if (typeof headers.encodePax !== 'function' || typeof headers.decodePax !== 'function')
  throw new Error('execenv: this tar-stream has no encodePax/decodePax to make binary-safe; pin tar-stream 3.2');
headers.encodePax = encodePax;
headers.decodePax = decodePax;
