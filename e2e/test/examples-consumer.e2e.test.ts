import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyExample, installedPackages, installFromPacks, packWorkspaces, run } from './examples-packs.js';
import { busyboxTarball } from './fixtures.js';

/** Records every module URL Node resolves, one a line, in $EXECENV_TRACE. */
const TRACE_HOOKS = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.EXECENV_TRACE, resolved.url + '\\n');
  return resolved;
}
`;
const TRACE_REGISTER = `import { register } from 'node:module';\nregister('./trace-hooks.mjs', import.meta.url);\n`;

let work: string;
let app: string;
let source: string;
let stateDir: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-consumer-example-'));
  const packs = await packWorkspaces(
    ['@execenv/core', '@execenv/agent', '@execenv/images', '@execenv/net', '@execenv/chroot'],
    join(work, 'packs'),
  );
  app = await copyExample('consumer', join(work, 'consumer'));
  await installFromPacks(app, packs);
  source = join(work, 'source');
  await mkdir(join(source, 'sub'), { recursive: true });
  await writeFile(join(source, 'one.txt'), 'a\nb\n');
  await writeFile(join(source, 'sub', 'two.txt'), 'c\n');
  stateDir = join(work, 'state');
}, 300_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The modules Node resolved while running `script` (an ES module) in the app. */
async function modulesResolvedBy(script: string): Promise<string[]> {
  await writeFile(join(app, 'trace-hooks.mjs'), TRACE_HOOKS);
  await writeFile(join(app, 'trace-register.mjs'), TRACE_REGISTER);
  const trace = join(work, `trace-${Math.random().toString(36).slice(2)}.txt`);
  await writeFile(trace, '');
  await run(process.execPath, ['--import', './trace-register.mjs', '--input-type=module', '-e', script], {
    cwd: app,
    env: { ...process.env, EXECENV_TRACE: trace },
  });
  return (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
}

const REPORT = '        2 ./one.txt\n        1 ./sub/two.txt\n        3 total\n';

describe('examples/consumer, an app that installs @execenv/core and one driver from packed tarballs', () => {
  it('has only core, the chroot driver and what it depends on: no other driver package', async () => {
    const installed = await installedPackages(app);
    expect(installed.filter((n) => n.startsWith('@execenv/'))).toEqual([
      '@execenv/agent',
      '@execenv/chroot',
      '@execenv/core',
      '@execenv/images',
      '@execenv/net',
    ]);
    expect(installed.filter((n) => n.startsWith('execenv-driver-'))).toEqual([]);
  });

  it('loads no driver code when it imports @execenv/core, and the driver only when it is opened by name', async () => {
    const core = await modulesResolvedBy("await import('@execenv/core');");
    expect(core.some((url) => url.includes('/node_modules/@execenv/core/dist/index.js'))).toBe(true);
    expect(core.filter((url) => /\/node_modules\/(@execenv\/(?!core\/)|execenv-driver-)/.test(url))).toEqual([]);
    // The tracer sees dynamic imports: asking for the driver by name loads it.
    const byName = await modulesResolvedBy(
      "const { getDriver } = await import('@execenv/core'); await getDriver('chroot');",
    );
    expect(byName.some((url) => url.includes('/node_modules/@execenv/chroot/dist/index.js'))).toBe(true);
  });

  it('type-checks with tsc --strict, module nodenext and no skipLibCheck, ES module and CommonJS alike', async () => {
    const tsconfig = JSON.parse(await readFile(join(app, 'tsconfig.json'), 'utf8'));
    expect(tsconfig.compilerOptions).toMatchObject({ strict: true, skipLibCheck: false, module: 'nodenext' });
    const result = await run('npm', ['run', 'build'], { cwd: app }).catch((err: { stdout: string }) => err);
    expect(result.stdout.split('\n').filter((l) => l.includes('error TS'))).toEqual([]);
    expect((await readdir(join(app, 'dist'))).sort()).toEqual(['count-lines-cjs.cjs', 'count-lines.js']);
  }, 120_000);

  it('requires every package entry point from CommonJS (the exports maps have a default condition)', async () => {
    const script = [
      "const core = require('@execenv/core');",
      "require('@execenv/core/driver');",
      "require('@execenv/core/testing');",
      "require('@execenv/images');",
      "require('@execenv/agent');",
      "require('@execenv/chroot');",
      'console.log(core.drivers().join(","), typeof core.open);',
    ].join('\n');
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: app });
    expect(stdout).toBe('chroot function\n');
  });

  for (const [form, entry] of [
    ['TypeScript with await using', 'dist/count-lines.js'],
    ['CommonJS TypeScript with try/finally', 'dist/count-lines-cjs.cjs'],
    ['plain JavaScript for Node 20 with try/finally', 'count-lines.mjs'],
  ] as const)
    it(`runs the job in a throwaway chroot: ${form}`, async () => {
      const report = join(work, `report-${entry.replace(/\W/g, '_')}.txt`);
      const { stdout } = await run(process.execPath, [entry, busyboxTarball(), source, report], {
        cwd: app,
        env: { ...process.env, EXECENV_STATE_DIR: stateDir },
      });
      expect(stdout).toMatch(/^counted in execenv-[a-z0-9]{12}\n$/);
      expect(await readFile(report, 'utf8')).toBe(REPORT);
      expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
      expect(await readdir(join(stateDir, 'leases')).catch(() => [])).toEqual([]);
    }, 120_000);
});
