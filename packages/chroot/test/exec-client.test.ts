import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectExec } from '../src/exec-client.js';
import { FrameReader, frameHeader, STATUS, STDERR, STDOUT } from '../src/exec-protocol.js';

/** What the fake exec server read from one connection, frame by frame. */
interface Received {
  frames: { type: string; payload: Buffer }[];
  closed: Promise<void>;
  socket: Socket;
}

let dir: string;
let socketPath: string;
let server: Server;
let connections: Received[];

function frame(type: number, payload: string | Buffer): Buffer {
  const bytes = Buffer.from(payload);
  return Buffer.concat([frameHeader(type, bytes.length), bytes]);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'execenv-exec-client-'));
  socketPath = join(dir, 'exec.sock');
  connections = [];
  server = createServer((socket) => {
    const frames: Received['frames'] = [];
    let current: Buffer[] = [];
    const reader = new FrameReader(
      (_type, bytes) => current.push(Buffer.from(bytes)),
      (type) => {
        frames.push({ type: String.fromCharCode(type), payload: Buffer.concat(current) });
        current = [];
      },
    );
    socket.on('data', (c) => reader.feed(c));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    connections.push({ frames, closed, socket });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
});
afterEach(async () => {
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function connection(): Promise<Received> {
  for (let i = 0; i < 200 && connections.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const c = connections[0];
  if (!c) throw new Error('the client never connected');
  return c;
}

async function framesOf(c: Received, count: number) {
  for (let i = 0; i < 200 && c.frames.length < count; i++) await new Promise((r) => setTimeout(r, 5));
  return c.frames;
}

const request = {
  cwd: '/tmp',
  uid: 1000,
  gid: 1001,
  groups: [1001, 120],
  env: { PATH: '/bin', LANG: 'C' },
  argv: ['sh', '-c', 'echo "$LANG"'],
};

describe('connectExec', () => {
  it('sends the request as NUL-terminated fields: cwd, ids, groups, environment count and entries, argv', async () => {
    const proc = connectExec(socketPath, request);
    const [first] = await framesOf(await connection(), 1);
    expect(first?.type).toBe('R');
    expect(first?.payload.toString()).toBe(
      '/tmp\x001000\x001001\x001001,120\x002\x00PATH=/bin\x00LANG=C\x00sh\x00-c\x00echo "$LANG"\x00',
    );
    proc.kill();
    await proc.exited;
  });

  it('refuses a field with a NUL byte, which would shift the fields after it', async () => {
    expect(() => connectExec(socketPath, { ...request, env: { A: 'x\0/bin/sh' } })).toThrow('NUL');
    await new Promise((r) => setTimeout(r, 20));
    expect(connections).toEqual([]);
  });

  it('reassembles stdout, stderr and the exit however the frames are cut', async () => {
    const proc = connectExec(socketPath, request);
    const c = await connection();
    const wire = Buffer.concat([
      frame(STDOUT, 'hello '),
      frame(STDERR, 'warning'),
      frame(STDOUT, 'world'),
      frame(STATUS, 'exit 3'),
    ]);
    for (let i = 0; i < wire.length; i += 3) c.socket.write(wire.subarray(i, i + 3));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout?.on('data', (b) => out.push(b));
    proc.stderr?.on('data', (b) => err.push(b));
    expect(await proc.exited).toEqual({ exitCode: 3, signal: null });
    expect(Buffer.concat(out).toString()).toBe('hello world');
    expect(Buffer.concat(err).toString()).toBe('warning');
  });

  it('names the signal that ended the command', async () => {
    const proc = connectExec(socketPath, request);
    (await connection()).socket.write(frame(STATUS, 'signal 15'));
    expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGTERM' });
  });

  it("rejects with the server's message when the command could not start", async () => {
    const proc = connectExec(socketPath, request);
    (await connection()).socket.write(frame(STATUS, 'error unshare: Operation not permitted'));
    await expect(proc.exited).rejects.toThrow('unshare: Operation not permitted');
  });

  it('rejects when the connection ends without a status', async () => {
    const proc = connectExec(socketPath, request);
    (await connection()).socket.end(frame(STDOUT, 'partial'));
    await expect(proc.exited).rejects.toThrow(`exec server at ${socketPath} closed the connection`);
  });

  it('rejects naming the socket when no server listens', async () => {
    const proc = connectExec(join(dir, 'nobody.sock'), request);
    await expect(proc.exited).rejects.toThrow(/cannot reach the environment's exec server at .*nobody\.sock/);
  });

  it('sends stdin as frames and its end as an empty E frame', async () => {
    const proc = connectExec(socketPath, request);
    proc.stdin?.write('abc');
    proc.stdin?.end(Buffer.from([0, 255]));
    const frames = await framesOf(await connection(), 4);
    expect(frames.map((f) => [f.type, [...f.payload]])).toEqual([
      ['R', expect.any(Array)],
      ['I', [97, 98, 99]],
      ['I', [0, 255]],
      ['E', []],
    ]);
    proc.kill();
    await proc.exited;
  });

  it('kills by closing the connection and reports SIGKILL', async () => {
    const proc = connectExec(socketPath, request);
    const c = await connection();
    await framesOf(c, 1);
    expect(proc.kill()).toBe(true);
    await c.closed;
    expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(proc.kill()).toBe(false);
  });

  it('stops reading the connection while a reader lags, holding at most about a megabyte', async () => {
    const proc = connectExec(socketPath, request);
    const c = await connection();
    const chunk = Buffer.alloc(1 << 16, 7);
    let sent = 0;
    // Eight megabytes, written only as fast as the client takes them.
    const writeAll = async () => {
      for (let i = 0; i < 128; i++) {
        sent += chunk.length;
        if (!c.socket.write(frame(STDOUT, chunk))) await new Promise((r) => c.socket.once('drain', r));
      }
      c.socket.write(frame(STATUS, 'exit 0'));
    };
    const writing = writeAll();
    await new Promise((r) => setTimeout(r, 200));
    const held = proc.stdout?.readableLength ?? 0;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual((1 << 20) + (1 << 17));
    expect(sent).toBeLessThan(8 << 20);
    let total = 0;
    proc.stdout?.on('data', (b: Buffer) => (total += b.length));
    await writing;
    expect(await proc.exited).toEqual({ exitCode: 0, signal: null });
    expect(total).toBe(8 << 20);
  });
});
