import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRunner } from '@execenv/core';
import { FakeDriver } from '@execenv/core/testing';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache } from '../src/image-cache.js';
import { convertToPodmanInput } from '../src/podman-input.js';
import { prepareAndPublish } from '../src/prepare-publish.js';

const run = promisify(execFile);
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-podman-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function zstdTarball(names: string[]): Promise<string> {
  const p = pack();
  for (const name of names) p.entry({ name, mode: 0o644 }, `content of ${name}`);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  await writeFile(join(dir, 'rootfs.tar'), Buffer.concat(chunks));
  await run('zstd', ['-qf', join(dir, 'rootfs.tar')]);
  return join(dir, 'rootfs.tar.zst');
}

describe('convertToPodmanInput', () => {
  it('decompresses into a plain tarball podman can import', async () => {
    const cache = new ImageCache({ dir: join(dir, 'cache') });
    const entry = await convertToPodmanInput(await zstdTarball(['etc/os-release', 'bin/sh']), {
      cache,
      runner: hostRunner(),
    });
    expect((await run('tar', ['-tf', entry.path])).stdout).toBe('etc/os-release\nbin/sh\n');
  });

  it('keeps a tarball with unsafe entries out of the cache', async () => {
    const cache = new ImageCache({ dir: join(dir, 'cache') });
    await expect(
      convertToPodmanInput(await zstdTarball(['ok', '../escape']), { cache, runner: hostRunner() }),
    ).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
    expect(await cache.list()).toEqual([]);
  });
});

describe('prepareAndPublish', () => {
  async function publishable(published: string[]) {
    const env = await new FakeDriver({
      capabilities: ['isolation-container', 'root', 'publish'],
      commands: { setup: ({ argv }) => ({ exitCode: argv[1] === 'fail' ? 2 : 0 }) },
    }).open({});
    return Object.assign(env, {
      publish: async (alias: string) => {
        published.push(alias);
        return `fake:${alias}`;
      },
    });
  }

  it('runs the steps in order, then publishes', async () => {
    const published: string[] = [];
    const env = await publishable(published);
    const ref = await prepareAndPublish(
      env,
      [
        { run: ['setup', 'a'] },
        { push: new TextEncoder().encode('x'), to: '/etc/flag', mode: 0o600 },
        { run: ['setup', 'b'] },
      ],
      'builder',
    );
    expect(ref).toBe('fake:builder');
    expect(env.calls.map((c) => c.argv.join(' '))).toEqual(['setup a', 'setup b']);
    expect(env.files.stat('/etc/flag')).toMatchObject({ mode: 0o600 });
    expect(published).toEqual(['builder']);
  });

  it('publishes nothing when a step fails', async () => {
    const published: string[] = [];
    const env = await publishable(published);
    await expect(prepareAndPublish(env, [{ run: ['setup', 'fail'] }], 'builder')).rejects.toMatchObject({
      code: 'EXEC_FAILED',
    });
    expect(published).toEqual([]);
  });

  it('refuses an environment that cannot publish before running anything', async () => {
    const env = await new FakeDriver().open({});
    await expect(prepareAndPublish(env, [{ run: ['true'] }], 'x')).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    expect(env.calls).toEqual([]);
  });
});
