import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { hostRunner, type ProcessRunner } from '@execenv/core';
import { FakeAgentSession } from '@execenv/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { type GuestAgent, GuestSession } from '../src/guest-session.js';
import { PullStaging, PushStaging } from '../src/staging.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-guest-session-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** A fake agent that records the bulk operations and what a staged archive held when the agent was asked to extract it. */
class RecordingAgent extends FakeAgentSession implements GuestAgent {
  readonly calls: unknown[][] = [];
  staged: { path: string; content: string } | undefined;
  failExtract: Error | undefined;

  override tarOut(path: string, opts?: { direct?: boolean }): Readable {
    this.calls.push(['tarOut', path, opts]);
    return Readable.from([]);
  }

  async tarOutFile(path: string, archive: string): Promise<{ entries: number; bytes: number }> {
    this.calls.push(['tarOutFile', path, archive]);
    await writeFile(join(pullDir, archive.slice('/proc/1/fd/3/'.length)), `archive of ${path}`);
    return { entries: 1, bytes: 0 };
  }

  async tarInFile(destDir: string, archive: string): Promise<{ entries: number; bytes: number }> {
    this.calls.push(['tarInFile', destDir, archive]);
    const hostPath = join(stagingDir, archive.slice('/dev/.execenv-stage/'.length));
    this.staged = { path: hostPath, content: await readFile(hostPath, 'utf8') };
    if (this.failExtract) throw this.failExtract;
    return { entries: 1, bytes: this.staged.content.length };
  }
}

const stagingDir = join(scratch, 'stage');
const pullDir = join(scratch, 'pull');
const staging = {
  push: await PushStaging.create(stagingDir, '/dev/.execenv-stage', { names: () => 'push-fixed.tar' }),
  pull: await PullStaging.create(pullDir, '/proc/1/fd/3', { names: () => 'pull-fixed.tar' }),
};

describe('GuestSession', () => {
  it('stages a pushed archive, has the agent extract it from the share, and removes it', async () => {
    const agent = new RecordingAgent();
    const session = new GuestSession(agent, staging);
    expect(await session.tarIn('/work', Readable.from([Buffer.from('tar bytes')]))).toEqual({ entries: 1, bytes: 9 });
    expect(agent.calls).toEqual([['tarInFile', '/work', '/dev/.execenv-stage/push-fixed.tar']]);
    expect(agent.staged).toEqual({ path: join(stagingDir, 'push-fixed.tar'), content: 'tar bytes' });
    await expect(stat(agent.staged!.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('packs a pushed host directory with the runner it was given straight into the share', async () => {
    const agent = new RecordingAgent();
    const asked: (readonly string[])[] = [];
    const runner = hostRunner();
    const recording: ProcessRunner = {
      ...runner,
      run: (argv, opts) => {
        asked.push(argv);
        return runner.run(argv, opts);
      },
    };
    const session = new GuestSession(agent, staging, recording);
    const tree = join(scratch, 'tree');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'hello.txt'), 'hello from the host\n');
    await session.pushDirectory(tree, '/work');
    expect(asked.map((argv) => argv[0])).toEqual(['tar']);
    expect(agent.calls).toEqual([['tarInFile', '/work', '/dev/.execenv-stage/push-fixed.tar']]);
    expect(agent.staged?.content).toContain('hello from the host');
    await expect(stat(agent.staged!.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('removes the staged archive when the agent refuses it, and passes the agent error on', async () => {
    const agent = new RecordingAgent();
    agent.failExtract = Object.assign(new Error('../x leaves the destination'), {
      name: 'AgentError',
      code: 'UNSAFE_PATH',
    });
    const session = new GuestSession(agent, staging);
    await expect(session.tarIn('/work', Readable.from([Buffer.from('evil')]))).rejects.toBe(agent.failExtract);
    await expect(stat(agent.staged!.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('has the agent write a pulled archive into the pull share and streams it from there', async () => {
    const agent = new RecordingAgent();
    const session = new GuestSession(agent, staging);
    const chunks: Buffer[] = [];
    for await (const c of session.tarOut('/root/tree')) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('archive of /root/tree');
    expect(agent.calls).toEqual([['tarOutFile', '/root/tree', '/proc/1/fd/3/pull-fixed.tar']]);
    expect(await readdir(pullDir)).toEqual([]);
  });

  it('passes every other operation to the agent', async () => {
    const agent = new RecordingAgent({ files: { '/etc/hostname': 'guest\n' } });
    const session = new GuestSession(agent, staging);
    await session.mkdir('/srv/a', 0o755);
    expect(await session.readDir('/etc')).toEqual(['hostname']);
    expect((await session.stat('/etc/hostname', true))?.type).toBe('file');
    await session.remove('/srv/a');
    expect(agent.ops).toEqual(['mkdir /srv/a', 'readDir /etc', 'stat /etc/hostname', 'remove /srv/a']);
    session.close();
    expect(agent.closed).toBe(true);
  });
});
