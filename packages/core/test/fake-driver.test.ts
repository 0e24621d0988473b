import { describe, expect, it } from 'vitest';
import { isRevertable, publish, reboot, restore, revert, snapshot } from '../src/capabilities.js';
import { FakeDriver } from '../src/testing/index.js';

describe('FakeDriver', () => {
  it('runs scripted commands and records calls', async () => {
    const driver = new FakeDriver({
      commands: { make: ({ env, cwd }) => ({ stdout: `built in ${cwd} with ${env.CC}` }) },
    });
    await using env = await driver.open({ env: { CC: 'gcc' } });
    const r = await env.exec(['make'], { cwd: '/src' });
    expect(r.stdout).toBe('built in /src with gcc');
    expect((await env.exec(['missing'])).exitCode).toBe(127);
    expect(env.calls.map((c) => c.argv[0])).toEqual(['make', 'missing']);
  });

  it('keeps files in memory', async () => {
    const driver = new FakeDriver({ files: { '/etc/os-release': 'ID=fake\n' } });
    const env = await driver.open({});
    await env.push(new TextEncoder().encode('data'), '/tmp/x', { mode: 0o600 });
    expect((await env.exec(['cat', '/tmp/x'])).stdout).toBe('data');
    expect(await env.stat('/tmp/x')).toMatchObject({ type: 'file', mode: 0o600, size: 4 });
    expect(await env.readDir('/')).toEqual(['etc', 'tmp']);
    expect(await env.stat('/nope')).toBeNull();
    await expect(env.readDir('/nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await env.close();
  });

  it('moves trees through tar like real drivers, refusing unsafe archives whole', async () => {
    const { mkdtemp, readFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { pack } = await import('tar-stream');
    const env = await new FakeDriver().open({});
    env.files.writeFile('/src/a/file', new TextEncoder().encode('content'), { mode: 0o600 });
    env.files.symlink('../a/file', '/src/b/link');
    await env.pushArchive(env.pullArchive('/src'), '/copy');
    expect(env.files.stat('/copy/a/file')).toMatchObject({ type: 'file', mode: 0o600, size: 7 });
    expect(env.files.stat('/copy/b/link')).toMatchObject({ type: 'symlink', linkTarget: '../a/file' });
    const host = await mkdtemp(join(tmpdir(), 'execenv-fake-'));
    try {
      await env.pull('/copy', join(host, 'out'));
      expect(await readFile(join(host, 'out/a/file'), 'utf8')).toBe('content');
      await expect(env.pull('/missing', join(host, 'x'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await rm(host, { recursive: true, force: true });
    }
    const evil = pack();
    evil.entry({ name: 'fine' }, 'x');
    evil.entry({ name: '../escape' }, 'x');
    evil.finalize();
    await expect(env.pushArchive(evil as never, '/dest')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(env.files.stat('/dest/fine')).toBeNull();
    await env.close();
  });

  it('forgets closed environments and refuses use after close', async () => {
    const driver = new FakeDriver();
    const env = await driver.open({});
    expect((await driver.list()).map((e) => e.id)).toEqual([env.id]);
    await env.close();
    await env.close();
    expect(await driver.list()).toEqual([]);
    await expect(env.exec(['true'])).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('declares no revert, so revert() rejects with UNSUPPORTED (a promise, never a throw)', async () => {
    const env = await new FakeDriver().open({});
    expect(isRevertable(env)).toBe(false);
    const calls = [revert(env), reboot(env), snapshot(env, 's'), restore(env, 's'), publish(env, 'a')];
    for (const call of calls) await expect(call).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    await env.close();
  });

  it.each([
    [{ env: { 'NOT A NAME': 'x' } }, 'env.NOT A NAME'],
    [{ env: { A: 'x\0y' } }, 'env.A'],
    [{ cwd: 'relative' }, 'cwd'],
    [{ cwd: '/tmp\0/etc' }, 'cwd'],
    [{ user: '' }, 'user'],
    [{ user: 'root\0' }, 'user'],
  ])('refuses exec and spawn options %j, naming the field, before running anything', async (opts, field) => {
    const env = await new FakeDriver().open({});
    await expect(env.exec(['true'], opts)).rejects.toMatchObject({ code: 'INVALID_SPEC', field });
    expect(() => env.spawn(['true'], opts)).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field }));
    expect(env.calls).toEqual([]);
    await env.close();
  });

  it('validates the spec', async () => {
    await expect(new FakeDriver().open({ arch: 'vax' as never })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'arch',
    });
  });
});
