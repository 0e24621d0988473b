import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStaticElf } from '../../src/driver/static-elf.js';

/** A minimal ELF file: a header and a program header table whose entries have these types. */
function elf(bits: 32 | 64, endian: 'le' | 'be', types: number[]): Buffer {
  const phoff = bits === 64 ? 64 : 52;
  const phentsize = bits === 64 ? 56 : 32;
  const b = Buffer.alloc(phoff + phentsize * types.length);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = bits === 64 ? 2 : 1;
  b[5] = endian === 'le' ? 1 : 2;
  const u16 = (v: number, o: number) => (endian === 'le' ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const u32 = (v: number, o: number) => (endian === 'le' ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  if (bits === 64) {
    if (endian === 'le') b.writeBigUInt64LE(BigInt(phoff), 32);
    else b.writeBigUInt64BE(BigInt(phoff), 32);
  } else u32(phoff, 28);
  u16(phentsize, bits === 64 ? 54 : 42);
  u16(types.length, bits === 64 ? 56 : 44);
  for (const [i, t] of types.entries()) u32(t, phoff + i * phentsize);
  return b;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-static-elf-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('isStaticElf', () => {
  const LOAD = 1;
  const INTERP = 3;
  for (const bits of [32, 64] as const)
    for (const endian of ['le', 'be'] as const)
      it(`tells static from dynamic in ${bits}-bit ${endian === 'le' ? 'little' : 'big'}-endian ELF`, async () => {
        const staticPath = join(dir, `static-${bits}-${endian}`);
        const dynamicPath = join(dir, `dynamic-${bits}-${endian}`);
        await writeFile(staticPath, elf(bits, endian, [LOAD, LOAD]));
        await writeFile(dynamicPath, elf(bits, endian, [LOAD, INTERP, LOAD]));
        expect(await isStaticElf(staticPath)).toBe(true);
        expect(await isStaticElf(dynamicPath)).toBe(false);
      });

  it('says false for a missing file and for one that is not ELF', async () => {
    await writeFile(join(dir, 'script'), '#!/bin/sh\necho hi\n');
    expect(await isStaticElf(join(dir, 'script'))).toBe(false);
    expect(await isStaticElf(join(dir, 'missing'))).toBe(false);
  });
});
