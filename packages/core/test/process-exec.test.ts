import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { superviseExec, superviseSpawn } from '../src/process-exec.js';
import { createRunner, HostCommandError } from '../src/runner.js';

const runner = createRunner();
const ctx = { envId: 'execenv-test', driver: 'host' };

function run(argv: string[], opts: Parameters<typeof superviseExec>[2] = {}) {
  const proc = runner.spawn(argv, { env: { PATH: '/usr/bin:/bin' } });
  return superviseExec(proc, argv, opts, { killTree: () => void proc.kill('SIGKILL'), context: ctx });
}

describe('superviseExec on host processes', () => {
  it('keeps stdout and stderr apart and exact', async () => {
    const r = await run(['sh', '-c', 'printf out; printf err >&2; exit 3']);
    expect(r).toMatchObject({ exitCode: 3, signal: null, stdout: 'out', stderr: 'err', timedOut: false });
  });

  it('feeds string, bytes and stream stdin', async () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect((await run(['cat'], { stdin: 'text' })).stdout).toBe('text');
    expect(Buffer.from((await run(['cat'], { stdin: all })).stdoutBytes).equals(Buffer.from(all))).toBe(true);
    expect((await run(['cat'], { stdin: Readable.from(['a', 'b', 'c']) })).stdout).toBe('abc');
    expect((await run(['cat'])).stdout).toBe('');
  });

  it('reports death by signal', async () => {
    expect(await run(['sh', '-c', 'kill -TERM $$'])).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
  });

  it('times out into a result, or a TIMEOUT error with check', async () => {
    const r = await run(['sleep', '10'], { timeout: 100 });
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
    await expect(run(['sleep', '10'], { timeout: 100, check: true })).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('rejects with ABORTED when aborted', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(run(['sleep', '10'], { signal: ac.signal })).rejects.toMatchObject({
      code: 'ABORTED',
      envId: 'execenv-test',
    });
  });

  it('names the operation it was given when already aborted, and exec otherwise', async () => {
    const { throwIfAborted } = await import('../src/process-exec.js');
    const signal = AbortSignal.abort();
    expect(() => throwIfAborted(signal, ['open'], { driver: 'foo', op: 'open' })).toThrow(
      expect.objectContaining({ code: 'ABORTED', op: 'open', driver: 'foo' }),
    );
    expect(() => throwIfAborted(signal, ['true'], { envId: 'e' })).toThrow(expect.objectContaining({ op: 'exec' }));
    expect(() => throwIfAborted(new AbortController().signal, ['true'], {})).not.toThrow();
  });

  it('kills and rejects past maxBuffer', async () => {
    await expect(run(['head', '-c', '100000', '/dev/zero'], { maxBuffer: 1000 })).rejects.toMatchObject({
      code: 'EXEC_FAILED',
      message: expect.stringContaining('maxBuffer'),
    });
  });

  it('streams to callbacks and can skip buffering', async () => {
    let seen = 0;
    const r = await run(['head', '-c', '300000', '/dev/zero'], { buffer: false, onStdout: (c) => (seen += c.length) });
    expect(seen).toBe(300000);
    expect(r.stdoutBytes.length).toBe(0);
  });

  it('throws ExecError carrying the result with check', async () => {
    const err = await run(['sh', '-c', 'echo bad >&2; exit 4'], { check: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EXEC_FAILED', result: { exitCode: 4, stderr: 'bad\n' } });
  });

  it('turns a missing host binary into a TRANSPORT error', async () => {
    await expect(run(['/nonexistent/binary'])).rejects.toMatchObject({ code: 'TRANSPORT' });
  });
});

describe('superviseSpawn', () => {
  it('hands out streams and a result', async () => {
    const argv = ['sh', '-c', 'cat; echo done >&2'];
    const proc = runner.spawn(argv, { env: { PATH: '/usr/bin:/bin' } });
    const p = superviseSpawn(proc, argv, {}, { killTree: () => void proc.kill('SIGKILL'), context: ctx });
    const chunks: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stdin?.end('hello');
    const r = await p.result;
    expect(Buffer.concat(chunks).toString()).toBe('hello');
    expect(r.exitCode).toBe(0);
  });
});

describe('createRunner', () => {
  it('throws HostCommandError naming argv and stderr on failure', async () => {
    const err = await runner.run(['sh', '-c', 'echo nope >&2; exit 2']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostCommandError);
    expect((err as Error).message).toContain('exit status 2');
    expect((err as Error).message).toContain('nope');
  });

  it('keeps output that arrives before the caller reads it', async () => {
    const p = runner.spawn(['head', '-c', '300000', '/dev/zero'], { env: { PATH: '/usr/bin:/bin' }, stdin: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    let n = 0;
    for await (const c of p.stdout!) n += (c as Buffer).length;
    expect(n).toBe(300000);
  });

  it('prefixes argv for sudo', async () => {
    const echo = createRunner({ sudo: ['echo'] });
    expect((await echo.run(['hello', 'world'])).stdout).toBe('hello world\n');
  });

  it('never leaks the host environment when env is given', async () => {
    process.env.EXECENV_LEAK_TEST = 'leaked';
    try {
      const r = await runner.run(['env'], { env: { PATH: '/usr/bin:/bin' } });
      expect(r.stdout).not.toContain('EXECENV_LEAK_TEST');
    } finally {
      delete process.env.EXECENV_LEAK_TEST;
    }
  });
});
