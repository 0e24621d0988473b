import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// Rootless mode as an unprivileged user with subordinate ids (tools/setup-host.sh
// creates execenv-e2e): there, the host side cannot delete the files that
// subordinate ids own inside the environment, and close() and gc() must still
// leave nothing behind.
const USER = 'execenv-e2e';
const script = join(import.meta.dirname, '..', 'scripts', 'rootless-as-user.mjs');
const run = promisify(execFile);
let work: string;
let ids: { uid: string; gid: string } | undefined;
let skipReason = '';

beforeAll(async () => {
  if (process.getuid?.() !== 0) skipReason = 'switching to an unprivileged user needs root';
  else
    try {
      ids = {
        uid: (await run('id', ['-u', USER])).stdout.trim(),
        gid: (await run('id', ['-g', USER])).stdout.trim(),
      };
    } catch {
      skipReason = `no user ${USER}: run tools/setup-host.sh`;
    }
  if (!skipReason) {
    // The user runs the script and the packages from this checkout, which must be readable to it.
    const canRead = await run('setpriv', [
      `--reuid=${ids!.uid}`,
      `--regid=${ids!.gid}`,
      '--clear-groups',
      '--',
      process.execPath,
      '-e',
      `require('node:fs').accessSync(${JSON.stringify(script)}, require('node:fs').constants.R_OK)`,
    ]).then(
      () => true,
      () => false,
    );
    if (!canRead) skipReason = `${USER} cannot read ${script}: a parent directory is not world-readable`;
  }
  if (skipReason) console.log(`skipping unprivileged rootless scenarios: ${skipReason}`);
  work = await mkdtemp(join(tmpdir(), 'execenv-e2e-unprivileged-'));
  await chmod(work, 0o777);
  // The fixture lives in root's home; the user gets a copy it can read.
  await copyFile(busyboxTarball(), join(work, 'busybox.tar'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Starts the script as the unprivileged user (setpriv execs, so the pid is the script's own). */
function asUser(action: string, stateDir: string): ChildProcess {
  if (!ids) throw new Error('no unprivileged user');
  return spawn(
    'setpriv',
    [
      `--reuid=${ids.uid}`,
      `--regid=${ids.gid}`,
      '--clear-groups',
      '--',
      process.execPath,
      script,
      action,
      join(work, 'busybox.tar'),
      stateDir,
      join(work, 'cache'),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work } },
  );
}

/** The JSON line the script prints first. */
async function reportOf(p: ChildProcess): Promise<Record<string, unknown>> {
  let out = '';
  for await (const chunk of p.stdout!) {
    out += chunk;
    if (out.includes('\n')) break;
  }
  return JSON.parse(out.split('\n')[0]!);
}

describe('chroot rootless mode as an unprivileged user', () => {
  it('close() removes what subordinate ids own, after a revert too', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const p = asUser('close', join(work, 'state-close'));
    const exited = once(p, 'exit');
    const report = await reportOf(p);
    await exited;
    expect(report).toMatchObject({ owners: ['1000', '1000'], closeError: null, left: [] });
    expect(report.uid).toBe(Number(ids!.uid));
  });

  it('gc() removes what a SIGKILLed unprivileged owner left', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const stateDir = join(work, 'state-gc');
    const holder = asUser('hold', stateDir);
    const held = await reportOf(holder);
    expect(held).toMatchObject({ owners: ['1000'] });
    expect(held.left).toHaveLength(1);
    const exited = once(holder, 'exit');
    holder.kill('SIGKILL');
    await exited;
    const collector = asUser('gc', stateDir);
    const report = await reportOf(collector);
    expect(report).toEqual({ uid: Number(ids!.uid), removed: held.left, errors: [], left: [] });
  });
});
