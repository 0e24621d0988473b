import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { commandEnd, signalName } from '../../src/driver/exit-status.js';
import { isolationOf } from '../../src/driver/isolation.js';
import { pipeStdio } from '../../src/driver/pipe-stdio.js';
import { refuseUnsupported, unsupportedField } from '../../src/driver/unsupported.js';

describe('commandEnd', () => {
  it('keeps 137 an exit code when the backend does not say the command was signalled', () => {
    expect(commandEnd(137, false)).toEqual({ exitCode: 137, signal: null });
    expect(commandEnd(0, false)).toEqual({ exitCode: 0, signal: null });
  });

  it('maps 128+n and n to the signal when the backend says it was signalled', () => {
    expect(commandEnd(137, true)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(commandEnd(143, true)).toEqual({ exitCode: null, signal: 'SIGTERM' });
    expect(commandEnd(9, true)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(signalName(2)).toBe('SIGINT');
  });

  it('leaves a status that names no signal as it is', () => {
    expect(commandEnd(250, true)).toEqual({ exitCode: 250, signal: null });
  });
});

describe('isolationOf', () => {
  it('returns the one isolation capability', () => {
    expect(isolationOf('foo', ['root', 'isolation-container'])).toBe('isolation-container');
  });

  it('refuses none, or two, naming the driver', () => {
    expect(() => isolationOf('foo', ['root'])).toThrow(/"foo" driver declares no isolation capability/);
    expect(() => isolationOf('foo', ['isolation-chroot', 'isolation-machine'])).toThrow(
      /declares isolation-chroot, isolation-machine; declare exactly one/,
    );
  });
});

describe('unsupported spec fields', () => {
  it('is UNSUPPORTED naming the field', () => {
    const err = unsupportedField('foo', 'mounts');
    expect(err).toMatchObject({ code: 'UNSUPPORTED', field: 'mounts', capability: 'spec.mounts' });
    expect(err.message).toBe('execenv: spec.mounts is not supported by the "foo" driver');
  });

  it('refuses the first field the spec sets, ignoring empty lists', () => {
    expect(() => refuseUnsupported('foo', { mounts: [] }, ['mounts', 'resources'])).not.toThrow();
    expect(() => refuseUnsupported('foo', { resources: { cpu: 1 } }, ['mounts', 'resources'])).toThrow(
      /spec.resources is not supported/,
    );
  });
});

/** Runs argv with the pipes as its stdio; resolves with what it wrote. */
async function runThrough(argv: string[], owner?: { uid: number; gid: number }) {
  const stdio = await pipeStdio({ owner });
  try {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [...stdio.fds],
      ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
    });
    await stdio.closeCommandEnds();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdio.stdout.on('data', (c: Buffer) => out.push(c));
    stdio.stderr.on('data', (c: Buffer) => err.push(c));
    // Ended only after the command: reopening a pipe whose writer has gone would block its open.
    stdio.stdin.write('in\n');
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    stdio.stdin.end();
    await Promise.all(
      [stdio.stdout, stdio.stderr].map((s) => new Promise((r) => (s.readableEnded ? r(0) : s.on('end', r)))),
    );
    return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  } finally {
    await stdio.dispose();
  }
}

describe('pipeStdio', () => {
  const script = ['sh', '-c', 'echo out > /dev/stdout; echo err > /dev/stderr; head -n 1 /dev/stdin'];

  it('lets a command reopen /dev/stdout, /dev/stderr and /dev/stdin', async () => {
    expect(await runThrough(script)).toEqual({ code: 0, stdout: 'out\nin\n', stderr: 'err\n' });
  });

  it.skipIf(process.getuid?.() !== 0)('lets a command running as nobody reopen them too', async () => {
    expect(await runThrough(script, { uid: 65534, gid: 65534 })).toEqual({
      code: 0,
      stdout: 'out\nin\n',
      stderr: 'err\n',
    });
  });
});
