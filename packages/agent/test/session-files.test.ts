import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentError } from '../src/agent-errors.js';
import { AgentSession } from '../src/agent-session.js';
import { FrameType } from '../src/frames.js';
import { FakeAgent, type FakeFileOp } from './fake-agent.js';

const sessions: AgentSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
});

async function open(fileOps: Record<string, FakeFileOp>) {
  const agent = new FakeAgent({}, fileOps);
  const session = await AgentSession.over(agent.toClient, agent.fromClient);
  sessions.push(session);
  return { agent, session };
}

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function openArgs(agent: FakeAgent): string[] {
  return agent.frames
    .filter((f) => f.type === FrameType.OPEN)
    .map((f) => f.payload.toString().split('\0').slice(0, -1).join(' '));
}

describe('AgentSession file operations over a fake agent', () => {
  it('writes a file in windowed DATA and sends its owner and mode', async () => {
    let received: Buffer = Buffer.alloc(0);
    const { session, agent } = await open({
      write: {
        input: true,
        run: (_args, input) => {
          received = input;
          return { end: ['ok'] };
        },
      },
    });
    const content = Buffer.alloc(1024 * 1024 + 3, 0x5a);
    await session.writeFile('/etc/motd', Readable.from([content]), { mode: 0o4755, uid: 1, gid: 2 });
    expect(received.equals(content)).toBe(true);
    expect(openArgs(agent)).toEqual(['write /etc/motd 4755 1 2']);
    expect(agent.violations).toEqual([]);
  });

  it('kills a write whose source fails, and rejects with the source error', async () => {
    const { session, agent } = await open({ write: { input: true, run: () => ({ end: ['ok'] }) } });
    const source = new Readable({ read() {} });
    source.push(Buffer.from('partial'));
    setTimeout(() => source.destroy(new Error('disk gone')), 20);
    await expect(session.writeFile('/f', source, { mode: 0o644, uid: 0, gid: 0 })).rejects.toThrow('disk gone');
    expect(agent.frames.some((f) => f.type === FrameType.KILL)).toBe(true);
  });

  it('reads a file with its mode and size', async () => {
    const { session } = await open({
      read: { run: () => ({ output: Buffer.from('content'), end: ['ok', 'mode=640', 'size=7'] }) },
    });
    const { content, done } = session.readFile('/f');
    expect((await bytes(content)).toString()).toBe('content');
    expect(await done).toEqual({ mode: 0o640, size: 7 });
  });

  it('describes a path, and gives null for a missing one', async () => {
    const { session, agent } = await open({
      stat: {
        run: ([path]) =>
          path === '/missing'
            ? { end: ['error', 'NOT_FOUND', 'no such file'] }
            : {
                end: [
                  'ok',
                  'type=symlink',
                  'mode=1777',
                  'uid=3',
                  'gid=4',
                  'size=5',
                  'mtime=12.250000000',
                  'target=a=b',
                ],
              },
      },
    });
    expect(await session.stat('/l', false)).toEqual({
      type: 'symlink',
      mode: 0o1777,
      uid: 3,
      gid: 4,
      size: 5,
      mtime: new Date(12250),
      target: 'a=b',
    });
    expect(await session.stat('/missing', true)).toBeNull();
    expect(openArgs(agent)).toEqual(['stat /l 0', 'stat /missing 1']);
  });

  it('lists a directory sorted', async () => {
    const { session } = await open({ readdir: { run: () => ({ output: Buffer.from('b\0a\0C\0ä\0'), end: ['ok'] }) } });
    expect(await session.readDir('/d')).toEqual(['C', 'a', 'b', 'ä']);
  });

  it('turns an error END into AgentError with op and path', async () => {
    const { session } = await open({
      mkdir: { run: () => ({ end: ['error', 'CONFLICT', 'a file is in the way'] }) },
      remove: { run: () => ({ end: ['error', 'EWEIRD', 'odd'] }) },
    });
    const err = await session.mkdir('/a/b', 0o755).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ name: 'AgentError', code: 'CONFLICT', op: 'mkdir', path: '/a/b' });
    expect((err as Error).message).toBe('execenv-agent: mkdir /a/b: a file is in the way (CONFLICT)');
    await expect(session.remove('/x')).rejects.toMatchObject({ code: 'IO', message: /EWEIRD: odd/ });
  });

  it('ends tarOut only on success and errors it with the AgentError otherwise', async () => {
    const { session } = await open({
      'tar-out': {
        run: ([path]) =>
          path === '/ok'
            ? { output: Buffer.alloc(1024), end: ['ok', 'entries=1', 'bytes=0'] }
            : { output: Buffer.alloc(512), end: ['error', 'IO', 'read failed'] },
      },
      'tar-in': { input: true, run: (_args, input) => ({ end: ['ok', 'entries=2', `bytes=${input.length}`] }) },
    });
    expect((await bytes(session.tarOut('/ok'))).length).toBe(1024);
    await expect(bytes(session.tarOut('/bad'))).rejects.toMatchObject({ name: 'AgentError', code: 'IO' });
    expect(await session.tarIn('/dest', session.tarOut('/ok'))).toEqual({ entries: 2, bytes: 1024 });
  });
});
