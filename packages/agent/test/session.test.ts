import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentError, AgentTransportError } from '../src/agent-errors.js';
import { AgentSession } from '../src/agent-session.js';
import type { AgentExecRequest, AgentProcess } from '../src/agent-types.js';
import { encodeFields, encodeFrame, FrameType, INITIAL_WINDOW } from '../src/frames.js';
import { FakeAgent } from './fake-agent.js';

const sessions: AgentSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
});

async function open(agent = new FakeAgent()) {
  const session = await AgentSession.over(agent.toClient, agent.fromClient);
  sessions.push(session);
  return { agent, session };
}

function request(...argv: string[]): AgentExecRequest {
  return { cwd: '/', uid: 0, gid: 0, groups: [], env: { PATH: '/bin' }, argv };
}

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

async function run(proc: AgentProcess) {
  proc.stdin.end();
  const [stdout, stderr, exit] = await Promise.all([text(proc.stdout), text(proc.stderr), proc.exited]);
  return { stdout, stderr, ...exit };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('AgentSession over a fake agent', () => {
  it('does the handshake and reports the agent', async () => {
    const { session, agent } = await open();
    expect(session.info).toEqual({
      version: 'fake',
      protocol: 1,
      arch: 'x86_64',
      pid: 1,
      tree: 'subreaper',
      fields: { arch: 'x86_64', pid: '1', tree: 'subreaper', version: 'fake' },
    });
    expect(agent.frames[0]!.payload.toString()).toBe('execenv-agent 1');
    expect(await session.ping(1000)).toBeGreaterThanOrEqual(0);
  });

  it('fails the handshake on ERROR and on silence', async () => {
    const silent = new FakeAgent();
    silent.fromClient.removeAllListeners('data');
    await expect(AgentSession.over(silent.toClient, silent.fromClient, { handshakeTimeoutMs: 100 })).rejects.toThrow(
      AgentTransportError,
    );
    const refusing = new FakeAgent();
    refusing.fromClient.removeAllListeners('data');
    refusing.fromClient.once('data', () => refusing.send(FrameType.ERROR, 0, Buffer.from('speaks 2 only')));
    await expect(AgentSession.over(refusing.toClient, refusing.fromClient)).rejects.toThrow(/speaks 2 only/);
  });

  it('runs commands with their output, exit status and argv', async () => {
    const { session, agent } = await open();
    expect(await run(session.exec(request('echo', 'a', 'b')))).toEqual({
      stdout: 'a b\n',
      stderr: '',
      exitCode: 0,
      signal: null,
    });
    expect((await run(session.exec(request('exit', '3')))).exitCode).toBe(3);
    expect(await run(session.exec(request('nope')))).toMatchObject({ exitCode: 127, stderr: /cannot execute nope/ });
    const openFrame = agent.frames.find((f) => f.type === FrameType.OPEN)!;
    expect(openFrame.payload.toString().split('\0')).toEqual([
      'exec',
      '/',
      '0',
      '0',
      '',
      '1',
      'PATH=/bin',
      'echo',
      'a',
      'b',
      '',
    ]);
  });

  it('rejects exited with AgentError NOT_FOUND for a missing cwd', async () => {
    const { session } = await open();
    const proc = session.exec({ ...request('echo'), cwd: '/missing' });
    const err = await proc.exited.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ name: 'AgentError', code: 'NOT_FOUND', op: 'exec', path: '/missing' });
  });

  it('kills with KILL, signals with SIGNAL, and says false once ended', async () => {
    const { session, agent } = await open();
    const killed = session.exec(request('sleep'));
    expect(killed.pid).toBeUndefined();
    expect(killed.kill()).toBe(true);
    expect(await killed.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(killed.kill()).toBe(false);
    const termed = session.exec(request('sleep'));
    termed.kill('SIGTERM');
    expect(await termed.exited).toEqual({ exitCode: null, signal: 'SIGTERM' });
    const kinds = agent.frames.filter((f) => f.type === FrameType.KILL || f.type === FrameType.SIGNAL);
    expect(kinds.map((f) => [f.type, [...f.payload]])).toEqual([
      [FrameType.KILL, []],
      [FrameType.SIGNAL, [15]],
    ]);
  });

  it('lets a slow reader stall neither other channels nor memory', async () => {
    const { session } = await open();
    const total = 8 * 1024 * 1024;
    const slow = session.exec(request('produce', String(total)));
    slow.stdin.end();
    await sleep(100);
    // Nobody reads: the agent stops at the window.
    expect(slow.stdout.readableLength).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect(slow.stdout.readableLength).toBeGreaterThan(0);
    // Another channel of the same session is unaffected.
    expect((await run(session.exec(request('echo', 'other')))).stdout).toBe('other\n');
    let peak = 0;
    let received = 0;
    for await (const chunk of slow.stdout) {
      received += (chunk as Buffer).length;
      peak = Math.max(peak, slow.stdout.readableLength);
      if (received % 7 === 0) await sleep(0);
    }
    expect(received).toBe(total);
    expect(peak).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect(await slow.exited).toEqual({ exitCode: 0, signal: null });
  });

  it('sends stdin larger than the window intact, never beyond the window', async () => {
    const { session, agent } = await open();
    const input = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < input.length; i++) input[i] = (i * 31 + (i >> 9)) & 0xff;
    const proc = session.exec(request('cat'));
    Readable.from([input.subarray(0, 1000), input.subarray(1000)]).pipe(proc.stdin);
    const chunks: Buffer[] = [];
    proc.stdout.on('data', (c: Buffer) => chunks.push(c));
    await proc.exited;
    await new Promise((resolve) => setImmediate(resolve));
    const output = Buffer.concat(chunks);
    expect(createHash('sha256').update(output).digest('hex')).toBe(createHash('sha256').update(input).digest('hex'));
    expect(agent.violations).toEqual([]);

    const counted = session.exec(request('count'));
    counted.stdin.end(Buffer.alloc(2 * INITIAL_WINDOW + 5));
    expect((await run(counted)).stdout).toBe(String(2 * INITIAL_WINDOW + 5));
    expect(agent.violations).toEqual([]);
    expect(agent.maxInputData).toBeLessThanOrEqual(INITIAL_WINDOW);
  });

  it('runs 100 commands at once on one session', async () => {
    const { session } = await open();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => run(session.exec(request('echo', `${i}`)))),
    );
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 100 }, (_, i) => `${i}\n`));
  });

  it('fails every pending operation promptly when the agent dies', async () => {
    const { session, agent } = await open();
    const proc = session.exec(request('sleep'));
    agent.answerPings = false;
    const ping = session.ping(10_000);
    await sleep(20);
    const started = Date.now();
    agent.die();
    await expect(proc.exited).rejects.toBeInstanceOf(AgentTransportError);
    await expect(ping).rejects.toBeInstanceOf(AgentTransportError);
    expect(Date.now() - started).toBeLessThan(1000);
    await session.closed;
    // Nothing started afterwards hangs either.
    await expect(session.exec(request('echo')).exited).rejects.toBeInstanceOf(AgentTransportError);
    await expect(session.mkdir('/x', 0o755)).rejects.toBeInstanceOf(AgentTransportError);
    await expect(session.ping()).rejects.toBeInstanceOf(AgentTransportError);
    expect(proc.kill()).toBe(false);
  });

  it('fails everything when the agent sends ERROR', async () => {
    const { session, agent } = await open();
    const proc = session.exec(request('sleep'));
    agent.send(FrameType.ERROR, 0, Buffer.from('bad frame'));
    await expect(proc.exited).rejects.toThrow(/bad frame/);
    await session.closed;
  });

  it('treats DATA beyond the window as a protocol error', async () => {
    const { session, agent } = await open();
    const proc = session.exec(request('sleep'));
    await sleep(10);
    const id = agent.frames.find((f) => f.type === FrameType.OPEN)!.channel;
    agent.send(FrameType.DATA, id, Uint8Array.of(1), Buffer.alloc(INITIAL_WINDOW + 1));
    await expect(proc.exited).rejects.toThrow(/beyond the window/);
  });

  it('treats a frame for a channel that is not open as a protocol error', async () => {
    const { session, agent } = await open();
    const proc = session.exec(request('sleep'));
    agent.send(FrameType.END, 999, encodeFields(['exit', '0']));
    await expect(proc.exited).rejects.toThrow(/not open/);
    await expect(session.closed).resolves.toBeUndefined();
  });

  it('close() fails pending operations and the session closes', async () => {
    const { session } = await open();
    const proc = session.exec(request('sleep'));
    session.close();
    await expect(proc.exited).rejects.toThrow(/closed/);
    await session.closed;
  });

  it('shutdown() ends the session', async () => {
    const { session } = await open();
    const proc = session.exec(request('sleep'));
    await session.shutdown();
    await expect(proc.exited).resolves.toEqual({ exitCode: null, signal: 'SIGKILL' });
  });

  it('does not confuse a frame split across reads', async () => {
    const agent = new FakeAgent();
    const { session } = await open(agent);
    const proc = session.exec(request('sleep'));
    await sleep(10);
    const id = agent.frames.find((f) => f.type === FrameType.OPEN)!.channel;
    const frames = Buffer.concat([
      encodeFrame(FrameType.DATA, id, Uint8Array.of(1), Buffer.from('split')),
      encodeFrame(FrameType.EOF, id, Uint8Array.of(1)),
      encodeFrame(FrameType.EOF, id, Uint8Array.of(2)),
      encodeFrame(FrameType.END, id, encodeFields(['exit', '5'])),
    ]);
    for (const byte of frames) agent.toClient.write(Uint8Array.of(byte));
    const [out, exit] = await Promise.all([text(proc.stdout), proc.exited]);
    expect(out).toBe('split');
    expect(exit.exitCode).toBe(5);
  });
});
