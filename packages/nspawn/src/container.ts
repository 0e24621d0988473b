import {
  DriverUnavailableError,
  type ProcessRunner,
  processStartTime,
  type RunningProcess,
  TimeoutError,
} from '@execenv/core';
import type { NspawnMode } from './nspawn-options.js';
import { containerInit, type HostProcess } from './proc-tree.js';

/** The last bytes of the guest's output kept for error messages. */
const CONSOLE_TAIL = 16 * 1024;

/** How to start one container. */
export interface ContainerStart {
  /** systemd-nspawn's argv (nspawnArgv), with any prefix. */
  argv: readonly string[];
  /** systemd-nspawn's whole environment. */
  env: Record<string, string>;
  /** `plain` waits for the agent's "ready" line; `boot` for the booted init. */
  mode: NspawnMode;
  /** Milliseconds until open gives up, quoting what the guest printed. */
  timeoutMs: number;
  /** For error messages. */
  envId: string;
  /** Called when the processes exist, before waiting: they go into the lease right away. */
  onProcess?: (p: HostProcess) => Promise<void>;
  /** Stops the wait (killing nspawn) when it fires. */
  signal?: AbortSignal;
  /** How host processes are looked at. @default /proc (processStartTime, containerInit) */
  inspect?: ProcessInspector;
}

/** How startContainer looks at host processes; tests hand in their own. */
export interface ProcessInspector {
  /** A process's start time, undefined when it is gone. */
  startTime(pid: number): Promise<string | undefined>;
  /** The container's init below systemd-nspawn, undefined until it runs the image's program. */
  init(nspawnPid: number): Promise<HostProcess | undefined>;
}

const PROC: ProcessInspector = { startTime: processStartTime, init: (pid) => containerInit(pid) };

/** A running systemd-nspawn and the container's init. */
export interface Container {
  /** systemd-nspawn on the host. */
  readonly nspawn: HostProcess;
  /** The container's PID 1, as the host sees it. */
  readonly init: HostProcess;
  /** The last lines nspawn and the guest printed. */
  output(): string;
  /** Resolves when systemd-nspawn has exited. */
  readonly exited: Promise<unknown>;
  /**
   * Stops the container: in plain mode by closing the agent's stdin, in boot
   * mode by SIGTERM to nspawn (which signals the init); SIGKILL after
   * `graceMs`. Resolves once nspawn has exited.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts systemd-nspawn and waits until the container is ready for the
 * agent: in plain mode until the agent (the init) prints "ready", in boot
 * mode until the init runs the image's program. Fails with TIMEOUT or
 * DRIVER_UNAVAILABLE quoting what nspawn and the guest printed, after
 * killing what it started.
 */
export async function startContainer(runner: ProcessRunner, o: ContainerStart): Promise<Container> {
  const proc = runner.spawn(o.argv, { env: o.env, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
  let tail = '';
  const keep = (c: Buffer) => {
    tail = (tail + c.toString('utf8')).slice(-CONSOLE_TAIL);
  };
  proc.stderr?.on('data', keep);
  proc.stdout?.on('data', keep);
  let exited = false;
  // Listened for from the start: the line may come before the lease is written.
  const ready = o.mode === 'plain' ? readyLine(proc, o.timeoutMs) : Promise.resolve();
  ready.catch(() => {});
  const exitedPromise = proc.exited.then(
    (r) => {
      exited = true;
      return r;
    },
    (err: unknown) => {
      exited = true;
      return err;
    },
  );
  const kill = async () => {
    proc.kill('SIGKILL');
    await exitedPromise;
  };
  const inspect = o.inspect ?? PROC;
  const startTime = proc.pid ? await inspect.startTime(proc.pid) : undefined;
  const nspawn = proc.pid && startTime ? { pid: proc.pid, startTime } : undefined;
  if (!nspawn) {
    await kill();
    throw new DriverUnavailableError('nspawn', `systemd-nspawn did not start: ${tail.trim() || o.argv.join(' ')}`, {
      envId: o.envId,
      op: 'open',
    });
  }
  try {
    await o.onProcess?.(nspawn);
    await abortable(ready, o.signal);
    const init = await waitInit(
      o.timeoutMs,
      () => exited || o.signal?.aborted === true,
      () => inspect.init(nspawn.pid),
    );
    await o.onProcess?.(init);
    return {
      nspawn,
      init,
      output: () => tail,
      exited: exitedPromise,
      stop: (graceMs = 10_000) => stop(proc, o.mode, exitedPromise, graceMs),
    };
  } catch (err) {
    await kill();
    throw describeFailure(err, tail, o);
  }
}

/** Rejects as soon as `signal` fires, whatever `p` does. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new NotReady('exited'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

class NotReady extends Error {
  constructor(readonly why: 'exited' | 'timeout') {
    super(why);
  }
}

/** Resolves when the agent (the init, in plain mode) prints "ready"; rejects when nspawn exits first or on timeout. */
function readyLine(proc: RunningProcess, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new NotReady('timeout')), timeoutMs);
    const onData = (c: Buffer) => {
      out = (out + c.toString('utf8')).slice(-64);
      if (out.includes('ready\n')) {
        proc.stdout?.off('data', onData);
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout?.on('data', onData);
    const exited = () => {
      clearTimeout(timer);
      reject(new NotReady('exited'));
    };
    proc.exited.then(exited, exited);
  });
}

/** Polls for the container's init until it runs the image's program. */
async function waitInit(
  timeoutMs: number,
  hasExited: () => boolean,
  findInit: () => Promise<HostProcess | undefined>,
): Promise<HostProcess> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const init = await findInit();
    if (init) return init;
    if (hasExited()) throw new NotReady('exited');
    if (Date.now() > deadline) throw new NotReady('timeout');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function describeFailure(err: unknown, tail: string, o: ContainerStart): unknown {
  if (!(err instanceof NotReady)) return err;
  const printed = tail.trim() ? `; it printed:\n${tail.trim()}` : '; it printed nothing';
  const ctx = { envId: o.envId, driver: 'nspawn', op: 'open' };
  if (err.why === 'timeout')
    return new TimeoutError(
      `execenv: the nspawn container ${o.envId} was not ready after ${o.timeoutMs} ms${printed}`,
      ctx,
    );
  return new DriverUnavailableError('nspawn', `systemd-nspawn exited before ${o.envId} was ready${printed}`, ctx);
}

async function stop(proc: RunningProcess, mode: NspawnMode, exited: Promise<unknown>, graceMs: number) {
  if (mode === 'plain') proc.stdin?.end();
  else proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), graceMs);
  });
  const outcome = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (outcome === 'late') {
    proc.kill('SIGKILL');
    await exited;
  }
}
