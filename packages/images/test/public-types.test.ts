import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const packageDir = join(import.meta.dirname, '..');

/**
 * Every module specifier the declaration files import or reference. TSDoc
 * blocks are left out first: their examples import packages as a consumer
 * would, and a comment is no import.
 */
function specifiers(dts: string): string[] {
  const code = dts.replace(/\/\*\*[\s\S]*?\*\//g, '');
  const found = [...code.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
  return [...found, ...[...dts.matchAll(/reference types="([^"]+)"/g)].map((m) => m[1]!)];
}

// A consumer with strict settings and no skipLibCheck reads every declaration this package publishes:
// only node's own modules, @execenv/core (a peer) and the package's own files may appear in them.
it('the published declarations name no third-party types', { timeout: 120_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'execenv-dts-'));
  try {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    await run(process.execPath, [
      tsc,
      '-p',
      join(packageDir, 'tsconfig.build.json'),
      '--emitDeclarationOnly',
      '--declarationMap',
      'false',
      '--outDir',
      out,
    ]);
    const files = (await readdir(out, { recursive: true })).filter((f) => f.endsWith('.d.ts'));
    expect(files).toContain('index.d.ts');
    const foreign: string[] = [];
    for (const f of files)
      for (const s of specifiers(await readFile(join(out, f), 'utf8')))
        if (!s.startsWith('node:') && !s.startsWith('.') && !s.startsWith('@execenv/core')) foreign.push(`${f}: ${s}`);
    expect(foreign).toEqual([]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
