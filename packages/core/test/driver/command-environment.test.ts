import { describe, expect, it } from 'vitest';
import type { ExecOptions } from '../../src/contract.js';
import { CommandEnvironment } from '../../src/driver/command-environment.js';
import type { RunningProcess } from '../../src/runner.js';
import { FakeAgentSession } from '../../src/testing/index.js';

/** A driver whose only command source is a fake agent, started after an optional delay. */
class TestEnvironment extends CommandEnvironment {
  readonly session: FakeAgentSession;
  destroyed = 0;
  treeKills = 0;
  startDelay: Promise<void> | undefined;

  constructor(session = new FakeAgentSession()) {
    super({ id: 'execenv-test00000000', driver: 'test', capabilities: ['root'], closeOnSignal: false });
    this.session = session;
  }

  protected override async startCommand(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
    await this.startDelay;
    return this.session.exec({ cwd: opts.cwd ?? '/', uid: 0, gid: 0, groups: [], env: { ...opts.env }, argv });
  }

  protected override killTree(proc: RunningProcess): void {
    this.treeKills++;
    proc.kill('SIGKILL');
  }

  protected override async doPush(): Promise<void> {}
  protected override async doPull(): Promise<void> {}
  protected override async doPushArchive(): Promise<void> {}
  protected override doPullArchive(): never {
    throw new Error('unused');
  }
  protected override async doStat() {
    return null;
  }
  protected override async doReadDir(): Promise<string[]> {
    return [];
  }
  protected override async destroy(): Promise<void> {
    this.destroyed++;
  }
}

describe('CommandEnvironment', () => {
  it('builds exec from startCommand: output, stdin, env, exit codes', async () => {
    const env = new TestEnvironment();
    const r = await env.exec(['echo', 'hi'], { env: { A: '1' } });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'hi\n', timedOut: false });
    expect(env.session.execs[0]?.env).toEqual({ A: '1' });
    expect((await env.exec(['cat'], { stdin: 'in' })).stdout).toBe('in');
    expect((await env.exec(['false'])).exitCode).toBe(1);
    await expect(env.exec(['false'], { check: true })).rejects.toMatchObject({ code: 'EXEC_FAILED' });
  });

  it('spawn returns streams at once and feeds stdin', async () => {
    const env = new TestEnvironment();
    env.startDelay = new Promise((r) => setTimeout(r, 20));
    const p = env.spawn(['cat']);
    const chunks: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stdin?.end('via spawn');
    const r = await p.result;
    expect(r.exitCode).toBe(0);
    expect(Buffer.concat(chunks).toString()).toBe('via spawn');
  });

  it('spawn kill before the command started kills it once it starts', async () => {
    const env = new TestEnvironment();
    env.startDelay = new Promise((r) => setTimeout(r, 20));
    const p = env.spawn(['sleep']);
    p.kill();
    expect((await p.result).signal).toBe('SIGKILL');
    expect(env.treeKills).toBe(1);
  });

  it('timeout kills the tree and says timedOut', async () => {
    const env = new TestEnvironment();
    const r = await env.exec(['sleep'], { timeout: 30 });
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL', exitCode: null });
    expect(env.treeKills).toBe(1);
  });

  it('abort kills the tree and rejects with AbortedError', async () => {
    const env = new TestEnvironment();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    await expect(env.exec(['sleep'], { signal: ac.signal })).rejects.toMatchObject({
      code: 'ABORTED',
      envId: env.id,
      driver: 'test',
      op: 'exec',
    });
    expect(env.session.running.size).toBe(0);
  });

  it('maxBuffer kills the command and rejects with EXEC_FAILED', async () => {
    const env = new TestEnvironment(
      new FakeAgentSession({
        commands: {
          big: ({ stdout, signal }) =>
            new Promise((resolve) => {
              stdout.write(Buffer.alloc(100));
              signal.addEventListener('abort', () => resolve({}));
            }),
        },
      }),
    );
    await expect(env.exec(['big'], { maxBuffer: 10 })).rejects.toMatchObject({ code: 'EXEC_FAILED', op: 'exec' });
  });

  it('an exec racing close rejects with CLOSED, and close kills it before destroy', async () => {
    const env = new TestEnvironment();
    const running = env.exec(['sleep']);
    await new Promise((r) => setTimeout(r, 10));
    expect(env.session.running.size).toBe(1);
    const closing = env.close();
    expect(env.closed).toBe(true);
    await expect(running).rejects.toMatchObject({ code: 'CLOSED', envId: env.id, op: 'exec' });
    await closing;
    expect(env.session.running.size).toBe(0);
    expect(env.destroyed).toBe(1);
    await env.close();
    expect(env.destroyed).toBe(1);
    await expect(env.exec(['true'])).rejects.toMatchObject({ code: 'CLOSED' });
    expect(() => env.spawn(['true'])).toThrow(expect.objectContaining({ code: 'CLOSED' }));
  });

  it('a command whose start finishes after close began does not run on', async () => {
    const env = new TestEnvironment();
    let release!: () => void;
    env.startDelay = new Promise((r) => (release = r));
    const exec = env.exec(['sleep']);
    const closing = env.close();
    release();
    await expect(exec).rejects.toMatchObject({ code: 'CLOSED' });
    await closing;
    expect(env.session.running.size).toBe(0);
  });

  it('killRunning kills every running command and waits', async () => {
    const env = new TestEnvironment();
    const a = env.exec(['sleep']);
    const b = env.spawn(['sleep']);
    await new Promise((r) => setTimeout(r, 10));
    await (env as unknown as { killRunning(): Promise<void> }).killRunning();
    expect(env.session.running.size).toBe(0);
    expect((await a).signal).toBe('SIGKILL');
    expect((await b.result).signal).toBe('SIGKILL');
    await env.close();
  });
});
