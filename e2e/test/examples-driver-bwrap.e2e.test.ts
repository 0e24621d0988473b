import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyExample, installedPackages, installFromPacks, type Packs, packWorkspaces, run } from './examples-packs.js';
import { busyboxTarball } from './fixtures.js';

/** The part of vitest's JSON report read here. */
interface VitestReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  testResults: { name: string; assertionResults: { title: string; status: string; failureMessages: string[] }[] }[];
}

let work: string;
let example: string;
let packs: Packs;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-driver-bwrap-'));
  packs = await packWorkspaces(['@execenv/core', '@execenv/agent', '@execenv/images'], join(work, 'packs'));
  example = await copyExample('driver-bwrap', join(work, 'driver-bwrap'));
  await installFromPacks(example, packs);
}, 300_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('examples/driver-bwrap, a third-party driver built from packed tarballs', () => {
  it('installs @execenv/core, @execenv/agent and @execenv/images from the tarballs, and no other driver', async () => {
    const execenv = (await installedPackages(example)).filter(
      (n) => n.startsWith('@execenv/') || n.startsWith('execenv-'),
    );
    expect(execenv).toEqual(['@execenv/agent', '@execenv/core', '@execenv/images']);
  });

  it('builds and type-checks with tsc, as its author would', async () => {
    await run('npm', ['run', 'build'], { cwd: example });
    await run('npm', ['run', 'typecheck'], { cwd: example });
  }, 120_000);

  it('passes its own unit tests and the whole conformance suite in its own repository', async () => {
    const result = await run('npx', ['vitest', 'run'], {
      cwd: example,
      env: { ...process.env, EXECENV_TEST_IMAGE: busyboxTarball() },
      maxBuffer: 64 << 20,
    }).catch((err: { stdout: string; stderr: string }) => err);
    const report = JSON.parse(await readFile(join(example, 'test-results', 'vitest.json'), 'utf8')) as VitestReport;
    const tests = report.testResults.flatMap((f) =>
      f.assertionResults.map((a) => ({ file: f.name.slice(example.length + 1), ...a })),
    );
    const failed = tests.filter((t) => t.status === 'failed');
    expect(failed.map((t) => `${t.file}: ${t.title}: ${t.failureMessages.join('\n')}`)).toEqual([]);
    expect('code' in result ? result.code : 0).toBe(0);
    const conformance = tests.filter((t) => t.file === 'test/conformance.test.ts');
    const passed = conformance.filter((t) => t.status === 'passed').map((t) => t.title);
    const skipped = conformance.filter((t) => t.status !== 'passed').map((t) => t.title);
    if (skipped.length > 0) console.log(`driver-bwrap conformance: skipped ${skipped.join('; ')}`);
    // The suite ran for real: a bwrap sandbox was opened, not skipped for want of one.
    expect(passed).toEqual(
      expect.arrayContaining([
        'exit-codes',
        'timeout',
        'unsafe-archive',
        'file-race',
        'hostile-image-symlinks',
        'leaks',
        'gc-after-kill',
      ]),
    );
    expect(passed.length).toBeGreaterThanOrEqual(35);
    expect(tests.filter((t) => t.file !== 'test/conformance.test.ts' && t.status === 'passed').length).toBeGreaterThan(
      0,
    );
  }, 600_000);

  it('is opened by name from an app that installed it as a file: dependency with its own copy of core', async () => {
    const app = join(work, 'app');
    await mkdir(app);
    await writeFile(
      join(app, 'package.json'),
      JSON.stringify({
        private: true,
        type: 'module',
        dependencies: {
          '@execenv/core': `file:${packs.get('@execenv/core')}`,
          'execenv-driver-bwrap': 'file:../driver-bwrap',
        },
      }),
    );
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app });
    // Two copies of core: the app's, and the one in the driver's own node_modules that it registers with.
    const script = `
      import { open } from '@execenv/core';
      const env = await open('bwrap', { image: process.argv[1] }, { stateDir: process.argv[2] });
      try {
        const r = await env.exec(['sh', '-c', 'cat /proc/1/comm; id -u']);
        process.stdout.write(r.stdout);
      } finally {
        await env.close();
      }`;
    const { stdout, stderr } = await run(
      process.execPath,
      ['--input-type=module', '-e', script, busyboxTarball(), join(work, 'state')],
      { cwd: app },
    );
    expect(stdout).toBe('execenv-agent\n0\n');
    expect(stderr).toContain('2 copies of @execenv/core are loaded');
    expect(stderr).toContain(join(app, 'node_modules/@execenv/core'));
    expect(stderr).toContain(join(work, 'driver-bwrap/node_modules/@execenv/core'));
  }, 180_000);
});
