import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentEnvironment, type AgentEnvironmentInit, DEFAULT_PATH } from '../../src/driver/index.js';
import type { ExecenvEvent } from '../../src/events.js';
import { createRunner, type RunOptions } from '../../src/runner.js';
import { FakeAgentSession, FakeRunner, fakeAgentError, fakeAgentTransportError } from '../../src/testing/index.js';

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'execenv-agent-env-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function open(session: FakeAgentSession, init: Partial<AgentEnvironmentInit> = {}) {
  const events: ExecenvEvent[] = [];
  let destroyed = 0;
  const env = new AgentEnvironment({
    id: 'execenv-agent0000000',
    driver: 'test',
    capabilities: ['root'],
    closeOnSignal: false,
    onEvent: (e) => events.push(e),
    session,
    env: { LANG: 'C.UTF-8' },
    destroy: async () => {
      destroyed++;
    },
    ...init,
  });
  return { env, events, destroyed: () => destroyed };
}

const passwd = 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000::/home/builder:/bin/sh\n';
const group = 'root:x:0:\nbuilder:x:1000:\nsbuild:x:120:builder\n';

describe('AgentEnvironment exec', () => {
  it('resolves the user through the agent, and builds env and cwd', async () => {
    const session = new FakeAgentSession({ files: { '/etc/passwd': passwd, '/etc/group': group } });
    session.files.mkdir('/work');
    const { env } = open(session);
    await env.exec(['true'], { user: 'builder', cwd: '/work', env: { A: '1' } });
    await env.exec(['true'], { user: '7:8' });
    await env.exec(['true'], { env: { PATH: '/x' } });
    expect(session.ops).toContain('readFile /etc/passwd');
    expect(session.ops).toContain('readFile /etc/group');
    expect(session.execs[0]).toEqual({
      cwd: '/work',
      uid: 1000,
      gid: 1000,
      groups: [1000, 120],
      env: { PATH: DEFAULT_PATH, LANG: 'C.UTF-8', A: '1' },
      argv: ['true'],
    });
    expect(session.execs[1]).toMatchObject({ cwd: '/', uid: 7, gid: 8, groups: [8] });
    expect(session.execs[2]?.env).toEqual({ PATH: '/x', LANG: 'C.UTF-8' });
    await expect(env.exec(['true'], { user: 'nobody' })).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'user',
      envId: env.id,
      driver: 'test',
      op: 'exec',
    });
    await env.close();
  });

  it('lets the driver refuse ids it cannot map', async () => {
    const session = new FakeAgentSession({ files: { '/etc/passwd': passwd, '/etc/group': group } });
    const { env } = open(session, {
      checkUser: (u, name) => {
        if (u.uid > 65535) throw new Error(`${name} is not mapped`);
      },
    });
    await expect(env.exec(['true'], { user: '70000' })).rejects.toThrow('70000 is not mapped');
    expect(session.execs).toHaveLength(0);
    await env.close();
  });

  it('rejects a missing cwd with NotFoundError naming it', async () => {
    const { env } = open(new FakeAgentSession());
    await expect(env.exec(['true'], { cwd: '/nowhere' })).rejects.toMatchObject({
      name: 'NotFoundError',
      code: 'NOT_FOUND',
      path: '/nowhere',
      envId: env.id,
      driver: 'test',
      op: 'exec',
    });
    const p = env.spawn(['true'], { cwd: '/nowhere' });
    await expect(p.result).rejects.toMatchObject({ code: 'NOT_FOUND', path: '/nowhere' });
    await env.close();
  });

  it('reports a lost agent as TransportError', async () => {
    const session = new FakeAgentSession();
    const { env } = open(session);
    session.close();
    await expect(env.exec(['true'])).rejects.toMatchObject({ code: 'TRANSPORT', envId: env.id, driver: 'test' });
    await env.close();
  });

  it('close kills running commands, closes the session, then destroys', async () => {
    const session = new FakeAgentSession();
    const { env, destroyed, events } = open(session);
    const running = env.exec(['sleep']);
    await new Promise((r) => setTimeout(r, 10));
    await env.close();
    await expect(running).rejects.toMatchObject({ code: 'CLOSED' });
    expect(session.closed).toBe(true);
    expect(destroyed()).toBe(1);
    expect(events).toContainEqual({ type: 'destroy', envId: env.id, driver: 'test' });
  });
});

describe('AgentEnvironment errors', () => {
  const cases = [
    ['NOT_FOUND', 'NOT_FOUND', 'readDir', undefined],
    ['UNSAFE_PATH', 'UNSAFE_PATH', 'pushArchive', undefined],
    ['CONFLICT', 'INVALID_SPEC', 'pushArchive', 'archive'],
    ['CONFLICT', 'INVALID_SPEC', 'push', 'dest'],
    ['INVALID', 'INVALID_SPEC', 'readDir', 'path'],
    ['IO', 'EXEC_FAILED', 'stat', undefined],
    ['TRANSPORT', 'TRANSPORT', 'stat', undefined],
    ['IO', 'EXEC_FAILED', 'pull', undefined],
    ['NOT_FOUND', 'NOT_FOUND', 'pullArchive', undefined],
  ] as const;
  for (const [agentCode, code, op, field] of cases) {
    it(`maps ${agentCode} from ${op} to ${code}`, async () => {
      const failure = agentCode === 'TRANSPORT' ? fakeAgentTransportError() : fakeAgentError(agentCode, 'refused');
      const session = new FakeAgentSession({ files: { '/f': 'x' }, fail: () => failure });
      session.files.mkdir('/d');
      const { env } = open(session);
      const run = async () => {
        switch (op) {
          case 'readDir':
            return env.readDir('/d');
          case 'pushArchive':
            return env.pushArchive(Readable.from([]), '/d');
          case 'push':
            return env.push(new Uint8Array([1]), '/d/f');
          case 'stat':
            return env.stat('/f');
          case 'pull':
            return env.pull('/f', join(tmp, 'f'));
          case 'pullArchive':
            for await (const _ of env.pullArchive('/d'));
        }
      };
      const err = await run().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code, envId: env.id, driver: 'test', op, cause: failure });
      if (field) expect(err).toMatchObject({ field });
      await env.close();
    });
  }
});

describe('AgentEnvironment files', () => {
  async function hostTree(): Promise<string> {
    const src = join(tmp, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'readme'), 'hello\n');
    await writeFile(join(src, 'sub', 'script'), '#!/bin/sh\n');
    await chmod(join(src, 'sub', 'script'), 0o750);
    await chmod(join(src, 'sub'), 0o711);
    await symlink('../readme', join(src, 'sub', 'link'));
    return src;
  }

  for (const withTar of [false, true]) {
    it(`pushes and pulls a host directory with modes and symlinks${withTar ? ' (GNU tar)' : ''}`, async () => {
      const session = new FakeAgentSession();
      const { env, events } = open(session, withTar ? { hostRunner: createRunner() } : {});
      await env.push(await hostTree(), '/dst');
      expect(await env.readDir('/dst')).toEqual(['readme', 'sub']);
      expect(await env.stat('/dst/sub/script')).toMatchObject({ type: 'file', mode: 0o750 });
      expect(await env.stat('/dst/sub')).toMatchObject({ type: 'directory', mode: 0o711 });
      expect(await env.stat('/dst/sub/link')).toMatchObject({ type: 'symlink', linkTarget: '../readme' });
      const back = join(tmp, 'back');
      await env.pull('/dst', back);
      expect(await readFile(join(back, 'readme'), 'utf8')).toBe('hello\n');
      expect((await lstat(join(back, 'sub', 'script'))).mode & 0o7777).toBe(0o750);
      expect((await lstat(join(back, 'sub'))).mode & 0o7777).toBe(0o711);
      expect(await readlink(join(back, 'sub', 'link'))).toBe('../readme');
      expect(events.filter((e) => e.type === 'copy').map((e) => e.type === 'copy' && e.direction)).toEqual([
        'push',
        'pull',
      ]);
      await env.close();
    });
  }

  it("hands a host directory to the session's own pushDirectory when it has one, mapping its errors", async () => {
    /** A session that moves host trees its own way (as a guest's share does) and records what it was asked. */
    class SharingSession extends FakeAgentSession {
      readonly pushed: [string, string][] = [];
      refuse: Error | undefined;
      async pushDirectory(dir: string, destDir: string) {
        this.pushed.push([dir, destDir]);
        if (this.refuse) throw this.refuse;
        return { entries: 3, bytes: 42 };
      }
    }
    const session = new SharingSession();
    const { env, events } = open(session, { hostRunner: createRunner() });
    const tree = await hostTree();
    await env.push(tree, '/dst');
    expect(session.pushed).toEqual([[tree, '/dst']]);
    expect(session.ops.filter((op) => op.startsWith('tarIn'))).toEqual([]);
    expect(events).toContainEqual({ type: 'copy', envId: env.id, direction: 'push', path: '/dst', bytes: 42 });
    session.refuse = fakeAgentError('UNSAFE_PATH', '/dst/sub is a symlink');
    await expect(env.push(tree, '/dst')).rejects.toMatchObject({ code: 'UNSAFE_PATH', op: 'push' });
    await env.close();
  });

  it('moves directories through the host agent when it has one, mapping its outcomes', async () => {
    /** Answers every host agent run with the next scripted result. */
    class ScriptedRunner extends FakeRunner {
      readonly results: { exitCode: number; stdout: string; stderr?: string }[] = [];
      override async run(argv: readonly string[], opts?: RunOptions) {
        await super.run(argv, opts);
        const r = this.results.shift() ?? { exitCode: 0, stdout: 'ok\0entries=0\0bytes=0\0' };
        return { argv, signal: null, stderr: '', ...r };
      }
    }
    const runner = new ScriptedRunner();
    const session = new FakeAgentSession();
    const hostAgent = { socket: '/run/env/agent.sock', binary: '/opt/execenv-agent' };
    const { env, events } = open(session, { hostRunner: runner, hostAgent });
    const tree = await hostTree();
    runner.results.push({ exitCode: 0, stdout: 'ok\0entries=3\0bytes=42\0' });
    await env.push(tree, '/dst');
    expect(runner.ran.at(-1)?.argv).toEqual(['/opt/execenv-agent', '--push', '/run/env/agent.sock', tree, '/dst']);
    expect(events).toContainEqual({ type: 'copy', envId: env.id, direction: 'push', path: '/dst', bytes: 42 });
    expect(session.ops.filter((op) => op.startsWith('tarIn'))).toEqual([]);

    await session.mkdir('/src', 0o755);
    const back = join(tmp, 'back-new');
    runner.results.push({ exitCode: 0, stdout: 'ok\0entries=7\0bytes=9\0' });
    await env.pull('/src', back);
    expect(runner.ran.at(-1)?.argv).toEqual(['/opt/execenv-agent', '--pull', '/run/env/agent.sock', '/src', back]);
    expect(events).toContainEqual({ type: 'copy', envId: env.id, direction: 'pull', path: '/src', bytes: 9 });

    // A directory that holds something already is extracted in this process, which checks what is there.
    const used = join(tmp, 'back-used');
    await mkdir(used);
    await writeFile(join(used, 'mine'), 'kept');
    const runs = runner.ran.length;
    await env.pull('/src', used);
    expect(runner.ran.length).toBe(runs);
    expect(await readFile(join(used, 'mine'), 'utf8')).toBe('kept');

    const failing = join(tmp, 'back-failing');
    runner.results.push({ exitCode: 1, stdout: 'error\0UNSAFE_PATH\0unsafe entry name ../x\0' });
    await expect(env.pull('/src', failing)).rejects.toMatchObject({ code: 'UNSAFE_PATH', op: 'pull' });
    await expect(lstat(failing)).rejects.toMatchObject({ code: 'ENOENT' });
    runner.results.push({ exitCode: 1, stdout: 'error\0NOT_FOUND\0/gone: No such file or directory\0' });
    await expect(env.push(tree, '/gone')).rejects.toMatchObject({ code: 'NOT_FOUND', op: 'push' });
    runner.results.push({ exitCode: 2, stdout: '', stderr: 'execenv-agent: cannot connect to /run/env/agent.sock\n' });
    const lost = await env.push(tree, '/dst').catch((e: unknown) => e);
    expect(lost).toMatchObject({ code: 'TRANSPORT', op: 'push' });
    expect((lost as Error).message).toContain('cannot connect to /run/env/agent.sock');
    await env.close();
  });

  for (const withTar of [false, true])
    it(`takes host paths relative to the working directory${withTar ? ' (GNU tar)' : ''}`, async () => {
      const session = new FakeAgentSession();
      const { env } = open(session, withTar ? { hostRunner: createRunner() } : {});
      const tree = relative(process.cwd(), await hostTree());
      expect(isAbsolute(tree)).toBe(false);
      await env.push(tree, '/dst');
      expect(await env.readDir('/dst')).toEqual(['readme', 'sub']);
      const back = relative(process.cwd(), join(tmp, `back-relative-${withTar}`));
      await env.pull('/dst', back);
      expect(await readFile(join(back, 'readme'), 'utf8')).toBe('hello\n');
      await env.close();
    });

  it('pushes files with their mode and owner, and pulls them back atomically', async () => {
    const session = new FakeAgentSession();
    const { env, events } = open(session);
    const host = join(tmp, 'tool');
    await writeFile(host, 'run');
    await chmod(host, 0o700);
    await env.push(host, '/usr/bin/tool');
    await env.push(new TextEncoder().encode('text'), '/etc/motd', { uid: 5, gid: 6 });
    expect(await env.stat('/etc/motd')).toMatchObject({ mode: 0o644, uid: 5, gid: 6 });
    await env.push(Readable.from([Buffer.from('stream')]), '/s', { mode: 0o600 });
    expect(await env.stat('/usr/bin/tool')).toMatchObject({ mode: 0o700, size: 3 });
    expect(await env.stat('/s')).toMatchObject({ mode: 0o600, size: 6 });
    expect(events).toContainEqual({ type: 'copy', envId: env.id, direction: 'push', path: '/s', bytes: 6 });
    const out = join(tmp, 'out');
    await env.pull('/usr/bin/tool', out);
    expect(await readFile(out, 'utf8')).toBe('run');
    expect((await lstat(out)).mode & 0o7777).toBe(0o700);
    await expect(env.pull('/missing', join(tmp, 'm'))).rejects.toMatchObject({ code: 'NOT_FOUND', op: 'pull' });
    expect(await readdir(tmp)).toEqual(['out', 'tool']);
    await env.close();
  });

  it('leaves no partial file when a pull fails half-way', async () => {
    const session = new FakeAgentSession({ files: { '/big': 'content' } });
    session.readFile = () => {
      const content = new Readable({ read() {} });
      content.push('cont');
      const done = Promise.reject(fakeAgentError('IO', 'read error'));
      done.catch(() => {});
      queueMicrotask(() => content.destroy(fakeAgentError('IO', 'read error')));
      return { content, done };
    };
    const { env } = open(session);
    await expect(env.pull('/big', join(tmp, 'big'))).rejects.toMatchObject({ code: 'EXEC_FAILED', op: 'pull' });
    expect(await readdir(tmp)).toEqual([]);
    await env.close();
  });

  function hostileTarOut(session: FakeAgentSession): void {
    session.files.mkdir('/d');
    session.tarOut = () => {
      const pack = tarPack();
      pack.entry({ name: '.', type: 'directory', mode: 0o755 });
      pack.entry({ name: 'ok', type: 'file', mode: 0o644 }, 'fine');
      pack.entry({ name: '../x', type: 'file', mode: 0o644 }, 'escaped');
      pack.entry({ name: 'after', type: 'file', mode: 0o644 }, 'late');
      pack.finalize();
      return Readable.from(pack);
    };
  }

  for (const withTar of [false, true]) {
    it(`refuses a hostile archive from the agent and writes nothing outside dest${withTar ? ' (GNU tar)' : ''}`, async () => {
      const session = new FakeAgentSession();
      hostileTarOut(session);
      const { env, events } = open(session, withTar ? { hostRunner: createRunner() } : {});
      const dest = join(tmp, 'dest');
      await expect(env.pull('/d', dest)).rejects.toMatchObject({
        name: 'UnsafePathError',
        code: 'UNSAFE_PATH',
        envId: env.id,
        driver: 'test',
        op: 'pull',
      });
      expect(await readdir(tmp)).toEqual([]);
      expect(events.filter((e) => e.type === 'copy')).toEqual([]);
      await env.close();
    });
  }

  it('empties a destination that was empty when a GNU tar pull fails', async () => {
    const session = new FakeAgentSession();
    hostileTarOut(session);
    const { env } = open(session, { hostRunner: createRunner() });
    const dest = join(tmp, 'dest');
    await mkdir(dest);
    await expect(env.pull('/d', dest)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await readdir(tmp)).toEqual(['dest']);
    expect(await readdir(dest)).toEqual([]);
    await env.close();
  });

  it('pulls into a directory that holds something without GNU tar, never through a symlink there', async () => {
    const session = new FakeAgentSession({ files: { '/d/a/passwd': 'pulled\n' } });
    const spawned: string[][] = [];
    const real = createRunner();
    const runner = {
      run: real.run,
      spawn: (argv: readonly string[], o?: object) => {
        spawned.push([...argv]);
        return real.spawn(argv, o);
      },
    };
    const { env, events } = open(session, { hostRunner: runner });
    const outside = join(tmp, 'outside');
    await mkdir(outside);
    const dest = join(tmp, 'dest');
    await mkdir(dest);
    await symlink(outside, join(dest, 'a'));
    await env.pull('/d', dest);
    expect(spawned).toEqual([]);
    expect(await readdir(outside)).toEqual([]);
    expect(await readFile(join(dest, 'a', 'passwd'), 'utf8')).toBe('pulled\n');
    await rm(join(dest, 'a'), { recursive: true });
    await env.pull('/d', dest);
    expect(spawned.map((a) => a[0])).toEqual(['tar']);
    expect(await readFile(join(dest, 'a', 'passwd'), 'utf8')).toBe('pulled\n');
    expect(events.filter((e) => e.type === 'copy').map((e) => e.type === 'copy' && e.bytes)).toEqual([7, 7]);
    await env.close();
  });

  it('streams archives both ways and maps stat', async () => {
    const session = new FakeAgentSession({ files: { '/etc/hostname': 'box\n' } });
    session.files.symlink('/etc/hostname', '/h');
    const { env } = open(session);
    const chunks: Buffer[] = [];
    for await (const c of env.pullArchive('/etc')) chunks.push(c as Buffer);
    await env.pushArchive(Readable.from([Buffer.concat(chunks)]), '/copy');
    expect(await env.readDir('/copy')).toEqual(['hostname']);
    expect(await env.stat('/h')).toMatchObject({ type: 'symlink', linkTarget: '/etc/hostname' });
    expect(await env.stat('/none')).toBeNull();
    await env.close();
  });
});
