import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LxdClient } from '../src/lxd-client.js';
import { exitOf, startExec } from '../src/lxd-exec.js';
import { FakeLxd } from './fake-lxd.js';

let fake: FakeLxd;
let client: LxdClient;

beforeEach(async () => {
  fake = await FakeLxd.start();
  client = new LxdClient({ socketPath: fake.socketPath });
});
afterEach(async () => {
  client.close();
  await fake.stop();
});

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

const request = { environment: { PATH: '/bin' }, cwd: '/tmp', user: 1000, group: 100 };

describe('exitOf', () => {
  it('reads 128+n as signal n and everything else as an exit code', () => {
    expect(exitOf(0)).toEqual({ exitCode: 0, signal: null });
    expect(exitOf(137)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(exitOf(143)).toEqual({ exitCode: null, signal: 'SIGTERM' });
    expect(exitOf(127)).toEqual({ exitCode: 127, signal: null });
    expect(exitOf(255)).toEqual({ exitCode: 255, signal: null });
  });
});

describe('startExec', () => {
  it('asks for a non-interactive exec with websockets, environment, cwd, user and group', async () => {
    fake.exec = () => ({ status: 0 });
    const proc = await startExec(client, 'c1', { ...request, command: ['id', '-u'], stdin: false });
    proc.stdout.resume();
    proc.stderr.resume();
    await proc.exited;
    const post = fake.requests.find((r) => r.path === '/1.0/instances/c1/exec')!;
    expect(post.json).toEqual({
      command: ['id', '-u'],
      environment: { PATH: '/bin' },
      'wait-for-websocket': true,
      interactive: false,
      'record-output': false,
      cwd: '/tmp',
      user: 1000,
      group: 100,
    });
  });

  it('keeps stdout and stderr apart, streams stdin to its end, and reports the exit code', async () => {
    fake.exec = (_cmd, stdin) => ({ stdout: `out:${stdin.toString()}`, stderr: 'err', status: 3 });
    const proc = await startExec(client, 'c1', { ...request, command: ['cat'], stdin: true });
    Readable.from([Buffer.from('one '), Buffer.from('two')]).pipe(proc.stdin!);
    const [out, err, exit] = await Promise.all([text(proc.stdout), text(proc.stderr), proc.exited]);
    expect([out, err, exit]).toEqual(['out:one two', 'err', { exitCode: 3, signal: null }]);
  });

  it('reports a command LXD could not find as exit 127, not as a failure', async () => {
    fake.exec = () => ({ status: 127, failure: 'Command not found' });
    const proc = await startExec(client, 'c1', { ...request, command: ['/nonexistent'], stdin: false });
    proc.stdout.resume();
    proc.stderr.resume();
    expect(await proc.exited).toEqual({ exitCode: 127, signal: null });
  });

  it('sends signals as numbers through the control websocket', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    fake.exec = async () => {
      await held;
      return { status: 143 };
    };
    const proc = await startExec(client, 'c1', { ...request, command: ['sleep', '60'], stdin: false });
    proc.stdout.resume();
    proc.stderr.resume();
    expect(proc.kill('SIGTERM')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(fake.controlMessages).toEqual([{ command: 'signal', args: null, signal: 15 }]);
    release();
    expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGTERM' });
    expect(proc.kill('SIGKILL')).toBe(false);
  });
});
