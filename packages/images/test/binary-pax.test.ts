import { describe, expect, it } from 'vitest';
import { decodePax, encodePax } from '../src/binary-pax.js';

describe('binary-safe pax records', () => {
  it('writes LEN KEY=VALUE records whose length counts its own digits', () => {
    expect(encodePax({ name: 'a', pax: { mtime: '1.5' } }).toString()).toBe('9 path=a\n13 mtime=1.5\n');
    // 99 bytes of body would need 2 digits and become 101: the length grows a digit.
    const body = ` path=${'p'.repeat(92)}\n`;
    const encoded = encodePax({ name: 'p'.repeat(92) }).toString();
    expect(encoded).toBe(`${body.length + 3}${body}`);
  });

  it('round-trips every byte value of a non-text record and UTF-8 paths', () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const pax = { 'SCHILY.xattr.security.capability': bytes.toString('latin1') };
    const decoded = decodePax(encodePax({ name: 'usr/bin/pïng', linkname: 'ü', pax }));
    expect(decoded.path).toBe('usr/bin/pïng');
    expect(decoded.linkpath).toBe('ü');
    expect(Buffer.from(decoded['SCHILY.xattr.security.capability']!, 'latin1')).toEqual(bytes);
  });

  it('stops at a malformed record instead of reading past it', () => {
    expect(decodePax(Buffer.from('9 path=a\nxx junk\n'))).toEqual({ path: 'a' });
    expect(decodePax(Buffer.from('999 path=a\n'))).toEqual({});
  });
});
