import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentBinaryPath } from '@execenv/agent';
import { type EnvSpec, processStartTime } from '@execenv/core';
import { ImageCache } from '@execenv/images';
import { generateSigningKey, ImageServer, tarOf } from '@execenv/images/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PodmanDriver } from '../src/podman-driver.js';
import type { PodmanEnvOptions } from '../src/podman-options.js';
import { type Answer, ScriptedRunner } from './scripted-runner.js';

let work: string;
let stateDir: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-podman-unit-'));
  stateDir = join(work, 'state');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/**
 * A podman stand-in: answers the runner's commands, and plays a spawned
 * `podman run --rm` by running the real agent on the host, listening where
 * the container's would, until the run's stdin closes (or `podman rm`);
 * `podman restart` starts another agent there.
 */
function fakePodman(extra: (argv: readonly string[]) => Answer | undefined = () => undefined) {
  const agents: ChildProcess[] = [];
  /** What each `podman import -` read on its stdin. */
  const imports: Buffer[] = [];
  let socketDir = '';
  let runs = 0;
  const runner = new ScriptedRunner(
    (argv) => {
      const answer = extra(argv);
      if (answer) return answer;
      if (argv[0] === 'mktemp') {
        socketDir = join(work, `run-${runs++}`);
        return { stdout: `${socketDir}\n` };
      }
      if (argv[1] === 'rm' || argv[1] === 'restart') for (const a of agents) a.stdin?.end();
      if (argv[1] === 'restart') void startAgent(join(socketDir, 'agent.sock')).then((a) => agents.push(a));
      return undefined;
    },
    (run) => {
      if (run.argv[1] === 'import') {
        const chunks: Buffer[] = [];
        run.stdin.on('data', (c: Buffer) => chunks.push(c));
        run.stdin.on('end', () => {
          imports.push(Buffer.concat(chunks));
          run.exit({ exitCode: 0, signal: null });
        });
        return;
      }
      if (run.argv[1] !== 'run') return;
      const answer = extra(run.argv);
      if (answer) {
        run.stderr.write(answer.stderr ?? '');
        run.exit({ exitCode: answer.exitCode ?? 0, signal: null });
        return;
      }
      const started = startAgent(join(socketDir, 'agent.sock')).then((a) => {
        agents.push(a);
        a.on('exit', () => run.exit({ exitCode: 0, signal: null }));
        return a;
      });
      run.stdin.resume();
      run.stdin.on('end', () => void started.then((a) => a.stdin?.end()));
    },
  );
  return { runner, agents, imports };
}

async function startAgent(socket: string): Promise<ChildProcess> {
  await mkdir(join(socket, '..'), { recursive: true });
  return spawn(await agentBinaryPath(), ['--listen', socket], { stdio: ['pipe', 'ignore', 'inherit'] });
}

const podmanArgvs = (runner: ScriptedRunner) => runner.commands.filter((a) => a[0] === 'podman').map((a) => a.slice(1));

describe('PodmanDriver.open', () => {
  it('runs and removes one labelled container with the agent as its entrypoint', async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open({ image: 'oci:docker.io/library/busybox:1.36' }, { stateDir, closeOnSignal: false });
    expect((await env.exec(['echo', 'hello'])).stdout).toBe('hello\n');
    await env.close();
    const agent = await agentBinaryPath();
    const socketDir = join(work, 'run-0');
    const id = env.id;
    const owner = `${process.pid}:${await processStartTime(process.pid)}@${hostname()}`;
    expect(podmanArgvs(runner)).toEqual([
      ['image', 'exists', 'docker.io/library/busybox:1.36'],
      [
        'run',
        '--rm',
        '--name',
        id,
        '-i',
        '--user',
        '0:0',
        '--workdir',
        '/',
        '--conmon-pidfile',
        join(socketDir, 'conmon.pid'),
        '--label',
        `execenv.id=${id}`,
        '--label',
        `execenv.owner=${owner}`,
        '--network',
        'none',
        '--mount',
        `type=bind,source=${agent},destination=/.execenv/agent,ro=true`,
        '--mount',
        `type=bind,source=${socketDir},destination=/.execenv/run`,
        '--entrypoint',
        '["/.execenv/agent","--listen","/.execenv/run/agent.sock"]',
        'docker.io/library/busybox:1.36',
      ],
    ]);
    expect(runner.argvs.filter((a) => a[0] !== 'podman')).toEqual([
      ['mktemp', '-d', join(work, 'execenv-podman-XXXXXXXX')],
      ['rm', '-rf', '--one-file-system', '--', socketDir],
    ]);
    expect(await readdir(join(stateDir, 'leases'))).toEqual([]);
  });

  it('makes a private network for nat when asked, and removes it after the container', async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open(
      { image: 'oci:busybox', network: 'nat', driverOptions: { privateNetwork: true } },
      { stateDir, closeOnSignal: false },
    );
    await env.close();
    const argvs = podmanArgvs(runner);
    const created = argvs.find((a) => a[0] === 'network' && a[1] === 'create');
    expect(created).toEqual([
      'network',
      'create',
      '--label',
      `execenv.id=${env.id}`,
      '--label',
      expect.stringMatching(/^execenv\.owner=\d+:\d+@/),
      env.id,
    ]);
    const create = argvs.find((a) => a[0] === 'run')!;
    expect(create[create.indexOf('--network') + 1]).toBe(env.id);
    expect(env.capabilities.has('network')).toBe(true);
    expect(argvs.slice(-2)).toEqual([
      ['run', '--rm', '--name', env.id, ...create.slice(4)],
      ['network', 'rm', '--force', env.id],
    ]);
  });

  it("leaves nat to podman's default network when no private one is asked for", async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open({ image: 'oci:busybox', network: 'nat' }, { stateDir, closeOnSignal: false });
    await env.close();
    const run = podmanArgvs(runner).find((a) => a[0] === 'run')!;
    expect(run).not.toContain('--network');
    expect(podmanArgvs(runner).some((a) => a[0] === 'network')).toBe(false);
  });

  it('removes the container with podman rm when the attached run reports an error on exit', async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open({ image: 'oci:busybox' }, { stateDir, closeOnSignal: false });
    const run = runner.spawned.find((p) => p.argv[1] === 'run')!;
    run.stderr.write('time="2026-01-01T00:00:00Z" level=error msg="Removing container: layer in use"\n');
    await env.close();
    expect(podmanArgvs(runner).map((a) => a.slice(0, 2).join(' '))).toEqual(['image exists', 'run --rm', 'rm --force']);
    expect(await readdir(join(stateDir, 'leases'))).toEqual([]);
  });

  it('reboots an attached run --rm container without stopping it: every command killed, the agent kept', async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open({ image: 'oci:busybox' }, { stateDir, closeOnSignal: false });
    await env.reboot();
    expect((await env.exec(['echo', 'after'])).stdout).toBe('after\n');
    await env.close();
    // podman restart would stop the container, and a run --rm container is removed when it stops.
    expect(podmanArgvs(runner).map((a) => a.slice(0, 2).join(' '))).toEqual(['image exists', 'run --rm']);
    expect(runner.spawned.every((p) => p.stdin.writableEnded)).toBe(true);
  });

  it('reverts by ending the attached run and starting another', async () => {
    const { runner } = fakePodman();
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const env = await driver.open({ image: 'oci:busybox' }, { stateDir, closeOnSignal: false });
    await env.exec(['touch', join(work, 'mark')], { check: true });
    await env.revert();
    expect((await env.exec(['echo', 'again'])).stdout).toBe('again\n');
    await env.close();
    expect(podmanArgvs(runner).map((a) => a.slice(0, 2).join(' '))).toEqual(['image exists', 'run --rm', 'run --rm']);
    expect(runner.spawned.every((p) => p.stdin.writableEnded)).toBe(true);
  });

  it('asks podman about an image once per driver, and again when podman lost it', async () => {
    let lost = false;
    const { runner } = fakePodman((argv) => {
      if (argv[1] !== 'run' || !lost) return undefined;
      lost = false;
      return { exitCode: 125, stderr: 'Error: busybox: image not known' };
    });
    const driver = new PodmanDriver({ runner, runtimeDir: work });
    const opts = { stateDir, closeOnSignal: false };
    await (await driver.open({ image: 'oci:busybox' }, opts)).close();
    await (await driver.open({ image: 'oci:busybox' }, opts)).close();
    lost = true;
    await (await driver.open({ image: 'oci:busybox' }, opts)).close();
    expect(podmanArgvs(runner).map((a) => a.slice(0, 2).join(' '))).toEqual([
      'image exists',
      'run --rm',
      'run --rm',
      'run --rm',
      'image exists',
      'run --rm',
    ]);
  });

  it('runs the agent through podman exec -i on a remote podman, copying it into the container first', async () => {
    const runner = new ScriptedRunner();
    const driver = new PodmanDriver({ runner, url: 'unix:///run/podman/podman.sock' });
    expect(driver.transport).toBe('exec');
    const opening = driver.open({ image: 'oci:busybox' }, { stateDir, closeOnSignal: false });
    // Played by the test: the exec'd agent ends at once, as one that cannot start would.
    for (let i = 0; i < 200 && runner.spawned.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    const exec = runner.spawned[0]!;
    exec.stderr.write('Error: no such file\n');
    exec.exit({ exitCode: 127, signal: null });
    await expect(opening).rejects.toMatchObject({ code: 'DRIVER_UNAVAILABLE' });
    const argvs = runner.argvs.map((a) => a.slice(3));
    const id = argvs.find((a) => a[0] === 'start')![1]!;
    expect(argvs.map((a) => a[0])).toEqual(['image', 'create', 'cp', 'start', 'rm']);
    expect(argvs[2]).toEqual(['cp', expect.stringMatching(/\/execenv$/), `${id}:/.execenv`]);
    expect(exec.argv).toEqual([
      'podman',
      '--url',
      'unix:///run/podman/podman.sock',
      'exec',
      '-i',
      id,
      '/.execenv/agent',
      '--stdio',
    ]);
    expect(await readdir(join(stateDir, 'leases'))).toEqual([]);
  });

  it.each([
    [{ image: 'oci:busybox', network: 'nat', resources: { disk: '1G' } }, 'UNSUPPORTED'],
    [{ image: 'oci:busybox', driverOptions: { privateNetwork: true } }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', driverOptions: { pids: -1 } }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', driverOptions: { volume: 'x' } }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', driverOptions: { images: { verify: 'no' } } }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', driverOptions: { images: { sever: 'typo' } } }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', arch: 'riscv64' as const }, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', ephemeral: false }, 'INVALID_SPEC'],
    [{}, 'INVALID_SPEC'],
    [{ image: 'oci:busybox', mounts: [{ source: '/srv/a,b', target: '/in' }] }, 'INVALID_SPEC'],
  ])('refuses %j before running anything', async (spec, code) => {
    const runner = new ScriptedRunner();
    const driver = new PodmanDriver({ runner });
    await expect(
      driver.open(spec as EnvSpec<PodmanEnvOptions>, { stateDir, closeOnSignal: false }),
    ).rejects.toMatchObject({ code });
    expect(runner.ran).toEqual([]);
  });

  it('names the spec field of a limit it cannot apply, and of malformed image settings', async () => {
    const driver = new PodmanDriver({ runner: new ScriptedRunner() });
    const opts = { stateDir, closeOnSignal: false };
    await expect(driver.open({ image: 'oci:busybox', resources: { disk: '1G' } }, opts)).rejects.toMatchObject({
      code: 'UNSUPPORTED',
      field: 'resources.disk',
      driver: 'podman',
    });
    await expect(
      driver.open({ image: 'oci:busybox', driverOptions: { images: { keys: 'k.gpg' } as never } }, opts),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'driverOptions.images', driver: 'podman' });
  });

  it('refuses a network podman does not know, asking podman only that', async () => {
    const runner = new ScriptedRunner((argv) => (argv[2] === 'exists' ? { exitCode: 1 } : undefined));
    const driver = new PodmanDriver({ runner });
    await expect(
      driver.open({ image: 'oci:busybox', network: 'lab' }, { stateDir, closeOnSignal: false }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'network' });
    expect(runner.argvs).toEqual([['podman', 'network', 'exists', 'lab']]);
  });
});

describe('PodmanDriver.gc', () => {
  it('removes the containers and networks whose owner on this host is dead, and no others', async () => {
    const alive = `${process.pid}:${await processStartTime(process.pid)}@${hostname()}`;
    const dead = `999999999:1@${hostname()}`;
    const elsewhere = '1:1@another-host';
    const runner = new ScriptedRunner((argv) => {
      if (argv[1] === 'ps')
        return {
          stdout: JSON.stringify([
            { Names: ['execenv-dead'], Labels: { 'execenv.id': 'execenv-dead', 'execenv.owner': dead } },
            { Names: ['execenv-alive'], Labels: { 'execenv.id': 'execenv-alive', 'execenv.owner': alive } },
            { Names: ['execenv-far'], Labels: { 'execenv.id': 'execenv-far', 'execenv.owner': elsewhere } },
          ]),
        };
      if (argv[1] === 'network' && argv[2] === 'ls')
        return {
          stdout: JSON.stringify([
            { name: 'execenv-dead', labels: { 'execenv.id': 'execenv-dead', 'execenv.owner': dead } },
            { name: 'execenv-alive', labels: { 'execenv.id': 'execenv-alive', 'execenv.owner': alive } },
          ]),
        };
      return undefined;
    });
    const report = await new PodmanDriver({ runner }).gc({ stateDir });
    expect(report).toEqual({ removed: ['execenv-dead'], errors: [] });
    expect(runner.argvs.map((a) => a.slice(1))).toEqual([
      ['ps', '--all', '--filter', 'label=execenv.owner', '--format', 'json'],
      ['rm', '--force', '--ignore', '--volumes', '--time', '0', 'execenv-dead'],
      ['network', 'ls', '--filter', 'label=execenv.owner', '--format', 'json'],
      ['network', 'rm', '--force', 'execenv-dead'],
    ]);
  });

  it('prunes only the images it imported, leaving those a container uses', async () => {
    const runner = new ScriptedRunner((argv) => {
      if (argv[1] === 'images')
        return {
          stdout: JSON.stringify([
            { Id: 'i1', Names: ['localhost/execenv-rootfs:aaa'], Labels: { 'execenv.rootfs': 'aaa' } },
            { Id: 'i2', Names: ['localhost/execenv-rootfs:bbb'], Labels: { 'execenv.rootfs': 'bbb' } },
            // Published from an environment: the label came with the layers; the image is the user's.
            { Id: 'i3', Names: ['localhost/my-build:1'], Labels: { 'execenv.rootfs': 'aaa' } },
          ]),
        };
      if (argv[1] === 'rmi' && argv[2] === 'i2') return { exitCode: 2, stderr: 'image is in use by a container' };
      return undefined;
    });
    expect(await new PodmanDriver({ runner }).pruneImages()).toEqual(['localhost/execenv-rootfs:aaa']);
    expect(runner.argvs).toEqual([
      ['podman', 'images', '--filter', 'label=execenv.rootfs', '--format', 'json'],
      ['podman', 'rmi', 'i1'],
      ['podman', 'rmi', 'i2'],
    ]);
  });
});

describe('PodmanDriver image settings', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it("imports an index: image's root filesystem, found through the user's configuration", async () => {
    // A plain tarball: converting it needs no decompressor, so the scripted runner runs nothing for it.
    const rootfs = await tarOf([
      { header: { name: './', type: 'directory', mode: 0o755 } },
      { header: { name: './etc/os-release', mode: 0o644 }, body: 'NAME="busybox fixture"\n' },
    ]);
    const digest = createHash('sha256').update(rootfs).digest('hex');
    const key = await generateSigningKey();
    const server = await new ImageServer().start();
    try {
      await server.publishLxcDownload(
        { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
        { rootfs, meta: Buffer.from('lxc-download metadata') },
        key.privateKey,
      );
      const keyFile = join(work, 'signer.asc');
      await writeFile(keyFile, key.publicKey);
      const cacheDir = join(work, 'configured-cache');
      await writeFile(
        join(work, 'config.json'),
        JSON.stringify({ images: { servers: { lxc: server.url }, keys: [keyFile], cacheDir } }),
      );
      vi.stubEnv('XDG_CONFIG_HOME', join(work, 'config-home'));
      vi.stubEnv('EXECENV_CONFIG', join(work, 'config.json'));
      // The rootfs image is missing from podman until the driver imported it.
      const podman = fakePodman((argv) =>
        argv[1] === 'image' && argv[2] === 'exists' && argv[3]?.startsWith('localhost/execenv-rootfs:')
          ? { exitCode: podman.imports.length > 0 ? 0 : 1 }
          : undefined,
      );
      const { runner, imports } = podman;
      const driver = new PodmanDriver({ runner, runtimeDir: work });
      const env = await driver.open({ image: 'index:busybox/1.36/amd64' }, { stateDir, closeOnSignal: false });
      expect((await env.exec(['echo', 'up'])).stdout).toBe('up\n');
      await env.close();
      const name = `localhost/execenv-rootfs:${digest}`;
      expect(podmanArgvs(runner)).toContainEqual([
        'import',
        '--change',
        `LABEL execenv.rootfs=${digest}`,
        '--message',
        'execenv: index:busybox/1.36/amd64',
        '-',
        name,
      ]);
      expect(imports).toEqual([rootfs]);
      expect(
        podmanArgvs(runner)
          .find((a) => a[0] === 'run')
          ?.at(-1),
      ).toBe(name);
      // Downloaded, verified and converted in the cache the configuration names.
      expect((await new ImageCache({ dir: cacheDir }).list()).length).toBeGreaterThanOrEqual(2);
    } finally {
      await server.stop();
    }
  });

  it("lets the spec's driverOptions.images override the configuration", async () => {
    vi.stubEnv('XDG_CONFIG_HOME', join(work, 'config-home'));
    vi.stubEnv('EXECENV_CONFIG', join(work, 'absent.json'));
    vi.stubEnv('EXECENV_IMAGE_SERVER', 'http://127.0.0.1:9');
    const server = await new ImageServer().start();
    try {
      const key = await generateSigningKey();
      const stranger = await generateSigningKey('stranger');
      await server.publishLxcDownload(
        { distribution: 'busybox', release: '1.36', architecture: 'amd64' },
        { rootfs: Buffer.from('rootfs'), meta: Buffer.from('meta') },
        key.privateKey,
      );
      const runner = new ScriptedRunner();
      const driverOptions = { images: { servers: { lxc: server.url }, keys: [stranger.publicKey] } };
      await expect(
        new PodmanDriver({ runner, cacheDir: join(work, 'cache') }).open(
          { image: 'index:busybox/1.36/amd64', driverOptions },
          { stateDir, closeOnSignal: false },
        ),
      ).rejects.toMatchObject({ code: 'IMAGE_VERIFY_FAILED' });
      expect(server.http.hits.get('/meta/1.0/index-system')).toBe(1);
      expect(runner.ran).toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it("gc sweeps dead owners' temporaries out of the image cache", async () => {
    const cacheDir = join(work, 'cache');
    // pid 999999999 is above any pid_max: its owner is dead.
    const partial = join(cacheDir, 'images', 'tmp', '999999999-1-0123456789ab');
    await mkdir(join(partial, '..'), { recursive: true });
    await writeFile(partial, 'half a download');
    const runner = new ScriptedRunner((argv) => (argv.includes('json') ? { stdout: '[]' } : undefined));
    const report = await new PodmanDriver({ runner, cacheDir }).gc({ stateDir });
    expect(report).toEqual({ removed: [], errors: [] });
    expect(await stat(partial).catch(() => undefined)).toBeUndefined();
  });
});
