import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

/** The built command, or an installed one that EXECENV_CLI_BIN names. */
const BIN = process.env.EXECENV_CLI_BIN ?? fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

/** Mount points on the host, from /proc/self/mounts (paths without spaces, as the temporary ones here are). */
async function mountPoints(): Promise<string[]> {
  return (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[1]!);
}

let work: string;
let stateDir: string;
let imageCache: string;
let configHome: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-cli-'));
  stateDir = join(work, 'state');
  imageCache = join(work, 'image-cache');
  configHome = join(work, 'config');
  await mkdir(configHome);
});
afterAll(async () => {
  // What a failed test left (an environment whose owner was killed) goes before its state directory.
  await cli(['gc', '--driver', 'chroot']);
  await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from start to the first stdout chunk. */
  firstStdoutMs?: number;
  ms: number;
}

/** The variables every run gets: a private state dir, image cache and configuration, nothing else of the test's. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    EXECENV_STATE_DIR: stateDir,
    EXECENV_IMAGE_CACHE_DIR: imageCache,
    XDG_CONFIG_HOME: configHome,
    ...extra,
  };
}

function start(args: string[], opts: { env?: Record<string, string>; stdin?: string; cwd?: string } = {}) {
  return spawn(process.execPath, [BIN, ...args], {
    env: cliEnv(opts.env),
    cwd: opts.cwd ?? work,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
}

function finish(child: ChildProcess, stdin?: string): Promise<Run> {
  const started = performance.now();
  let stdout = '';
  let stderr = '';
  let firstStdoutMs: number | undefined;
  child.stdout!.on('data', (c: Buffer) => {
    firstStdoutMs ??= performance.now() - started;
    stdout += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  if (stdin !== undefined) child.stdin!.end(stdin);
  return new Promise((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr, firstStdoutMs, ms: performance.now() - started }),
    ),
  );
}

function cli(args: string[], opts: { env?: Record<string, string>; stdin?: string; cwd?: string } = {}): Promise<Run> {
  return finish(start(args, opts), opts.stdin);
}

// --quiet: a first run may convert the image, which is progress on stderr, not the command's.
const image = () => ['--quiet', '--image', busyboxTarball()];

describe('execenv run on the chroot driver', () => {
  it('streams stdout and stderr apart and exits with the command status', async () => {
    const r = await cli(['run', ...image(), '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 42']);
    expect(r).toMatchObject({ code: 42, stdout: 'to-out\n', stderr: 'to-err\n' });
  });

  it('streams output as it comes, not at the end', async () => {
    const r = await cli(['run', ...image(), '--', 'sh', '-c', 'echo first; sleep 2; echo second']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('first\nsecond\n');
    expect(r.firstStdoutMs).toBeLessThan(r.ms - 1500);
  });

  it('pushes files and directories in, pulls results out, with env, cwd and user', async () => {
    const src = join(work, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'a.txt'), 'alpha\n');
    await writeFile(join(src, 'sub', 'b.txt'), 'beta\n');
    await writeFile(join(work, 'single'), 'one file\n', { mode: 0o755 });
    const script = [
      'cat a.txt sub/b.txt /opt/single',
      'echo "$GREETING from $(id -un) in $(pwd)"',
      'env | sort | tr "\\n" " "',
      'mkdir -p /tmp/out/deep && echo result > /tmp/out/deep/r.txt && echo log > /tmp/log.txt',
    ].join('; ');
    const r = await cli(
      [
        'run',
        ...image(),
        '--push',
        './src:/srv/src',
        '--push',
        `${join(work, 'single')}:/opt/single`,
        '--pull',
        '/tmp/out:./results',
        '--pull',
        '/tmp/log.txt:./log.txt',
        '--env',
        'GREETING=hello there',
        '--cwd',
        '/srv/src',
        '--user',
        'nobody',
        '--',
        'sh',
        '-c',
        script,
      ],
      { env: { HOST_ONLY: 'must not leak' } },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual(['alpha', 'beta', 'one file', 'hello there from nobody in /srv/src']);
    expect(lines[4]).toContain('GREETING=hello there');
    expect(lines[4]).not.toContain('HOST_ONLY');
    expect(await readFile(join(work, 'results', 'deep', 'r.txt'), 'utf8')).toBe('result\n');
    expect(await readFile(join(work, 'log.txt'), 'utf8')).toBe('log\n');
  });

  it('forwards piped stdin', async () => {
    const r = await cli(['run', ...image(), '--', 'sh', '-c', 'tr a-z A-Z'], { stdin: 'shout\n' });
    expect(r).toMatchObject({ code: 0, stdout: 'SHOUT\n' });
  });

  it('kills the command and what it started after --timeout, exiting 124', async () => {
    const r = await cli([
      'run',
      '--image',
      busyboxTarball(),
      '--timeout',
      '1',
      '--',
      'sh',
      '-c',
      'sleep 30 & sleep 30',
    ]);
    expect(r.code).toBe(124);
    expect(r.stderr).toContain('timed out after 1 s');
    expect(r.ms).toBeLessThan(15_000);
  });

  it('exits 128 + N when the command dies by signal N', async () => {
    const r = await cli(['run', ...image(), '--', 'sh', '-c', 'kill -TERM $$']);
    expect(r.code).toBe(143);
  });

  it('exits 125 with one line when a pull finds nothing after a successful command, and leaves nothing behind', async () => {
    const r = await cli(['run', ...image(), '--pull', '/nonexistent:./x', '--', 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(
      /^execenv: pull: no such file or directory "\/nonexistent" in execenv-\w+ \[NOT_FOUND\]\n$/,
    );
    expect((await mountPoints()).filter((m) => m.startsWith(stateDir))).toEqual([]);
  });

  it('exits 2 with one line for a user the image does not know, before running anything', async () => {
    const r = await cli(['run', ...image(), '--user', 'nosuchuser', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/nosuchuser.*\[INVALID_SPEC\]/);
  });

  it('exits 4 for an image that does not exist', async () => {
    const r = await cli(['run', '--image', join(work, 'missing.tar'), '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/missing\.tar.*\[IMAGE_NOT_FOUND\]\n$/);
  });

  it('runs on the default image when no image is given, as the README first does', { timeout: 900_000 }, async () => {
    // The default image lives in the user's cache ($HOME/.cache/execenv, built with mmdebstrap on first use).
    const r = await cli(['run', '--quiet', '--', 'sh', '-c', '. /etc/os-release; echo "$ID $VERSION_CODENAME"']);
    expect(r).toMatchObject({ code: 0, stdout: 'debian bookworm\n' });
  });

  it('gives bad flags one clear line and exit 2', async () => {
    for (const args of [
      ['run', '--no-such-flag', '--', 'true'],
      ['run', '--timeout', 'x', '--', 'true'],
      ['ps', '--bogus'],
      ['image', 'rm'],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^execenv: .*\(see 'execenv [a-z ]+--help'\)\n$/);
    }
  });
});

describe('execenv ps and gc against real leftovers', () => {
  it('lists a running environment with its owner, and gc removes it once the owner is killed', async () => {
    const child = start(['run', ...image(), '--', 'sleep', '60']);
    const exited = finish(child);
    interface Row {
      id: string;
      driver: string;
      owner?: { pid: number; alive: boolean };
      createdAt?: string;
    }
    let row: Row | undefined;
    for (let i = 0; i < 100 && !row; i++) {
      const ps = await cli(['ps', '--driver', 'chroot', '--json']);
      expect(ps.code).toBe(0);
      row = (JSON.parse(ps.stdout) as Row[]).find((r) => r.owner?.pid === child.pid);
      if (!row) await new Promise((r) => setTimeout(r, 200));
    }
    expect(row).toMatchObject({ driver: 'chroot', owner: { pid: child.pid, alive: true } });
    expect(Date.now() - Date.parse(row!.createdAt!)).toBeLessThan(60_000);

    const table = await cli(['ps', '--driver', 'chroot']);
    expect(table.stdout).toMatch(new RegExp(`\\n${row!.id} +chroot +${child.pid} \\(alive\\) +\\d+s +\\d+\\n`));

    // An owner that dies without closing leaves mounts and processes; gc must leave them while it lives.
    const live = await cli(['gc', '--driver', 'chroot', '--dry-run', '--json']);
    expect(JSON.parse(live.stdout).wouldRemove.map((r: { id: string }) => r.id)).not.toContain(row!.id);
    child.kill('SIGKILL');
    await exited;
    expect((await mountPoints()).some((m) => m.includes(row!.id))).toBe(true);

    const dry = await cli(['gc', '--driver', 'chroot', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`would remove ${row!.id} (chroot): `);
    const gc = await cli(['gc', '--driver', 'chroot']);
    expect(gc).toMatchObject({ code: 0, stderr: '' });
    expect(gc.stdout).toContain(`removed ${row!.id} (chroot)`);
    expect((await mountPoints()).some((m) => m.includes(row!.id))).toBe(false);
    const after = await cli(['ps', '--driver', 'chroot', '--json']);
    expect(JSON.parse(after.stdout)).toEqual([]);
  });
});

describe('execenv drivers, image and config', () => {
  it('reports the chroot driver available, and every project driver with a status', async () => {
    const r = await cli(['drivers', '--json']);
    expect(r.code).toBe(0);
    const { drivers } = JSON.parse(r.stdout) as {
      drivers: { name: string; available: boolean; reason?: string; install?: string }[];
    };
    expect(drivers.find((d) => d.name === 'chroot')).toMatchObject({
      available: true,
      capabilities: ['isolation-chroot', 'root'],
    });
    expect(drivers.map((d) => d.name)).toEqual(expect.arrayContaining(['chroot', 'lxd', 'nspawn', 'podman', 'qemu']));
    for (const d of drivers.filter((x) => !x.available)) expect(d.reason, d.name).toBeTruthy();
  });

  it('imports, lists, converts, removes and prunes images in the configured cache', async () => {
    const imported = await cli(['image', 'import', busyboxTarball('.zst')]);
    expect(imported.code).toBe(0);
    const [digest, path] = imported.stdout.trim().split(' ');
    expect(digest).toMatch(/^[a-f0-9]{64}$/);
    expect(path!.startsWith(imageCache)).toBe(true);
    expect((await stat(path!)).size).toBe((await stat(busyboxTarball('.zst'))).size);

    const converted = await cli(['image', 'convert', path!, '--to', 'directory']);
    expect(converted.code).toBe(0);
    expect(converted.stderr).toContain('execenv: converting');
    const tree = converted.stdout.trim();
    expect((await stat(join(tree, 'bin', 'busybox'))).isFile()).toBe(true);

    const ls = await cli(['image', 'ls', '--json']);
    const listing = JSON.parse(ls.stdout) as { dir: string; files: { digest: string }[]; trees: { digest: string }[] };
    expect(listing.dir).toBe(imageCache);
    expect(listing.files.map((f) => f.digest)).toContain(digest);
    expect(listing.trees.map((t) => t.digest)).toContain(digest);
    const table = await cli(['image', 'ls']);
    expect(table.stdout).toMatch(
      new RegExp(`\\n${digest!.slice(0, 12)} +file +1\\.0 MiB +\\d+s +busybox\\.tar\\.zst\\n`),
    );

    const rm1 = await cli(['image', 'rm', digest!.slice(0, 10)]);
    expect(rm1).toMatchObject({ code: 0, stdout: `removed ${digest}\n` });
    expect(await stat(path!).catch(() => undefined)).toBeUndefined();
    const again = await cli(['image', 'rm', digest!.slice(0, 10)]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/no cached image matches/);

    await cli(['image', 'import', busyboxTarball('.gz')]);
    const noBudget = await cli(['image', 'prune']);
    expect(noBudget.code).toBe(2);
    const pruned = await cli(['image', 'prune', '--all', '--json']);
    expect(pruned.code).toBe(0);
    expect(JSON.parse(pruned.stdout).removed).toHaveLength(1);
    expect(JSON.parse((await cli(['image', 'ls', '--json'])).stdout).files).toEqual([]);
  });

  it('pulls an image over HTTP into the cache, with download progress as plain lines', async () => {
    const body = await readFile(busyboxTarball('.xz'));
    const server = createServer((req, res) => {
      if (req.url !== '/images/busybox.tar.xz') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/images/busybox.tar.xz`;
      const r = await cli(['image', 'pull', url]);
      expect(r.code).toBe(0);
      expect(r.stderr.split('\n')).toEqual(
        expect.arrayContaining([
          `execenv: downloading busybox.tar.xz (${(body.length / 1024).toFixed(1)} KiB)`,
          expect.stringMatching(/^execenv: downloading busybox\.tar\.xz: .* downloaded$/),
        ]),
      );
      const [kind, path] = r.stdout.trim().split(' ');
      expect(kind).toBe('rootfs-tarball');
      expect(path!.startsWith(imageCache)).toBe(true);
      expect((await readFile(path!)).equals(body)).toBe(true);
      const missing = await cli(['image', 'pull', url.replace('busybox', 'nothing')]);
      expect(missing.code).toBe(4);
      expect(missing.stderr.trimEnd().split('\n').at(-1)).toMatch(/\[IMAGE_NOT_FOUND\]$/);
    } finally {
      server.close();
    }
  });

  it('shows the effective settings and where each came from', async () => {
    await mkdir(join(configHome, 'execenv'), { recursive: true });
    await writeFile(
      join(configHome, 'execenv', 'config.json'),
      JSON.stringify({ driver: 'nspawn', images: { verify: false } }),
    );
    try {
      const r = await cli(['config', '--json'], { env: { EXECENV_IMAGE: '/srv/x.tar', EXECENV_IMAGE_BUDGET: '1G' } });
      expect(r.code).toBe(0);
      const { configFile, settings } = JSON.parse(r.stdout);
      expect(configFile).toEqual({ path: join(configHome, 'execenv', 'config.json'), exists: true });
      expect(settings.driver).toMatchObject({ value: 'nspawn', source: 'file' });
      expect(settings.image).toEqual({ value: '/srv/x.tar', source: 'env', origin: '$EXECENV_IMAGE' });
      expect(settings['images.verify']).toMatchObject({ value: false, source: 'file' });
      expect(settings['images.budgetBytes']).toEqual({
        value: 1024 ** 3,
        source: 'env',
        origin: '$EXECENV_IMAGE_BUDGET',
      });
      expect(settings['images.cacheDir']).toMatchObject({ value: imageCache, source: 'env' });
      expect(settings['images.servers']).toMatchObject({ source: 'default' });
      const text = await cli(['config']);
      expect(text.stdout).toMatch(/\ndriver +nspawn +file: /);
      const broken = join(work, 'broken.json');
      await writeFile(broken, '{');
      const bad = await cli(['config'], { env: { EXECENV_CONFIG: broken } });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/broken\.json: is not JSON.*\[INVALID_SPEC\]\n$/);
    } finally {
      await rm(join(configHome, 'execenv'), { recursive: true, force: true });
    }
  });
});

describe('execenv with a plugin driver (the fake driver)', () => {
  let plugin: string;
  beforeAll(async () => {
    // The copy of core the command itself loads, so the plugin registers into the same registry.
    const require = createRequire(BIN);
    const core = pathToFileURL(require.resolve('@execenv/core')).href;
    const testing = pathToFileURL(require.resolve('@execenv/core/testing')).href;
    plugin = join(work, 'fake-plugin.mjs');
    await writeFile(
      plugin,
      `import { register } from ${JSON.stringify(core)};
import { FakeDriver } from ${JSON.stringify(testing)};
register('fake', new FakeDriver({
  commands: {
    greet: ({ env, cwd, user }) => ({ stdout: 'hi ' + env.WHO + ' in ' + cwd + ' as ' + user + '\\n' }),
    fail: () => ({ exitCode: 9, stderr: 'nope\\n' }),
  },
}));
`,
    );
  });

  it('runs commands on the driver a plugin registers, from EXECENV_PLUGINS', async () => {
    const env = { EXECENV_PLUGINS: plugin };
    const r = await cli(['run', '--driver', 'fake', '-e', 'WHO=you', '--cwd', '/w', '--user', 'u', '--', 'greet'], {
      env,
    });
    expect(r).toMatchObject({ code: 0, stdout: 'hi you in /w as u\n', stderr: '' });
    expect(await cli(['run', '--driver', 'fake', '--', 'fail'], { env })).toMatchObject({ code: 9, stderr: 'nope\n' });
    const piped = await cli(['run', '--driver', 'fake', '--', 'cat'], { env, stdin: 'through\n' });
    expect(piped.stdout).toBe('through\n');
  });

  it('lists the plugin and its driver in drivers, and makes it the default through the config file', async () => {
    await mkdir(join(configHome, 'execenv'), { recursive: true });
    await writeFile(join(configHome, 'execenv', 'config.json'), JSON.stringify({ driver: 'fake', plugins: [plugin] }));
    try {
      const d = await cli(['drivers', '--json']);
      const report = JSON.parse(d.stdout);
      expect(report.plugins).toEqual([{ specifier: plugin, registered: ['fake'] }]);
      expect(report.drivers.find((x: { name: string }) => x.name === 'fake')).toMatchObject({
        available: true,
        version: 'fake',
      });
      expect(await cli(['run', '--', 'echo', 'default', 'driver'])).toMatchObject({
        code: 0,
        stdout: 'default driver\n',
      });
    } finally {
      await rm(join(configHome, 'execenv'), { recursive: true, force: true });
    }
  });

  it('warns about a plugin that cannot be imported and exits 3 for a driver nobody provides', async () => {
    const r = await cli(['run', '--driver', 'fake', '--', 'true'], {
      env: { EXECENV_PLUGINS: join(work, 'missing.mjs') },
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^execenv: warning: plugin .*missing\.mjs: /);
    expect(r.stderr).toMatch(/unknown driver "fake".*\[UNKNOWN_DRIVER\]\n$/);
  });
});
