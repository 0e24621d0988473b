import { AbortedError, DriverUnavailableError, TimeoutError } from '@execenv/core';
import { type AgentSessionLike, DEFAULT_PATH } from '@execenv/core/driver';

/** What waitUntilBooted needs besides the session. */
export interface BootWait {
  /** For error messages. */
  envId: string;
  /** Milliseconds to wait for the system to come up, as the caller asked (for messages). */
  timeoutMs: number;
  /** When to give up (Date.now() milliseconds). @default now + timeoutMs */
  deadline?: number;
  /** What the guest printed on its console so far, quoted when it does not come up. */
  console: () => string;
  /** Stops the wait (rejecting) when it fires. */
  signal?: AbortSignal;
}

/** States of `systemctl is-system-running` in which a booted container is ready for commands. */
const UP = new Set(['running', 'degraded']);

/**
 * What systemctl says before systemd is far enough to answer: no private
 * socket yet ("Failed to connect to bus"), or no /run/systemd/system yet
 * ("offline").
 */
const NOT_YET = /Failed to connect to bus|^offline$/m;

/** Pause between asks while systemd is not listening yet. */
const RETRY_MS = 20;

/**
 * Waits, through the agent, until `systemctl is-system-running --wait` says
 * the booted system is up (`running`, or `degraded` when some unit failed).
 * Asks again while systemd does not listen on its bus yet. Fails with
 * TIMEOUT, or DRIVER_UNAVAILABLE for any other state, quoting the guest's
 * console.
 */
export async function waitUntilBooted(session: AgentSessionLike, o: BootWait): Promise<void> {
  const deadline = o.deadline ?? Date.now() + o.timeoutMs;
  const ctx = { envId: o.envId, driver: 'nspawn', op: 'open' };
  const guest = () => {
    const printed = o.console().trim();
    return printed ? `; its console said:\n${printed}` : '; its console said nothing';
  };
  for (;;) {
    if (o.signal?.aborted) throw new AbortedError(`execenv: booting ${o.envId} was aborted`, ctx);
    const left = deadline - Date.now();
    const asked = left > 0 ? await isSystemRunning(session, left, o.signal) : undefined;
    if (o.signal?.aborted) throw new AbortedError(`execenv: booting ${o.envId} was aborted`, ctx);
    if (!asked)
      throw new TimeoutError(`execenv: ${o.envId} did not finish booting within ${o.timeoutMs} ms${guest()}`, ctx);
    if (UP.has(asked.state)) return;
    if (NOT_YET.test(asked.output) && asked.exitCode !== 127) {
      await new Promise((r) => setTimeout(r, RETRY_MS));
      continue;
    }
    const why =
      asked.exitCode === 127
        ? 'the image has no systemctl: boot mode needs an image with systemd (use plain mode for others)'
        : `systemctl is-system-running says "${asked.state || asked.output.trim()}"`;
    throw new DriverUnavailableError('nspawn', `${o.envId} did not boot: ${why}${guest()}`, ctx);
  }
}

/** One `systemctl is-system-running --wait`; undefined when it ran past `timeoutMs` (it is killed). */
async function isSystemRunning(
  session: AgentSessionLike,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<{ state: string; output: string; exitCode: number | null } | undefined> {
  const proc = session.exec({
    cwd: '/',
    uid: 0,
    gid: 0,
    groups: [],
    env: { PATH: DEFAULT_PATH },
    argv: ['systemctl', 'is-system-running', '--wait'],
  });
  proc.stdin?.end();
  let stdout = '';
  let output = '';
  proc.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
    output += c.toString('utf8');
  });
  proc.stderr?.on('data', (c: Buffer) => {
    output += c.toString('utf8');
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, timeoutMs);
  const abort = () => proc.kill('SIGKILL');
  signal?.addEventListener('abort', abort, { once: true });
  const ended = await proc.exited.finally(() => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  });
  if (timedOut) return undefined;
  return { state: stdout.trim().split('\n').pop()?.trim() ?? '', output, exitCode: ended.exitCode };
}
