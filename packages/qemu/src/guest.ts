import { open } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { AgentSession } from '@execenv/agent';
import { ExecenvError, type ProcessRunner, type RunningProcess } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { type QemuMachine, qemuArgv } from './qemu-command.js';
import { QmpClient } from './qmp.js';

/** A running guest: its QEMU process, the agent session and QMP. */
export interface Guest {
  readonly process: RunningProcess;
  readonly session: AgentSession;
  readonly qmp: QmpClient;
  /**
   * Ends the guest and waits until QEMU is gone. `graceful` asks the agent to
   * shut down first, so the guest syncs its disk and powers off; otherwise,
   * or when that takes too long, QMP `quit`, and SIGKILL if QEMU lingers.
   */
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

/** How a guest is started. */
export interface GuestOptions {
  machine: QemuMachine;
  runner: ProcessRunner;
  /** Milliseconds from start to a ready agent. */
  bootTimeoutMs: number;
  /** Called with QEMU's pid as soon as it runs, before the guest is ready: record it in the lease. */
  onStarted?: (pid: number) => Promise<void>;
  /** Context of the errors. */
  envId?: string;
}

const QUIT_GRACE_MS = 5000;
const POWEROFF_GRACE_MS = 20_000;
const CONSOLE_TAIL = 3000;

/**
 * Starts QEMU and waits for the agent inside to answer on its serial port.
 * A guest that exits, or does not answer within the boot timeout, is
 * killed, and the error quotes the end of its console.
 * @throws ExecenvError TRANSPORT when QEMU or the guest fails, TIMEOUT when the boot takes too long.
 */
export async function startGuest(o: GuestOptions): Promise<Guest> {
  const argv = qemuArgv(o.machine);
  const proc = o.runner.spawn(argv, { env: { PATH: HOST_PATH }, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < CONSOLE_TAIL) stderr += c.toString();
  });
  const exited = proc.exited.then(
    (status) => status,
    (err: unknown) => ({ exitCode: null, signal: null, error: err }),
  );
  const kill = async () => {
    proc.kill('SIGKILL');
    await exited;
  };
  const context = { envId: o.envId, driver: 'qemu', op: 'open' };
  const failed = async (code: 'TRANSPORT' | 'TIMEOUT', what: string, cause?: unknown) => {
    await kill();
    const console = await consoleTail(o.machine.consoleLog);
    return new ExecenvError(
      code,
      `execenv: ${what}${stderr.trim() ? `\nqemu: ${stderr.trim()}` : ''}${console ? `\nguest console (end):\n${console}` : ''}`,
      { ...context, cause },
    );
  };
  const deadline = Date.now() + o.bootTimeoutMs;
  try {
    if (proc.pid && o.onStarted) await o.onStarted(proc.pid);
  } catch (err) {
    await kill();
    throw err;
  }
  let gone = false;
  void exited.then(() => (gone = true));
  const socket = await connectWhenListening(o.machine.agentSocket, deadline, () => gone);
  if (!socket)
    throw await failed(
      gone ? 'TRANSPORT' : 'TIMEOUT',
      gone ? 'QEMU exited while starting' : 'QEMU did not open its agent socket in time',
    );
  let qmp: QmpClient;
  try {
    // QEMU creates its sockets one after the other: QMP's may come a moment after the agent's.
    const qmpSocket = await connectWhenListening(o.machine.qmpSocket, deadline, () => gone);
    if (!qmpSocket) throw new Error(gone ? 'QEMU exited' : 'no QMP socket in time');
    qmp = await QmpClient.over(qmpSocket, Math.max(1000, deadline - Date.now()), o.machine.qmpSocket);
  } catch (err) {
    socket.destroy();
    throw await failed('TRANSPORT', 'QEMU did not answer on QMP', err);
  }
  let session: AgentSession;
  try {
    session = await Promise.race([
      AgentSession.over(socket, socket, { handshakeTimeoutMs: Math.max(1000, deadline - Date.now()) }),
      exited.then(() => {
        throw new Error('QEMU exited before the agent answered');
      }),
    ]);
  } catch (err) {
    socket.destroy();
    qmp.close();
    const timedOut = !gone && Date.now() >= deadline - 50;
    throw await failed(
      timedOut ? 'TIMEOUT' : 'TRANSPORT',
      timedOut
        ? `the guest's agent did not answer within ${o.bootTimeoutMs} ms`
        : `the guest did not come up: ${(err as Error).message}`,
      err,
    );
  }
  return {
    process: proc,
    session,
    qmp,
    async stop({ graceful = false } = {}) {
      if (graceful && !gone) {
        await session.shutdown().catch(() => {});
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, POWEROFF_GRACE_MS))]);
      }
      session.close();
      if (!gone) {
        await qmp.execute('quit').catch(() => {});
        const timer = setTimeout(() => proc.kill('SIGKILL'), QUIT_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      qmp.close();
    },
  };
}

/** Connects to a unix socket QEMU is about to create; undefined when the deadline passes or `gone()` says QEMU ended. */
async function connectWhenListening(path: string, deadline: number, gone: () => boolean): Promise<Socket | undefined> {
  while (Date.now() < deadline && !gone()) {
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket) return socket;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

/** The last lines of the guest's console, for errors. */
export async function consoleTail(path: string): Promise<string> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return '';
  try {
    const { size } = await file.stat();
    const length = Math.min(size, CONSOLE_TAIL);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, size - length);
    return buffer.toString('utf8').trim();
  } finally {
    await file.close();
  }
}
