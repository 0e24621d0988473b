import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify, stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));

// docs/releasing.md, followed as a maintainer would: a version plan for one package, then a dry run
// of the whole release. The dry run writes nothing; the plan file is this test's own and removed.
describe('release with Nx (docs/releasing.md)', () => {
  it('bumps the planned package, gives its dependents a patch release and previews the changelog', async () => {
    const note = `core: release check ${randomBytes(4).toString('hex')}`;
    const plans = join(REPO, '.nx', 'version-plans');
    const plan = join(plans, `e2e-release-check-${process.pid}.md`);
    await mkdir(plans, { recursive: true });
    await writeFile(plan, `---\n'@execenv/core': patch\n---\n\n${note}\n`);
    const packagesStatus = async () =>
      (await run('git', ['status', '--porcelain', '--', 'packages'], { cwd: REPO, encoding: 'utf8' })).stdout;
    const before = await packagesStatus();
    let out: string;
    try {
      const r = await run('npx', ['nx', 'release', '--dry-run', '--skip-publish'], {
        cwd: REPO,
        encoding: 'utf8',
        maxBuffer: 64 << 20,
        env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NO_COLOR: '1', FORCE_COLOR: '0' },
      });
      // Colours come through where a CI variable asks for them: the lines are read without them.
      out = stripVTControlCharacters(r.stdout + r.stderr);
    } finally {
      await rm(plan, { force: true });
    }
    const version = (name: string) =>
      new RegExp(`^${name} .*(?:New version|to get new version) (\\d+\\.\\d+\\.\\d+)`, 'm').exec(out)?.[1];
    expect(out).toMatch(/^@execenv\/core .*read from version plan \.nx\/version-plans\/e2e-release-check-/m);
    expect(version('@execenv/core')).toMatch(/^0\.\d+\.\d+$/);
    // Every package depends on core: each gets a patch release because a dependency was bumped.
    for (const dependent of ['@execenv/chroot', '@execenv/agent', '@execenv/cli'])
      expect(out).toMatch(new RegExp(`^${dependent} .*bump "patch", because a dependency was bumped`, 'm'));
    expect(out).toMatch(/(CREATE|UPDATE) packages\/core\/CHANGELOG\.md \[dry-run\]/);
    expect(out).toContain(`+ - ${note}`);
    expect(out).toContain('The "dryRun" flag means no changes were made');
    // Nothing was written: no package.json or changelog changed.
    expect(await packagesStatus()).toBe(before);
  }, 600_000);
});
