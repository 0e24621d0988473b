/** Hand-made ustar archives for tests that feed the agent what a tar tool would refuse to write. */

/** A ustar header block for one entry (typeflag `type`), then its content padded to whole blocks. */
export function entry(name: string, type: string, content = '', linkTarget = ''): Buffer {
  const header = Buffer.alloc(512);
  const put = (text: string, offset: number) => header.write(text, offset, 'latin1');
  put(name, 0);
  put('0000644\0', 100);
  put('0000000\0', 108);
  put('0000000\0', 116);
  put(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  put('00000000000\0', 136);
  put('        ', 148);
  put(type, 156);
  put(linkTarget, 157);
  put('ustar\0', 257);
  put('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
  body.write(content);
  return Buffer.concat([header, body]);
}

/** A ustar archive of the entries, with its end-of-archive blocks. */
export function archive(...entries: Buffer[]): Buffer {
  return Buffer.concat([...entries, Buffer.alloc(1024)]);
}
