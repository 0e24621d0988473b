import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyExample, installFromPacks, packWorkspaces, run } from './examples-packs.js';
import { busyboxTarball, minbaseTarball } from './fixtures.js';

// examples/jobs, installed from packed tarballs, each job run as its README says.
const USER = 'execenv-e2e';

let work: string;
let jobs: string;
let deb: string;
let stateDir: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-jobs-'));
  // The piuparts case runs as an unprivileged user, who must reach the example and its inputs.
  await chmod(work, 0o755);
  const packs = await packWorkspaces(
    ['@execenv/core', '@execenv/agent', '@execenv/images', '@execenv/net', '@execenv/chroot'],
    join(work, 'packs'),
  );
  jobs = await copyExample('jobs', join(work, 'jobs'));
  await installFromPacks(jobs, packs);
  deb = await buildDeb(join(work, 'deb'));
  stateDir = join(work, 'state');
}, 300_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A tiny Debian package, built on the host with dpkg-deb. */
async function buildDeb(dir: string): Promise<string> {
  const root = join(dir, 'root');
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  await mkdir(join(root, 'usr/share/doc/execenv-hello'), { recursive: true });
  await writeFile(
    join(root, 'DEBIAN/control'),
    'Package: execenv-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Example <example@example.org>\n' +
      'Description: a tiny package\n A tiny package for the execenv job examples.\n',
  );
  await writeFile(join(root, 'usr/share/doc/execenv-hello/README'), 'hello\n');
  const out = join(dir, 'execenv-hello_1.0_all.deb');
  await run('dpkg-deb', ['--root-owner-group', '--build', root, out]);
  await chmod(dir, 0o755);
  return out;
}

/** Runs a job script of examples/jobs with node; resolves to its stdout and stderr. */
function job(script: string, args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [script, ...args], {
    cwd: jobs,
    env: { ...process.env, EXECENV_STATE_DIR: stateDir, ...env },
    maxBuffer: 64 << 20,
  });
}

/** Whether the Debian archive answers on port 80 within 5 s. */
function archiveReachable(host = 'deb.debian.org'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port: 80, timeout: 5000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

async function leftInState(): Promise<string[]> {
  return [
    ...(await readdir(join(stateDir, 'envs')).catch(() => [])),
    ...(await readdir(join(stateDir, 'leases')).catch(() => [])),
  ];
}

describe('examples/jobs', () => {
  it('build-untrusted.mjs: an unreviewed build reaches neither the network nor the host, and only its artifacts come out', async () => {
    const source = join(work, 'untrusted');
    await mkdir(source);
    await writeFile(
      join(source, 'build.sh'),
      [
        '#!/bin/sh',
        'echo "building as $(id -un)"',
        'if wget -q -T 3 -O /dev/null http://deb.debian.org/ 2>/dev/null; then echo "network: reachable"; else echo "network: unreachable"; fi',
        'if echo owned 2>/dev/null > /etc/passwd; then echo "/etc/passwd: written"; else echo "/etc/passwd: refused"; fi',
        'sleep 1000 &',
        'printf "#!/bin/sh\\necho hello from the artifact\\n" > "$OUT/hello"',
        'chmod 755 "$OUT/hello"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const out = join(work, 'untrusted-out');
    const { stdout } = await job('build-untrusted.mjs', [busyboxTarball(), source, out]);
    const report = JSON.parse(stdout) as { isolation: string; exitCode: number; log: string };
    expect(report).toMatchObject({ isolation: 'isolation-chroot', exitCode: 0 });
    expect(report.log).toContain('building as nobody\nnetwork: unreachable\n/etc/passwd: refused\n');
    expect(await readdir(out)).toEqual(['hello']);
    expect(await readFile(join(out, 'hello'), 'utf8')).toContain('hello from the artifact');
    expect(await leftInState()).toEqual([]);
  }, 180_000);

  it('root-inside.mjs: dpkg installs and purges as root inside, run by a user without root on the host', async (t) => {
    const ids = await run('id', ['-u', USER]).then(
      async (u) => ({ uid: u.stdout.trim(), gid: (await run('id', ['-g', USER])).stdout.trim() }),
      () => undefined,
    );
    if (!ids) t.skip(`no user ${USER}: run tools/setup-host.sh`);
    const home = join(work, 'user-home');
    await mkdir(home);
    await run('chown', [`${ids!.uid}:${ids!.gid}`, home]);
    // The fixture lives in root's home; the user gets a copy it can read. Without its device nodes: an
    // unprivileged user cannot make them when the image is extracted (the agent mounts /dev anyway).
    const image = join(work, 'minbase-without-devices.tar');
    await run('sh', [
      '-c',
      'zstd -dc "$1" | tar --delete --wildcards "./dev/?*" > "$2"',
      'sh',
      minbaseTarball(),
      image,
    ]);
    await chmod(image, 0o644);
    const { stdout } = await run(
      'setpriv',
      [
        `--reuid=${ids!.uid}`,
        `--regid=${ids!.gid}`,
        '--clear-groups',
        '--',
        process.execPath,
        'root-inside.mjs',
        image,
        deb,
      ],
      {
        cwd: jobs,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          EXECENV_STATE_DIR: join(home, 'state'),
          EXECENV_CACHE_DIR: join(home, 'cache'),
        },
        maxBuffer: 16 << 20,
      },
    );
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      hostUid: Number(ids!.uid),
      mode: 'rootless',
      package: 'execenv-hello',
      owners: ['root:root /usr/share/doc/execenv-hello/README'],
      left: [],
    });
    expect(await readdir(join(home, 'state', 'envs')).catch(() => [])).toEqual([]);
  }, 300_000);

  it('publish-template.mjs: prepares an environment once, publishes it as an image, and opens it again', async () => {
    const image = join(work, 'template.tar');
    const { stdout } = await job('publish-template.mjs', [minbaseTarball(), image]);
    expect(JSON.parse(stdout)).toEqual({
      image,
      marker: 'prepared by publish-template.mjs',
      builder: 'uid=1000(builder) gid=1000(builder) groups=1000(builder)',
    });
    expect(await leftInState()).toEqual([]);
  }, 300_000);

  it('lint-in-release.mjs: runs lintian from the image release on a package built on the host', async (t) => {
    if (!(await archiveReachable())) t.skip('the Debian archive (deb.debian.org:80) is not reachable from this host');
    const result = await job('lint-in-release.mjs', [minbaseTarball(), deb]).catch(
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    // lintian exits non-zero when it finds errors, and this package has some: no changelog, no copyright file.
    expect(result.stdout).toMatch(/^Lintian v2\.\d+\S* on Debian 12\.\d+:$/m);
    expect('code' in result ? result.code : 0).not.toBe(0);
    expect(result.stdout).toContain('E: execenv-hello: no-copyright-file');
    expect(await leftInState()).toEqual([]);
  }, 600_000);
});
