import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentBinaryPath } from '../src/agent-binary.js';
import { FakeAgent, type FakeFileOp } from './fake-agent.js';
import { archive, entry } from './tar-entries.js';

const binary = await agentBinaryPath().catch((err: Error) => {
  console.log(`skipping the host transfer tests: ${err.message}`);
  return undefined;
});

const children: ChildProcess[] = [];
const servers: Server[] = [];
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'execenv-host-transfer-'));
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const s of servers.splice(0)) s.close();
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** `execenv-agent --pull|--push SOCKET SRC DEST`: its exit status and the outcome's fields. */
function transfer(direction: 'pull' | 'push', socket: string, src: string, dest: string) {
  return new Promise<{ status: number | null; outcome: string[]; stderr: string }>((resolve) => {
    execFile(binary!, [`--${direction}`, socket, src, dest], (err, stdout, stderr) => {
      const status = err ? ((err as { code?: number }).code ?? null) : 0;
      resolve({ status, outcome: stdout.split('\0').filter((f) => f !== ''), stderr });
    });
  });
}

/** A real agent listening on a socket in scratch, serving with this host's root as `/`. */
async function listeningAgent(name: string): Promise<string> {
  const socket = join(scratch, `${name}.sock`);
  const child = spawn(binary!, ['--listen', socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => c.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the agent exited with ${code} before ready`)));
  });
  return socket;
}

/** A fake agent on a socket whose tar-out answers with `archive` and then `end`. */
async function hostileAgent(name: string, archive: Buffer, end = ['ok', 'entries=1', 'bytes=1']): Promise<string> {
  const socket = join(scratch, `${name}.sock`);
  const tarOut: FakeFileOp = { run: () => ({ output: archive, end }) };
  const server = createServer((conn) => {
    const agent = new FakeAgent({}, { 'tar-out': tarOut });
    conn.pipe(agent.fromClient);
    agent.toClient.pipe(conn);
    conn.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return socket;
}

describe.skipIf(!binary)('execenv-agent --pull and --push', () => {
  it('pulls a tree with modes, links and mtimes, and drops fifos', async () => {
    const socket = await listeningAgent('pull');
    const src = join(scratch, 'pull-src');
    await mkdir(join(src, 'sub', 'deep'), { recursive: true });
    await writeFile(join(src, 'sub', 'deep', 'file'), 'content');
    await chmod(join(src, 'sub', 'deep', 'file'), 0o4751);
    await link(join(src, 'sub', 'deep', 'file'), join(src, 'hard'));
    await symlink('sub/deep/file', join(src, 'relative'));
    await symlink('/etc/passwd', join(src, 'absolute'));
    await writeFile(join(src, 'big'), Buffer.alloc(3 << 20, 7));
    await chmod(join(src, 'sub'), 0o710);
    await new Promise((resolve, reject) =>
      execFile('mkfifo', [join(src, 'fifo')], (err) => (err ? reject(err) : resolve(undefined))),
    );
    const dest = join(scratch, 'pull-dest');
    await mkdir(dest);

    const r = await transfer('pull', socket, src, dest);

    expect(r).toMatchObject({
      status: 0,
      outcome: ['ok', expect.stringMatching(/^entries=\d+$/), `bytes=${(3 << 20) + 7}`],
    });
    expect((await readdir(dest)).sort()).toEqual(['absolute', 'big', 'hard', 'relative', 'sub']);
    expect(await readFile(join(dest, 'sub', 'deep', 'file'), 'utf8')).toBe('content');
    expect((await lstat(join(dest, 'sub', 'deep', 'file'))).mode & 0o7777).toBe(0o4751);
    expect((await lstat(join(dest, 'sub'))).mode & 0o7777).toBe(0o710);
    expect((await lstat(join(dest, 'hard'))).ino).toBe((await lstat(join(dest, 'sub', 'deep', 'file'))).ino);
    expect(await readlink(join(dest, 'relative'))).toBe('sub/deep/file');
    expect(await readlink(join(dest, 'absolute'))).toBe('/etc/passwd');
    expect((await readFile(join(dest, 'big'))).equals(Buffer.alloc(3 << 20, 7))).toBe(true);
    const seconds = async (path: string) => Math.floor((await lstat(path)).mtimeMs / 1000);
    expect(await seconds(join(dest, 'big'))).toBe(await seconds(join(src, 'big')));
  });

  it('pushes a host tree into the agent, and reports a missing source', async () => {
    const socket = await listeningAgent('push');
    const src = join(scratch, 'push-src');
    await mkdir(join(src, 'a'), { recursive: true });
    await writeFile(join(src, 'a', 'one'), 'one');
    await symlink('a/one', join(src, 'to-one'));
    const dest = join(scratch, 'push-dest', 'made');

    expect(await transfer('push', socket, src, dest)).toMatchObject({
      status: 0,
      outcome: ['ok', 'entries=4', 'bytes=3'],
    });
    expect(await readFile(join(dest, 'a', 'one'), 'utf8')).toBe('one');
    expect(await readlink(join(dest, 'to-one'))).toBe('a/one');

    const missing = await transfer('push', socket, join(scratch, 'no-such-dir'), join(scratch, 'push-dest2'));
    expect(missing).toMatchObject({
      status: 1,
      outcome: ['error', 'NOT_FOUND', expect.stringContaining('no-such-dir')],
    });
    await expect(lstat(join(scratch, 'push-dest2'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reports a pull of a missing path with the agent’s NOT_FOUND', async () => {
    const socket = await listeningAgent('missing');
    const dest = join(scratch, 'missing-dest');
    await mkdir(dest);
    const r = await transfer('pull', socket, join(scratch, 'nothing-here'), dest);
    expect(r).toMatchObject({ status: 1, outcome: ['error', 'NOT_FOUND', expect.stringContaining('nothing-here')] });
    expect(await readdir(dest)).toEqual([]);
  });

  it('refuses an archive entry that climbs out of the destination, writing nothing', async () => {
    const socket = await hostileAgent('climb', archive(entry('ok', '0', 'fine'), entry('../escaped', '0', 'evil')));
    const dest = join(scratch, 'climb', 'dest');
    await mkdir(dest, { recursive: true });
    const r = await transfer('pull', socket, '/anything', dest);
    expect(r).toMatchObject({ status: 1, outcome: ['error', 'UNSAFE_PATH', expect.stringContaining('../escaped')] });
    expect(await readdir(join(scratch, 'climb'))).toEqual(['dest']);
    expect(await readdir(dest)).toEqual([]);
  });

  it('never follows a symlink already in the destination', async () => {
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    const dest = join(scratch, 'planted');
    await mkdir(dest);
    await symlink(outside, join(dest, 'door'));
    const socket = await hostileAgent('planted', archive(entry('door/owned', '0', 'evil')));
    const r = await transfer('pull', socket, '/anything', dest);
    expect(r.status).toBe(1);
    expect(r.outcome[0]).toBe('error');
    expect(await readdir(outside)).toEqual([]);
  });

  it('makes no device node or fifo, and no link to one', async () => {
    const socket = await hostileAgent(
      'devices',
      archive(
        entry('disk', '4'),
        entry('tty', '3'),
        entry('pipe', '6'),
        entry('alias', '1', '', 'disk'),
        entry('kept', '0', 'x'),
      ),
    );
    const dest = join(scratch, 'devices');
    await mkdir(dest);
    const r = await transfer('pull', socket, '/anything', dest);
    expect(r).toMatchObject({ status: 0, outcome: ['ok', 'entries=5', 'bytes=1'] });
    expect(await readdir(dest)).toEqual(['kept']);
  });

  it('gives the source’s error when the agent fails mid-archive, and leaves nothing', async () => {
    const partial = Buffer.concat([
      entry('first', '0', 'one'),
      entry('second', '0', 'x'.repeat(4096)).subarray(0, 1024),
    ]);
    const socket = await hostileAgent('cut', partial, ['error', 'IO', 'read /x/second: Input/output error']);
    const dest = join(scratch, 'cut');
    await mkdir(dest);
    const r = await transfer('pull', socket, '/x', dest);
    expect(r).toMatchObject({ status: 1, outcome: ['error', 'IO', 'read /x/second: Input/output error'] });
    expect(await readdir(dest)).toEqual([]);
  });

  it('exits 2 naming the socket when no agent listens', async () => {
    const r = await transfer('pull', join(scratch, 'nobody.sock'), '/x', scratch);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('nobody.sock');
  });
});
