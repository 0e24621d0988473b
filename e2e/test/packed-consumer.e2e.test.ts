import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PACKAGES = ['@execenv/core', '@execenv/images', '@execenv/agent', '@execenv/net', '@execenv/chroot'];
/** Every name a C compiler answers to on Debian; each is hidden from the consumer. */
const COMPILERS = [
  'cc',
  'gcc',
  'c89',
  'c99',
  'gcc-12',
  'x86_64-linux-gnu-gcc',
  'x86_64-linux-gnu-gcc-12',
  'tcc',
  'clang',
];

const CONSUMER = `
import { open } from '@execenv/core';
import '@execenv/chroot';
const [image, stateDir, cacheDir] = process.argv.slice(2);
const { ChrootDriver } = await import('@execenv/chroot');
const driver = new ChrootDriver({ mode: 'root', cacheDir });
// The registry's instance opens below; this one only proves probe() needs no compiler either.
const probe = await driver.probe();
if (!probe.available) throw new Error('chroot unavailable: ' + probe.reason);
const env = await open('chroot', { image }, { stateDir });
try {
  const r = await env.exec(['sh', '-c', 'echo consumer ran; cat /proc/1/comm']);
  process.stdout.write(r.stdout);
  process.exitCode = r.exitCode;
} finally {
  await env.close();
}
void driver;
`;

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-consumer-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('a consumer installed from packed tarballs', () => {
  it('opens a chroot and runs a command on a host where no C compiler can run', async () => {
    const packs = join(work, 'packs');
    await mkdir(packs);
    const args = ['pack', '--silent', '--pack-destination', packs, ...PACKAGES.flatMap((p) => ['-w', p])];
    await run('npm', args, { cwd: REPO });
    const tarballs = (await readdir(packs)).filter((f) => f.endsWith('.tgz'));
    expect(tarballs).toHaveLength(PACKAGES.length);
    const app = join(work, 'app');
    await mkdir(app);
    const dependencies = Object.fromEntries(
      tarballs.map((t) => [
        `@execenv/${t.replace(/^execenv-/, '').replace(/-\d+\.\d+\.\d+\.tgz$/, '')}`,
        `file:${join(packs, t)}`,
      ]),
    );
    await writeFile(join(app, 'package.json'), JSON.stringify({ type: 'module', private: true, dependencies }));
    await writeFile(join(app, 'consumer.mjs'), CONSUMER);
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent'], { cwd: app });

    // In a mount namespace of its own, every compiler on the host is /bin/false: nothing can be built.
    const hide = COMPILERS.map(
      (c) => `for p in /usr/bin/${c}; do [ -e "$p" ] && mount --bind /bin/false "$(readlink -f "$p")"; done`,
    );
    const script = [...hide, 'exec "$@"'].join('\n');
    const stateDir = join(work, 'state');
    const cacheDir = join(work, 'cache');
    const { stdout } = await run(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'bash',
        '-c',
        script,
        'consumer',
        process.execPath,
        'consumer.mjs',
        busyboxTarball(),
        stateDir,
        cacheDir,
      ],
      { cwd: app },
    );
    expect(stdout).toBe('consumer ran\nexecenv-agent\n');
    expect(await readdir(join(stateDir, 'envs')).catch(() => [])).toEqual([]);
  }, 300_000);
});

/** A workspace package as its package.json says. */
interface Manifest {
  name: string;
  private?: boolean;
  files?: string[];
  exports?: Record<string, string | Record<string, string>>;
}

/** Files a package may ship besides built .js and .d.ts files under dist, package.json and README.md. */
const EXTRA_FILES: Record<string, RegExp> = {
  '@execenv/agent': /^(dist\/bin\/(SHA256SUMS|[a-z0-9]+\/execenv-agent)|native\/[\w-]+\.[ch]|PROTOCOL\.md)$/,
};

async function workspaceManifests(): Promise<{ dir: string; manifest: Manifest }[]> {
  const dirs = await readdir(join(REPO, 'packages'));
  const found = await Promise.all(
    dirs.map(async (d) => {
      const text = await readFile(join(REPO, 'packages', d, 'package.json'), 'utf8').catch(() => undefined);
      return text ? { dir: join(REPO, 'packages', d), manifest: JSON.parse(text) as Manifest } : undefined;
    }),
  );
  return found.filter((p) => p !== undefined && !p.manifest.private) as { dir: string; manifest: Manifest }[];
}

describe('what npm pack ships', () => {
  it('every package ships only its built code, declarations, README and what its exports map names', async () => {
    const problems: string[] = [];
    const manifests = await workspaceManifests();
    // One npm run for every package: each npm start costs seconds on a loaded host.
    const { stdout } = await run(
      'npm',
      ['pack', '--dry-run', '--json', '--ignore-scripts', ...manifests.flatMap((m) => ['-w', m.manifest.name])],
      { cwd: REPO, maxBuffer: 64 << 20 },
    );
    const packs = new Map(
      (JSON.parse(stdout) as { name: string; files: { path: string }[] }[]).map((p) => [p.name, p.files]),
    );
    for (const { manifest } of manifests) {
      if (!packs.has(manifest.name)) problems.push(`${manifest.name}: npm pack made nothing`);
      const files = new Set((packs.get(manifest.name) ?? []).map((f) => f.path));
      const extra = EXTRA_FILES[manifest.name];
      for (const path of files) {
        const allowed =
          path === 'package.json' ||
          path === 'README.md' ||
          (/^dist\/.+\.(js|d\.ts)$/.test(path) && !/(^|\/)(test|tests|__tests__)\/|\.test\.|\.spec\./.test(path)) ||
          extra?.test(path);
        if (!allowed) problems.push(`${manifest.name}: ships ${path}`);
      }
      if (!files.has('README.md')) problems.push(`${manifest.name}: ships no README.md`);
      for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
        if (typeof target === 'string') {
          if (target !== './package.json' && !files.has(target.replace(/^\.\//, '')))
            problems.push(`${manifest.name}: exports["${subpath}"] names ${target}, which is not packed`);
          continue;
        }
        if (!('default' in target))
          problems.push(
            `${manifest.name}: exports["${subpath}"] has no "default" condition (CommonJS require() fails)`,
          );
        for (const [condition, file] of Object.entries(target))
          if (!files.has(file.replace(/^\.\//, '')))
            problems.push(`${manifest.name}: exports["${subpath}"].${condition} names ${file}, which is not packed`);
      }
    }
    expect(problems).toEqual([]);
  }, 300_000);
});
