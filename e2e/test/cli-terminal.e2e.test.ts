import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball, minbaseTarball } from './fixtures.js';

const run = promisify(execFile);
/** The built command, or an installed one that EXECENV_CLI_BIN names. */
const BIN = process.env.EXECENV_CLI_BIN ?? fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

/** Mount points on the host, from /proc/self/mounts (paths without spaces, as the temporary ones here are). */
async function mountPoints(): Promise<string[]> {
  return (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[1]!);
}

// A tmux server of this file's own (-L): its sessions are real terminals a person would see, and
// killing it at the end touches no other tmux.
const SOCKET = `execenv-cli-e2e-${process.pid}-${randomBytes(4).toString('hex')}`;
const tmux = (...args: string[]) => run('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-cli-tty-'));
});
afterAll(async () => {
  // Closing the terminals hangs up every execenv still running in them, which closes its environment.
  await tmux('kill-server').catch(() => {});
  const state = join(work, 'state');
  for (let i = 0; i < 100 && (await mountPoints()).some((m) => m.startsWith(state)); i++)
    await new Promise((r) => setTimeout(r, 100));
  await run(process.execPath, [BIN, 'gc', '--driver', 'chroot'], { env: { ...process.env, EXECENV_STATE_DIR: state } });
  await rm(work, { recursive: true, force: true });
});

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Starts `execenv ARGS` in a new 100x30 terminal; when it ends the pane prints `EXIT=<code>` and
 * stays, so its last screen can be read.
 */
async function terminal(name: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  const vars = Object.entries({ EXECENV_STATE_DIR: join(work, 'state'), ...env }).map(([k, v]) => `${k}=${quote(v)}`);
  const command = `env ${vars.join(' ')} ${quote(process.execPath)} ${quote(BIN)} ${args.map(quote).join(' ')}; echo EXIT=$?; sleep 600`;
  await tmux('new-session', '-d', '-s', name, '-x', '100', '-y', '30', command);
}

/** The visible screen of a session, trailing blank lines dropped. */
async function screen(name: string): Promise<string> {
  return (await tmux('capture-pane', '-p', '-t', name)).stdout.replace(/\n+$/, '');
}

/** Waits until the screen matches, returning it; fails with the last screen after `ms`. */
async function waitFor(name: string, pattern: RegExp, ms = 60_000): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    last = await screen(name);
    if (pattern.test(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`screen of ${name} never matched ${pattern}:\n${last}`);
}

const type = (name: string, line: string) =>
  tmux('send-keys', '-t', name, '-l', line).then(() => tmux('send-keys', '-t', name, 'Enter'));

describe('execenv in a real terminal', () => {
  it('gives shell a terminal of its own in a Debian image: tty, size, line editing, exit code', async () => {
    await terminal('debian', ['shell', '--image', minbaseTarball()]);
    await waitFor('debian', /root@[^:]+:\/#$/m);
    await type('debian', 'tty; stty size; echo "term=$TERM"');
    const s = await waitFor('debian', /term=\S+\n.*#$/);
    expect(s).toMatch(/\n\/dev\/pts\/\d+\n30 100\nterm=(tmux|screen)/);
    // Raw mode: a control key reaches the shell inside, which clears the line as a terminal does.
    await tmux('send-keys', '-t', 'debian', '-l', 'echo never-run');
    await tmux('send-keys', '-t', 'debian', 'C-c');
    await type('debian', 'exit 7');
    const end = await waitFor('debian', /EXIT=\d+/);
    expect(end).toContain('EXIT=7');
    expect(end).not.toMatch(/^never-run$/m);
    // The boot progress was cleared: nothing but the shell's own output is left.
    expect(end).not.toContain('starting chroot environment');
  });

  it('closes the environment when its terminal goes away (SIGHUP)', async () => {
    // A state directory of its own: only this terminal's environment is looked for.
    const state = join(work, 'hangup-state');
    await terminal('hangup', ['shell', '--image', busyboxTarball()], { EXECENV_STATE_DIR: state });
    await waitFor('hangup', /^\/ #/m);
    expect((await mountPoints()).some((m) => m.startsWith(state))).toBe(true);
    await tmux('kill-session', '-t', 'hangup');
    let left = true;
    for (let i = 0; i < 300 && left; i++) {
      left = (await mountPoints()).some((m) => m.startsWith(state));
      if (left) await new Promise((r) => setTimeout(r, 100));
    }
    expect(left).toBe(false);
  });

  it('falls back to a shell over pipes where the image has no script, and says so', async () => {
    await terminal('busybox', ['shell', '--image', busyboxTarball()]);
    const start = await waitFor('busybox', /^\/ #/m);
    expect(start).toMatch(/has no util-linux script: \/bin\/sh runs without a terminal/);
    await type('busybox', 'echo sum=$((40+2)); tty');
    expect(await waitFor('busybox', /not a tty/)).toContain('sum=42');
    await type('busybox', 'exit 5');
    expect(await waitFor('busybox', /EXIT=\d+/)).toContain('EXIT=5');
  });

  it('shows conversion progress as a finished bar, then the command output on a clean line', async () => {
    const cache = join(work, 'fresh-cache');
    await terminal('progress', ['run', '--image', busyboxTarball('.xz'), '--', 'echo', 'command-output'], {
      EXECENV_CACHE_DIR: cache,
    });
    const s = await waitFor('progress', /EXIT=\d+/);
    const lines = s.split('\n');
    expect(lines).toEqual(['✔ converting busybox.tar.xz (xz → directory): done', 'command-output', 'EXIT=0']);
  });

  it('prints plain lines instead of bars when stderr is not a terminal', async () => {
    const cache = join(work, 'fresh-cache-2');
    // stderr piped through cat: no terminal, so no cursor movement, only lines.
    const vars = `EXECENV_STATE_DIR=${quote(join(work, 'state'))} EXECENV_CACHE_DIR=${quote(cache)}`;
    await tmux(
      'new-session',
      '-d',
      '-s',
      'plain',
      '-x',
      '100',
      '-y',
      '30',
      // The status is execenv's, taken inside the braces, not cat's.
      `{ env ${vars} ${quote(process.execPath)} ${quote(BIN)} run --image ${quote(busyboxTarball('.gz'))} -- echo command-output 2>&1; echo EXIT=$?; } | cat; sleep 600`,
    );
    const s = await waitFor('plain', /EXIT=\d+/);
    expect(s.split('\n')).toEqual([
      'execenv: converting busybox.tar.gz (gzip → directory)',
      'command-output',
      'EXIT=0',
    ]);
  });
});
