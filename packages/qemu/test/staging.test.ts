import { execFileSync } from 'node:child_process';
import { appendFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { HostCommandError, UnsafePathError } from '@execenv/core';
import { FakeRunner } from '@execenv/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { PullStaging, PushStaging } from '../src/staging.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-staging-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

let n = 0;
/** A fresh staging directory whose next file name is `name`. */
async function staging(name: string) {
  const dir = join(scratch, `stage-${n++}`);
  return PushStaging.create(dir, '/dev/.execenv-stage', { names: () => name, context: { envId: 'execenv-test' } });
}

describe('PushStaging', () => {
  it('writes a stream into a new private file the guest names under its staging directory', async () => {
    const stage = await staging('push-1.tar');
    expect((await stat(stage.hostDir)).mode & 0o777).toBe(0o700);
    const archive = await stage.write(Readable.from([Buffer.from('first '), Buffer.from('second')]));
    expect(archive.hostPath).toBe(join(stage.hostDir, 'push-1.tar'));
    expect(archive.guestPath).toBe('/dev/.execenv-stage/push-1.tar');
    expect(await readFile(archive.hostPath, 'utf8')).toBe('first second');
    const st = await lstat(archive.hostPath);
    expect(st.isFile() && (st.mode & 0o777) === 0o600).toBe(true);
    await archive.remove();
    await archive.remove(); // already gone: no error
    expect(await readdir(stage.hostDir)).toEqual([]);
  });

  it('refuses a symlink at the new file name and never writes through it', async () => {
    const stage = await staging('push-2.tar');
    const victim = join(scratch, 'victim');
    await writeFile(victim, 'untouched');
    await symlink(victim, join(stage.hostDir, 'push-2.tar'));
    const source = Readable.from([Buffer.from('evil')]);
    const err = await stage.write(source).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect(err).toMatchObject({ code: 'UNSAFE_PATH', envId: 'execenv-test' });
    expect(await readFile(victim, 'utf8')).toBe('untouched');
    expect(source.destroyed).toBe(true);
  });

  it('refuses a fifo or a directory at the new file name', async () => {
    const fifo = await staging('push-3.tar');
    execFileSync('mkfifo', [join(fifo.hostDir, 'push-3.tar')]);
    await expect(fifo.write(Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(UnsafePathError);
    const dir = await staging('push-4.tar');
    await mkdir(join(dir.hostDir, 'push-4.tar'));
    await expect(dir.write(Readable.from([Buffer.from('x')]))).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('refuses a staging directory that is a symlink or a file', async () => {
    const elsewhere = await mkdtemp(join(scratch, 'elsewhere-'));
    await symlink(elsewhere, join(scratch, 'linked-stage'));
    await expect(PushStaging.create(join(scratch, 'linked-stage'), '/dev/.execenv-stage')).rejects.toBeInstanceOf(
      UnsafePathError,
    );
    await writeFile(join(scratch, 'file-stage'), '');
    await expect(PushStaging.create(join(scratch, 'file-stage'), '/dev/.execenv-stage')).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
  });

  it('refuses a name that is not a plain file name', async () => {
    for (const name of ['../escape.tar', 'a/b.tar', '.hidden', '']) {
      const stage = await staging(name);
      await expect(stage.write(Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(UnsafePathError);
      expect(await readdir(stage.hostDir)).toEqual([]);
    }
  });

  it('removes a partial file when the source stream fails, and passes its error on', async () => {
    const stage = await staging('push-5.tar');
    const boom = new Error('the source failed');
    const source = new Readable({
      read() {
        this.push(Buffer.alloc(1000));
        this.destroy(boom);
      },
    });
    await expect(stage.write(source)).rejects.toBe(boom);
    expect(await readdir(stage.hostDir)).toEqual([]);
  });
});

describe('PushStaging.pack', () => {
  it('has GNU tar write the archive straight into a new private file', async () => {
    const stage = await staging('push-6.tar');
    const runner = new FakeRunner();
    const archive = await stage.pack(runner, '/srv/src tree');
    expect(runner.ran.map((r) => r.argv)).toEqual([
      ['tar', '--numeric-owner', '-C', '/srv/src tree', '-cf', join(stage.hostDir, 'push-6.tar'), '.'],
    ]);
    expect(runner.ran[0]?.opts?.env?.PATH).toBeDefined();
    expect((await lstat(archive.hostPath)).mode & 0o777).toBe(0o600);
    expect(archive.guestPath).toBe('/dev/.execenv-stage/push-6.tar');
    await archive.remove();
  });

  it('removes the file when tar fails', async () => {
    const stage = await staging('push-7.tar');
    const failure = new HostCommandError({ argv: ['tar'], exitCode: 2, signal: null, stdout: '', stderr: 'boom' });
    const runner = new FakeRunner();
    runner.run = async () => {
      throw failure;
    };
    await expect(stage.pack(runner, '/srv/src')).rejects.toBe(failure);
    expect(await readdir(stage.hostDir)).toEqual([]);
  });
});

/** A fresh pull directory whose next file name is `name`. */
async function pulls(name: string) {
  const dir = join(scratch, `pull-${n++}`);
  return PullStaging.create(dir, '/proc/1/fd/3', { names: () => name, context: { envId: 'execenv-test' } });
}

async function drain(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('PullStaging', () => {
  it('streams the file the guest wrote at the name it was given, and removes it', async () => {
    const stage = await pulls('pull-1.tar');
    let asked = '';
    const content = await drain(
      stage.archive(async (guestPath) => {
        asked = guestPath;
        await writeFile(join(stage.hostDir, 'pull-1.tar'), 'archive bytes');
      }),
    );
    expect(asked).toBe('/proc/1/fd/3/pull-1.tar');
    expect(content).toBe('archive bytes');
    expect(await readdir(stage.hostDir)).toEqual([]);
  });

  it('refuses a symlink the guest left at the name, without reading through it', async () => {
    const stage = await pulls('pull-2.tar');
    const secret = join(scratch, 'host-secret');
    await writeFile(secret, 'host secret');
    const out = stage.archive(() => symlink(secret, join(stage.hostDir, 'pull-2.tar')));
    const err = await drain(out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect(err).toMatchObject({ code: 'UNSAFE_PATH', envId: 'execenv-test' });
    expect(await readdir(stage.hostDir)).toEqual([]);
    expect(await readFile(secret, 'utf8')).toBe('host secret');
  });

  it('refuses a fifo or a directory the guest left at the name, without blocking', async () => {
    const fifo = await pulls('pull-3.tar');
    const fromFifo = fifo.archive(async () => execFileSync('mkfifo', [join(fifo.hostDir, 'pull-3.tar')]));
    await expect(drain(fromFifo)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await readdir(fifo.hostDir)).toEqual([]);
    const dir = await pulls('pull-4.tar');
    await expect(drain(dir.archive(() => mkdir(join(dir.hostDir, 'pull-4.tar'))))).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
  });

  it('hands on what the guest has written while it is still writing', async () => {
    const stage = await pulls('pull-6.tar');
    let finishWriting!: () => void;
    const out = stage.archive(async () => {
      await writeFile(join(stage.hostDir, 'pull-6.tar'), 'first part;');
      await new Promise<void>((resolve) => (finishWriting = resolve));
      await appendFile(join(stage.hostDir, 'pull-6.tar'), 'second part');
    });
    const reading = out[Symbol.asyncIterator]();
    const first = await reading.next();
    expect(String(first.value)).toBe('first part;');
    finishWriting();
    let rest = '';
    for (let next = await reading.next(); !next.done; next = await reading.next()) rest += String(next.value);
    expect(rest).toBe('second part');
    expect(await readdir(stage.hostDir)).toEqual([]);
  });

  it('stops reading and removes the archive when its reader goes away mid-way', async () => {
    const stage = await pulls('pull-7.tar');
    const out = stage.archive(async () => {
      // More than the stream buffers: the host waits for its reader to take more.
      await writeFile(join(stage.hostDir, 'pull-7.tar'), Buffer.alloc(8 << 20, 1));
    });
    await new Promise((resolve) => out.once('readable', resolve));
    out.destroy();
    let left = await readdir(stage.hostDir);
    for (let i = 0; i < 100 && left.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      left = await readdir(stage.hostDir);
    }
    expect(left).toEqual([]);
  });

  it('passes on what the agent failed with and removes what it left', async () => {
    const stage = await pulls('pull-5.tar');
    const agentFailure = Object.assign(new Error('no such file'), { name: 'AgentError', code: 'NOT_FOUND' });
    const out = stage.archive(async () => {
      await writeFile(join(stage.hostDir, 'pull-5.tar'), 'partial');
      throw agentFailure;
    });
    await expect(drain(out)).rejects.toBe(agentFailure);
    expect(await readdir(stage.hostDir)).toEqual([]);
  });

  it('refuses a pull directory that is a symlink', async () => {
    const elsewhere = await mkdtemp(join(scratch, 'elsewhere-'));
    await symlink(elsewhere, join(scratch, 'linked-pull'));
    await expect(PullStaging.create(join(scratch, 'linked-pull'), '/proc/1/fd/3')).rejects.toBeInstanceOf(
      UnsafePathError,
    );
  });
});
