import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecenvEvent } from '@execenv/core';
import { ImageCache } from '@execenv/images';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodmanCli } from '../src/podman-cli.js';
import { ensureImage } from '../src/podman-images.js';
import { ScriptedRunner } from './scripted-runner.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-podman-images-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

function setup(respond: ConstructorParameters<typeof ScriptedRunner>[0]) {
  const runner = new ScriptedRunner(respond);
  return { runner, cli: new PodmanCli({ runner }), cache: new ImageCache({ dir: join(work, 'cache') }) };
}

const waitForSpawn = async (runner: ScriptedRunner) => {
  for (let i = 0; i < 400 && runner.spawned.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  return runner.spawned[0]!;
};

describe('ensureImage', () => {
  it('uses an OCI image podman already has without pulling', async () => {
    const { runner, cli, cache } = setup(() => undefined);
    const name = await ensureImage(
      { kind: 'oci', name: 'docker.io/library/debian:bookworm' },
      {
        cli,
        cache,
        runner,
        reference: 'oci:docker.io/library/debian:bookworm',
      },
    );
    expect(name).toBe('docker.io/library/debian:bookworm');
    expect(runner.argvs).toEqual([['podman', 'image', 'exists', 'docker.io/library/debian:bookworm']]);
  });

  it('pulls a missing OCI image, with events at its start and end', async () => {
    const { runner, cli, cache } = setup((argv) =>
      argv[2] === 'exists' ? { exitCode: 1 } : argv[2] === 'inspect' ? { stdout: '1234\n' } : undefined,
    );
    const events: ExecenvEvent[] = [];
    const pending = ensureImage(
      { kind: 'oci', name: 'busybox' },
      {
        cli,
        cache,
        runner,
        reference: 'oci:busybox',
        onEvent: (e) => events.push(e),
      },
    );
    const pull = await waitForSpawn(runner);
    expect(pull.argv).toEqual(['podman', 'pull', 'busybox']);
    pull.exit({ exitCode: 0, signal: null });
    expect(await pending).toBe('busybox');
    expect(events).toEqual([
      { type: 'image-download', reference: 'oci:busybox', bytes: 0 },
      { type: 'image-download', reference: 'oci:busybox', bytes: 1234, total: 1234 },
    ]);
  });

  it('refuses a missing OCI image with pull: never', async () => {
    const { runner, cli, cache } = setup(() => ({ exitCode: 1 }));
    await expect(
      ensureImage({ kind: 'oci', name: 'busybox' }, { cli, cache, runner, reference: 'oci:busybox', pull: 'never' }),
    ).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    expect(runner.spawned).toEqual([]);
  });

  it('imports a rootfs tarball once through stdin, named and labelled by its digest', async () => {
    const root = join(work, 'root');
    await mkdir(join(root, 'bin'), { recursive: true });
    await writeFile(join(root, 'bin', 'sh'), '#!/bin/true\n');
    const tarball = join(work, 'rootfs.tar');
    execFileSync('tar', ['--numeric-owner', '-C', root, '-cf', tarball, '.']);
    let imported = false;
    const { runner, cli, cache } = setup((argv) => (argv[2] === 'exists' && !imported ? { exitCode: 1 } : undefined));
    const pending = ensureImage(
      { kind: 'rootfs-tarball', path: tarball, format: 'tar' },
      {
        cli,
        cache,
        runner,
        reference: tarball,
      },
    );
    const importer = await waitForSpawn(runner);
    const received: Buffer[] = [];
    importer.stdin.on('data', (c: Buffer) => received.push(c));
    // The readable side ends once everything written was read here.
    await new Promise((r) => importer.stdin.on('end', r));
    imported = true;
    importer.exit({ exitCode: 0, signal: null });
    const name = await pending;
    const digest = /^localhost\/execenv-rootfs:([a-f0-9]{64})$/.exec(name)?.[1];
    expect(digest).toBeDefined();
    expect(importer.argv).toEqual([
      'podman',
      'import',
      '--change',
      `LABEL execenv.rootfs=${digest}`,
      '--message',
      `execenv: ${tarball}`,
      '-',
      name,
    ]);
    expect(Buffer.concat(received).length).toBeGreaterThan(1024);
    // A second open finds the import.
    expect(
      await ensureImage(
        { kind: 'rootfs-tarball', path: tarball, format: 'tar' },
        { cli, cache, runner, reference: tarball },
      ),
    ).toBe(name);
    expect(runner.spawned).toHaveLength(1);
  });

  it('refuses images podman cannot take, before running anything', async () => {
    const { runner, cli, cache } = setup(() => undefined);
    await expect(
      ensureImage({ kind: 'directory', path: '/srv/root' }, { cli, cache, runner, reference: '/srv/root' }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC' });
    expect(runner.ran).toEqual([]);
  });
});
