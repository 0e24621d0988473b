import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentBinaryPath } from '../src/agent-binary.js';
import { AgentError, AgentTransportError } from '../src/agent-errors.js';
import { AgentSession } from '../src/agent-session.js';
import type { AgentExecRequest, AgentProcess } from '../src/agent-types.js';
import { INITIAL_WINDOW } from '../src/frames.js';
import { archive, entry } from './tar-entries.js';

const binary = await agentBinaryPath().catch((err: Error) => {
  console.log(`skipping the real-agent tests: ${err.message}`);
  return undefined;
});

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const children: ChildProcess[] = [];
const sessions: AgentSession[] = [];

/**
 * Starts `execenv-agent --stdio` and opens a session over its stdout and stdin.
 * `tree` forces how command trees are contained (EXECENV_AGENT_TREE), as where namespaces are not permitted.
 */
async function stdioAgent(tree?: 'pidns' | 'subreaper'): Promise<{ session: AgentSession; child: ChildProcess }> {
  const env = tree ? { ...process.env, EXECENV_AGENT_TREE: tree } : process.env;
  const child = spawn(binary!, ['--stdio'], { stdio: ['pipe', 'pipe', 'inherit'], env });
  children.push(child);
  const session = await AgentSession.over(child.stdout!, child.stdin!);
  sessions.push(session);
  return { session, child };
}

/** Starts `execenv-agent --listen SOCKET` and waits for its `ready`. */
async function listeningAgent(socket: string): Promise<ChildProcess> {
  const child = spawn(binary!, ['--listen', socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the agent exited with ${code} before ready`)));
  });
  return child;
}

function request(argv: string[], extra: Partial<AgentExecRequest> = {}): AgentExecRequest {
  return { cwd: '/', uid: process.getuid!(), gid: process.getgid!(), groups: [], env: { PATH }, argv, ...extra };
}

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function run(proc: AgentProcess, input?: Buffer) {
  proc.stdin.end(input);
  const [stdout, stderr, exit] = await Promise.all([bytes(proc.stdout), bytes(proc.stderr), proc.exited]);
  return { stdout: stdout.toString(), stderr: stderr.toString(), ...exit };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function processesWith(marker: string): Promise<number> {
  let found = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(marker)) found++;
  }
  return found;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'execenv-agent-test-'));
});
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
  for (const c of children.splice(0)) {
    c.stdin?.end();
    c.kill('SIGKILL');
  }
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe.skipIf(!binary)('the real agent', () => {
  it('answers the handshake over --stdio', async () => {
    const { session, child } = await stdioAgent();
    expect(session.info).toMatchObject({ protocol: 1, arch: 'x86_64', pid: child.pid, version: '0.1.0' });
    expect(['pidns', 'subreaper']).toContain(session.info.tree);
    expect(await session.ping(2000)).toBeLessThan(2000);
  });

  it('reports exact exit codes and missing programs', async () => {
    const { session } = await stdioAgent();
    for (const code of [0, 3, 255]) {
      expect(await run(session.exec(request(['sh', '-c', `exit ${code}`])))).toMatchObject({
        exitCode: code,
        signal: null,
      });
    }
    const missing = await run(session.exec(request(['/nonexistent/program'])));
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toMatch(/cannot execute \/nonexistent\/program/);
  });

  it('names the signal that killed a command, and forwards other signals', async () => {
    const { session } = await stdioAgent();
    expect(await run(session.exec(request(['sh', '-c', 'kill -TERM $$'])))).toMatchObject({
      exitCode: null,
      signal: 'SIGTERM',
    });
    const sleeper = session.exec(request(['sleep', '60']));
    await sleep(100);
    expect(sleeper.kill('SIGINT')).toBe(true);
    expect(await sleeper.exited).toEqual({ exitCode: null, signal: 'SIGINT' });
    expect(sleeper.kill()).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0)('lets a command of another user reopen its stdio through /dev/std*', async () => {
    const { session } = await stdioAgent();
    const reopen = ['sh', '-c', 'cat /dev/stdin; echo out > /dev/stdout; echo err > /dev/stderr'];
    expect(await run(session.exec(request(reopen, { uid: 65534, gid: 65534 })), Buffer.from('in\n'))).toEqual({
      stdout: 'in\nout\n',
      stderr: 'err\n',
      exitCode: 0,
      signal: null,
    });
  });

  it('keeps stdout and stderr apart, with the exact environment and cwd', async () => {
    const { session } = await stdioAgent();
    expect(await run(session.exec(request(['sh', '-c', 'echo out; echo err >&2; exit 1'])))).toEqual({
      stdout: 'out\n',
      stderr: 'err\n',
      exitCode: 1,
      signal: null,
    });
    const env = { PATH, ONE: '1', SPACED: 'a b  c', EMPTY: '', UNICODE: 'ä€' };
    const printed = await run(session.exec(request(['env'], { env })));
    expect(printed.stdout.split('\n').filter(Boolean).sort()).toEqual(
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .sort(),
    );
    expect((await run(session.exec(request(['pwd'], { cwd: scratch })))).stdout).toBe(`${scratch}\n`);
  });

  it('fails a missing cwd with AgentError NOT_FOUND', async () => {
    const { session } = await stdioAgent();
    const err = await session.exec(request(['true'], { cwd: '/nonexistent/dir' })).exited.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ code: 'NOT_FOUND', op: 'exec' });
  });

  it('passes 10 MB through cat intact', { timeout: 30_000 }, async () => {
    const { session } = await stdioAgent();
    const input = randomBytes(10 * 1024 * 1024);
    const result = session.exec(request(['cat']));
    Readable.from([input]).pipe(result.stdin);
    const [output, exit] = await Promise.all([bytes(result.stdout), result.exited]);
    expect(exit.exitCode).toBe(0);
    expect(output.length).toBe(input.length);
    expect(createHash('sha256').update(output).digest('hex')).toBe(createHash('sha256').update(input).digest('hex'));
  });

  it('holds a slow reader to the window without stalling other commands', { timeout: 30_000 }, async () => {
    const { session } = await stdioAgent();
    const flood = session.exec(request(['head', '-c', String(16 * 1024 * 1024), '/dev/zero']));
    flood.stdin.end();
    await sleep(300);
    expect(flood.stdout.readableLength).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect((await run(session.exec(request(['echo', 'meanwhile'])))).stdout).toBe('meanwhile\n');
    let total = 0;
    let peak = 0;
    for await (const chunk of flood.stdout) {
      total += (chunk as Buffer).length;
      peak = Math.max(peak, flood.stdout.readableLength);
    }
    expect(total).toBe(16 * 1024 * 1024);
    expect(peak).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect((await flood.exited).exitCode).toBe(0);
  });

  it('KILL kills the whole tree, backgrounded processes included', { timeout: 15_000 }, async () => {
    const { session } = await stdioAgent();
    const marker = `${4000 + Math.floor(Math.random() * 1000)}.${Date.now() % 1_000_000}`;
    const proc = session.exec(request(['sh', '-c', `sleep ${marker} & echo started; wait`]));
    proc.stdin.end();
    await new Promise<void>((resolve) => proc.stdout.once('data', () => resolve()));
    expect(await processesWith(`sleep\0${marker}`)).toBe(1);
    proc.kill();
    expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    for (let i = 0; i < 40 && (await processesWith(`sleep\0${marker}`)) > 0; i++) await sleep(50);
    expect(await processesWith(`sleep\0${marker}`)).toBe(0);
  });

  it.each([
    ['pidns', 'first'],
    ['subreaper', 'first'],
    ['pidns', 'standby'],
    ['subreaper', 'standby'],
  ] as const)(
    'ends a command only once what it left in the background is gone (%s, %s supervisor)',
    { timeout: 15_000 },
    async (tree, supervisor) => {
      const { session } = await stdioAgent(tree);
      // After one command the agent keeps a supervisor started ahead, and the next command goes to it.
      if (supervisor === 'standby') await run(session.exec(request(['true'])));
      const marker = `${6000 + Math.floor(Math.random() * 1000)}.${Date.now() % 1_000_000}`;
      // Detached from every pipe: nothing but the agent's tree cleanup can end it.
      const proc = session.exec(request(['sh', '-c', `sleep ${marker} </dev/null >/dev/null 2>&1 &`]));
      proc.stdin.end();
      proc.stdout.resume();
      proc.stderr.resume();
      expect(await proc.exited).toEqual({ exitCode: 0, signal: null });
      // Checked at once, not polled: the outcome comes only after the tree is empty.
      expect(await processesWith(`sleep\0${marker}`)).toBe(0);
    },
  );

  it('kills the whole tree without namespaces, a setsid daemon included (subreaper)', { timeout: 15_000 }, async () => {
    const { session } = await stdioAgent('subreaper');
    expect(session.info.tree).toBe('subreaper');
    const marker = `${5000 + Math.floor(Math.random() * 1000)}.${Date.now() % 1_000_000}`;
    // A daemon that leaves the command's process group and is orphaned at once.
    const script = `setsid sh -c 'sleep ${marker}' & sleep ${marker} & echo started; wait`;
    const proc = session.exec(request(['sh', '-c', script]));
    proc.stdin.end();
    await new Promise<void>((resolve) => proc.stdout.once('data', () => resolve()));
    for (let i = 0; i < 40 && (await processesWith(`sleep\0${marker}`)) < 2; i++) await sleep(25);
    expect(await processesWith(`sleep\0${marker}`)).toBe(2);
    proc.kill();
    expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    for (let i = 0; i < 40 && (await processesWith(`sleep\0${marker}`)) > 0; i++) await sleep(50);
    expect(await processesWith(`sleep\0${marker}`)).toBe(0);
  });

  it.each(['pidns', 'subreaper'] as const)(
    'runs the next command in the supervisor it started ahead (%s)',
    { timeout: 15_000 },
    async (tree) => {
      const { session, child } = await stdioAgent(tree);
      const children = async (pid: number) =>
        (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).split(' ').filter(Boolean).map(Number);
      expect(await children(child.pid!)).toEqual([]);
      await run(session.exec(request(['true'])));
      // The first command's supervisor may still be on its way out.
      let ready: number[] = [];
      for (let i = 0; i < 100 && ready.length !== 1; i++) {
        ready = await children(child.pid!);
        if (ready.length !== 1) await sleep(20);
      }
      expect(ready).toHaveLength(1);
      const proc = session.exec(request(['sleep', '30']));
      proc.stdin.end();
      proc.stdout.resume();
      proc.stderr.resume();
      let supervised: number[] = [];
      for (let i = 0; i < 100 && supervised.length === 0; i++) {
        supervised = await children(ready[0]!);
        if (supervised.length === 0) await sleep(20);
      }
      expect(supervised).toHaveLength(1);
      proc.kill();
      expect(await proc.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    },
  );

  it.each(['pidns', 'subreaper'] as const)(
    'kills a command whose KILL comes while it is being started (%s)',
    { timeout: 30_000 },
    async (tree) => {
      const { session } = await stdioAgent(tree);
      for (let i = 0; i < 25; i++) {
        const proc = session.exec(request(['sleep', '30']));
        proc.stdin.end();
        proc.stdout.resume();
        proc.stderr.resume();
        // Right after the supervisor took the request: the command may not have exec'd yet.
        await sleep(i % 5);
        proc.kill();
        const timer = sleep(5000).then(() => 'still running');
        expect(await Promise.race([proc.exited, timer])).toEqual({ exitCode: null, signal: 'SIGKILL' });
      }
    },
  );

  it.each(['pidns', 'subreaper'] as const)(
    'serves the next command from the supervisor of the last one, never after a mount change or a kill (%s)',
    { timeout: 30_000 },
    async (tree) => {
      const { session } = await stdioAgent(tree);
      const scratch = await mkdtemp(join(tmpdir(), 'execenv-agent-reuse-'));
      /** Starts `sh -c "SCRIPT; cat >/dev/null"` and returns it with the pid of the supervisor it runs under. */
      const waiting = async (script = ':') => {
        const marker = `execenv-reuse-${randomBytes(6).toString('hex')}`;
        const proc = session.exec(request(['sh', '-c', `${script}; cat >/dev/null`, marker]));
        proc.stdout.resume();
        proc.stderr.resume();
        for (let i = 0; i < 200; i++) {
          for (const pid of await readdir('/proc')) {
            if (!/^\d+$/.test(pid)) continue;
            if (!(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(marker)) continue;
            const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
            return { proc, supervisor: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) };
          }
          await sleep(20);
        }
        throw new Error(`${marker} never showed up`);
      };
      const finish = async (proc: AgentProcess) => {
        proc.stdin.end();
        return proc.exited;
      };
      try {
        await run(session.exec(request(['true'])));
        const first = await waiting();
        expect(await finish(first.proc)).toEqual({ exitCode: 0, signal: null });
        const second = await waiting();
        expect(second.supervisor).toBe(first.supervisor);
        await finish(second.proc);
        if (tree === 'pidns') {
          // A mount made in the supervisor's namespace would outlive the command there: that supervisor is done.
          const mounting = await waiting(`mount -t tmpfs execenv-reuse ${scratch}`);
          expect(mounting.supervisor).toBe(first.supervisor);
          expect(await finish(mounting.proc)).toEqual({ exitCode: 0, signal: null });
          const after = await waiting(`! grep -q execenv-reuse /proc/self/mounts`);
          expect(after.supervisor).not.toBe(mounting.supervisor);
          expect(await finish(after.proc)).toEqual({ exitCode: 0, signal: null });
        }
        const killed = await waiting();
        killed.proc.kill();
        expect(await killed.proc.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
        const next = await waiting();
        expect(next.supervisor).not.toBe(killed.supervisor);
        expect(await finish(next.proc)).toEqual({ exitCode: 0, signal: null });
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  );

  it('ends output a command closed long before it exits without waiting for the exit', {
    timeout: 15_000,
  }, async () => {
    const { session } = await stdioAgent();
    const proc = session.exec(request(['sh', '-c', 'echo early; exec >&- 2>&-; sleep 3']));
    proc.stdin.end();
    const started = performance.now();
    const [out] = await Promise.all([bytes(proc.stdout), bytes(proc.stderr)]);
    const ended = performance.now() - started;
    expect(out.toString()).toBe('early\n');
    // The agent holds an EOF a little while for the outcome to go with it, never until the exit.
    expect(ended).toBeLessThan(2000);
    expect(await proc.exited).toEqual({ exitCode: 0, signal: null });
    expect(performance.now() - started).toBeGreaterThanOrEqual(2900);
  });

  it('hands a request larger than a socket buffer to the standby supervisor intact', { timeout: 15_000 }, async () => {
    const { session } = await stdioAgent();
    await run(session.exec(request(['true'])));
    const big = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`BIG${i}`, String(i).repeat(100_000)]));
    const printed = await run(
      session.exec(
        request(
          [
            'sh',
            '-c',
            'printf "%s %s %s\\n" "$(printf %s "$BIG0" | wc -c)" "$(printf %s "$BIG7" | wc -c)" "$1"',
            'sh',
            'last',
          ],
          { env: { PATH, ...big } },
        ),
      ),
    );
    expect(printed).toMatchObject({ stdout: '100000 100000 last\n', exitCode: 0 });
  });

  it('shuts down at once with a supervisor standing by', { timeout: 15_000 }, async () => {
    const { session, child } = await stdioAgent();
    await run(session.exec(request(['true'])));
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    );
    await session.shutdown();
    // The agent's last resort for a worker that never finishes is SIGALRM after 10 s: a clean exit means none was waited for.
    expect(await exited).toEqual([0, null]);
  });

  it('runs 100 commands at once on one session', { timeout: 30_000 }, async () => {
    const { session } = await stdioAgent();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => run(session.exec(request(['sh', '-c', `echo ${i}; exit ${i % 7}`])))),
    );
    expect(results.map((r) => [r.stdout, r.exitCode])).toEqual(
      Array.from({ length: 100 }, (_, i) => [`${i}\n`, i % 7]),
    );
  });

  it('rejects a running command with AgentTransportError when the agent dies', async () => {
    const { session, child } = await stdioAgent();
    const proc = session.exec(request(['sleep', '60']));
    await sleep(100);
    const started = Date.now();
    child.kill('SIGKILL');
    await expect(proc.exited).rejects.toBeInstanceOf(AgentTransportError);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(session.stat('/', true)).rejects.toBeInstanceOf(AgentTransportError);
  });

  it('writes, reads, stats, lists and removes files', async () => {
    const { session } = await stdioAgent();
    const dir = join(scratch, 'files');
    const file = join(dir, 'deep/er/file.txt');
    await session.writeFile(file, Readable.from([Buffer.from('hello\n')]), { mode: 0o4750, uid: 1234, gid: 2345 });
    expect(await session.stat(file, false)).toMatchObject({
      type: 'file',
      mode: 0o4750,
      uid: 1234,
      gid: 2345,
      size: 6,
    });
    const read = session.readFile(file);
    expect((await bytes(read.content)).toString()).toBe('hello\n');
    expect(await read.done).toEqual({ mode: 0o4750, size: 6 });

    await symlink('deep/er/file.txt', join(dir, 'link'));
    const link = await session.stat(join(dir, 'link'), false);
    expect(link).toMatchObject({ type: 'symlink', target: 'deep/er/file.txt' });
    expect((await session.stat(join(dir, 'link'), true))?.type).toBe('file');
    expect(await session.stat(join(dir, 'nothing'), true)).toBeNull();
    expect((await session.stat(dir, true))?.mtime).toBeInstanceOf(Date);

    await session.mkdir(join(dir, 'a/b/c'), 0o750);
    expect((await session.stat(join(dir, 'a/b/c'), true))?.type).toBe('directory');
    for (const name of ['zeta', 'Alpha', 'beta', '.hidden'])
      await session.writeFile(join(dir, 'list', name), Readable.from([]), { mode: 0o644, uid: 0, gid: 0 });
    expect(await session.readDir(join(dir, 'list'))).toEqual(['.hidden', 'Alpha', 'beta', 'zeta']);

    await expect(session.readDir(file)).rejects.toMatchObject({ name: 'AgentError', code: 'INVALID' });
    await expect(
      session.writeFile(join(dir, 'a'), Readable.from([]), { mode: 0o644, uid: 0, gid: 0 }),
    ).rejects.toMatchObject({
      code: 'CONFLICT',
    });
    const missing = session.readFile(join(dir, 'missing'));
    await expect(bytes(missing.content)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(missing.done).rejects.toBeInstanceOf(AgentError);

    // A write whose source fails leaves no file, not even a temporary one.
    const failing = new Readable({ read() {} });
    failing.push(Buffer.alloc(100_000));
    setTimeout(() => failing.destroy(new Error('source broke')), 50);
    await expect(
      session.writeFile(join(dir, 'list/partial'), failing, { mode: 0o644, uid: 0, gid: 0 }),
    ).rejects.toThrow('source broke');
    await sleep(50);
    expect(await session.readDir(join(dir, 'list'))).toEqual(['.hidden', 'Alpha', 'beta', 'zeta']);

    await session.remove(dir);
    expect(await session.stat(dir, false)).toBeNull();
    await session.remove(dir);
  });

  it('round-trips a tree through tarOut and tarIn', { timeout: 15_000 }, async () => {
    const { session } = await stdioAgent();
    const src = join(scratch, 'tar-src');
    const dst = join(scratch, 'tar-dst');
    const big = randomBytes(3 * 1024 * 1024);
    await session.writeFile(join(src, 'big.bin'), Readable.from([big]), { mode: 0o600, uid: 0, gid: 0 });
    await session.writeFile(join(src, 'sub/script'), Readable.from([Buffer.from('#!/bin/sh\n')]), {
      mode: 0o755,
      uid: 1,
      gid: 2,
    });
    await symlink('sub/script', join(src, 'link'));
    const summary = await session.tarIn(dst, session.tarOut(src));
    expect(summary.bytes).toBe(big.length + 10);
    expect(summary.entries).toBeGreaterThanOrEqual(5);
    expect(await session.readDir(dst)).toEqual(['big.bin', 'link', 'sub']);
    expect((await readFile(join(dst, 'big.bin'))).equals(big)).toBe(true);
    expect(await session.stat(join(dst, 'sub/script'), false)).toMatchObject({ mode: 0o755, uid: 1, gid: 2 });
    expect(await session.stat(join(dst, 'link'), false)).toMatchObject({ type: 'symlink', target: 'sub/script' });

    const failing = session.tarOut(join(scratch, 'no-such-dir'));
    await expect(bytes(failing)).rejects.toMatchObject({ name: 'AgentError', code: 'NOT_FOUND' });
  });

  it('round-trips a tree through a direct tarOut and tarInFile', { timeout: 30_000 }, async () => {
    const { session } = await stdioAgent();
    const src = join(scratch, 'file-src');
    const dst = join(scratch, 'file-dst');
    // Sizes around the direct I/O rules: below the minimum, whole blocks, a partial last block, several chunks.
    const files = {
      'small.txt': randomBytes(1000),
      'blocks.bin': randomBytes(256 * 1024),
      'odd.bin': randomBytes(1024 * 1024 + 123),
      'sub/chunks.bin': randomBytes(3 * 1024 * 1024 + 4096 + 7),
    };
    for (const [name, content] of Object.entries(files))
      await session.writeFile(join(src, name), Readable.from([content]), { mode: 0o640, uid: 0, gid: 0 });
    await symlink('odd.bin', join(src, 'link'));
    await link(join(src, 'odd.bin'), join(src, 'sub/hard'));
    const archive = join(scratch, 'file-src.tar');
    await writeFile(archive, await bytes(session.tarOut(src, { direct: true })));
    const summary = await session.tarInFile(dst, archive);
    expect(summary.bytes).toBe(Object.values(files).reduce((n, c) => n + c.length, 0));
    for (const [name, content] of Object.entries(files))
      expect((await readFile(join(dst, name))).equals(content)).toBe(true);
    expect(await session.stat(join(dst, 'odd.bin'), false)).toMatchObject({
      mode: 0o640,
      size: files['odd.bin'].length,
    });
    expect(await session.stat(join(dst, 'link'), false)).toMatchObject({ type: 'symlink', target: 'odd.bin' });
    expect((await stat(join(dst, 'sub/hard'))).ino).toBe((await stat(join(dst, 'odd.bin'))).ino);
    expect(await readFile(archive)).toHaveLength((await stat(archive)).size); // left in place
  });

  it('refuses a tarInFile archive that is missing, not a regular file, or unsafe', async () => {
    const { session } = await stdioAgent();
    const dest = join(scratch, 'file-unsafe/dest');
    await expect(session.tarInFile(dest, join(scratch, 'no-such.tar'))).rejects.toMatchObject({
      name: 'AgentError',
      code: 'NOT_FOUND',
      op: 'tar-in-file',
    });
    await expect(session.tarInFile(dest, scratch)).rejects.toMatchObject({ code: 'INVALID' });
    await expect(session.tarInFile(dest, 'relative.tar')).rejects.toMatchObject({ code: 'INVALID' });
    const evil = join(scratch, 'evil.tar');
    await writeFile(evil, archive(entry('../x', '0', 'evil')));
    await expect(session.tarInFile(dest, evil)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await session.stat(join(scratch, 'file-unsafe/x'), false)).toBeNull();
  });

  it('writes a tarOutFile archive into a new file only, never through a symlink', async () => {
    const { session } = await stdioAgent();
    const src = join(scratch, 'out-file-src');
    await session.writeFile(join(src, 'a.bin'), Readable.from([randomBytes(200_000)]), { mode: 0o644, uid: 0, gid: 0 });
    const archive = join(scratch, 'out-file.tar');
    expect(await session.tarOutFile(src, archive)).toMatchObject({ entries: 2, bytes: 200_000 });
    expect((await stat(archive)).mode & 0o777).toBe(0o600);
    await expect(session.tarOutFile(src, archive)).rejects.toMatchObject({ name: 'AgentError', op: 'tar-out-file' });
    const victim = join(scratch, 'out-file-victim');
    await writeFile(victim, 'untouched');
    await symlink(victim, join(scratch, 'out-file-link.tar'));
    await expect(session.tarOutFile(src, join(scratch, 'out-file-link.tar'))).rejects.toBeInstanceOf(AgentError);
    expect(await readFile(victim, 'utf8')).toBe('untouched');
    await expect(session.tarOutFile(join(scratch, 'no-such-dir'), join(scratch, 'none.tar'))).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('refuses a tar entry that climbs out of the destination', async () => {
    const { session } = await stdioAgent();
    const dest = join(scratch, 'unsafe/dest');
    const err = await session
      .tarIn(dest, Readable.from([archive(entry('../x', '0', 'evil'))]))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ code: 'UNSAFE_PATH', op: 'tar-in' });
    expect(await session.stat(join(scratch, 'unsafe/x'), false)).toBeNull();
  });

  it('serves sessions on a unix socket with --listen', { timeout: 15_000 }, async () => {
    const socket = join(scratch, 'agent.sock');
    const child = await listeningAgent(socket);
    const [one, two] = await Promise.all([AgentSession.connect(socket), AgentSession.connect(socket)]);
    sessions.push(one, two);
    expect(one.info.pid).toBe(child.pid);
    const [a, b] = await Promise.all([
      run(one.exec(request(['echo', 'one']))),
      run(two.exec(request(['echo', 'two']))),
    ]);
    expect([a.stdout, b.stdout]).toEqual(['one\n', 'two\n']);
    // Closing one session leaves the other working.
    const running = one.exec(request(['sleep', '60']));
    one.close();
    await expect(running.exited).rejects.toBeInstanceOf(AgentTransportError);
    expect((await run(two.exec(request(['echo', 'still'])))).stdout).toBe('still\n');
    await expect(AgentSession.connect(join(scratch, 'no.sock'))).rejects.toBeInstanceOf(AgentTransportError);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await two.shutdown();
    await exited;
  });
});
