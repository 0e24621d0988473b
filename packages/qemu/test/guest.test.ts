import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { ProcessRunner, RunningProcess } from '@execenv/core';
import { afterAll, describe, expect, it } from 'vitest';
import { startGuest } from '../src/guest.js';
import type { QemuMachine } from '../src/qemu-command.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-guest-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

function machine(dir: string): QemuMachine {
  return {
    binary: 'qemu-system-x86_64',
    machine: 'microvm',
    accel: 'tcg',
    cpus: 1,
    memoryMiB: 256,
    kernel: { image: '/k/vmlinux', elf: true, modulesDir: '/k/m', release: '6.1' },
    initramfs: '/k/initramfs',
    disk: join(dir, 'disk.qcow2'),
    agentSocket: join(dir, 'agent.sock'),
    qmpSocket: join(dir, 'qmp.sock'),
    consoleLog: join(dir, 'console.log'),
  };
}

/** A runner whose one process prints `stderr`, then exits after `exitAfterMs` (never, when undefined). */
function fakeRunner(stderr: string, exitAfterMs?: number) {
  const spawned: (readonly string[])[] = [];
  const kills: string[] = [];
  const runner: ProcessRunner = {
    run: () => Promise.reject(new Error('not used')),
    spawn(argv) {
      spawned.push(argv);
      const err = new PassThrough();
      err.end(stderr);
      let exit!: (s: { exitCode: number | null; signal: string | null }) => void;
      const exited = new Promise<{ exitCode: number | null; signal: string | null }>((r) => (exit = r));
      if (exitAfterMs !== undefined) setTimeout(() => exit({ exitCode: 1, signal: null }), exitAfterMs);
      const proc: RunningProcess = {
        pid: 4242,
        stdin: null,
        stdout: null,
        stderr: err,
        kill: (signal) => {
          kills.push(signal ?? 'SIGTERM');
          exit({ exitCode: null, signal: signal ?? 'SIGTERM' });
          return true;
        },
        exited,
      };
      return proc;
    },
  };
  return { runner, spawned, kills };
}

describe('startGuest', () => {
  it('reports a QEMU that exits while starting, with its stderr and the console', async () => {
    const dir = await mkdtemp(join(scratch, 'exit-'));
    await writeFile(join(dir, 'console.log'), 'execenv-init: cannot mount the root disk /dev/vda\n');
    const { runner, spawned } = fakeRunner('qemu-system-x86_64: -drive id=root: Could not open disk', 50);
    const started: number[] = [];
    const failure = await startGuest({
      machine: machine(dir),
      runner,
      bootTimeoutMs: 5000,
      envId: 'execenv-test',
      onStarted: async (pid) => void started.push(pid),
    }).catch((err: unknown) => err);
    expect(failure).toMatchObject({ code: 'TRANSPORT', envId: 'execenv-test', driver: 'qemu', op: 'open' });
    const message = (failure as Error).message;
    expect(message).toMatch(/QEMU exited while starting/);
    expect(message).toMatch(/qemu: qemu-system-x86_64: -drive id=root: Could not open disk/);
    expect(message).toMatch(/guest console \(end\):\nexecenv-init: cannot mount the root disk/);
    expect(spawned[0]![0]).toBe('qemu-system-x86_64');
    expect(started).toEqual([4242]);
  });

  it('kills a guest that does not come up within the boot timeout', async () => {
    const dir = await mkdtemp(join(scratch, 'slow-'));
    const { runner, kills } = fakeRunner('');
    const failure = await startGuest({ machine: machine(dir), runner, bootTimeoutMs: 300 }).catch(
      (err: unknown) => err,
    );
    expect(failure).toMatchObject({ code: 'TIMEOUT' });
    expect((failure as Error).message).toMatch(/did not open its agent socket in time/);
    expect(kills).toEqual(['SIGKILL']);
  });
});
