import { type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';
import { AgentSession } from '@execenv/agent';
import { DriverUnavailableError, type RunningProcess } from '@execenv/core';
import { AGENT_PATH } from './container-args.js';
import type { PodmanCli } from './podman-cli.js';

/**
 * A connection to the agent of one container.
 *
 * @example
 * ```ts
 * import { type AgentLink, connectExec, connectSocket, PodmanCli } from '@execenv/podman';
 * function connect(cli: PodmanCli, container: string, socket?: string): Promise<AgentLink> {
 *   return socket ? connectSocket(cli, container, socket) : connectExec(cli, container);
 * }
 * const link = await connect(new PodmanCli({ connection: 'build-host' }), 'execenv-abc123');
 * console.log(`agent answered in ${await link.session.ping()} ms`);
 * await link.close();
 * ```
 */
export interface AgentLink {
  readonly session: AgentSession;
  /** Closes the session and whatever carries it. */
  close(): Promise<void>;
}

/** How long a container's agent has to answer after `podman start`. */
const READY_MS = 30_000;

/**
 * Connects to the agent listening on `socket` (a host path in the
 * container's bind-mounted runtime directory), retrying until it listens.
 * While it does not, the container's state is checked: an exited container
 * fails at once, with its log. `ended`, when given, replaces that check (a
 * podman process each time): it says why the podman run that holds the
 * container has ended, or undefined while it runs.
 *
 * @example
 * ```ts
 * import { connectSocket, PodmanCli } from '@execenv/podman';
 * // The container runs with /tmp/execenv-podman-x mounted at RUN_DIR (createArgs with runtimeDir).
 * const link = await connectSocket(new PodmanCli(), 'execenv-abc123', '/tmp/execenv-podman-x/agent.sock');
 * console.log(await link.session.readDir('/etc'));
 * await link.close();
 * ```
 */
export async function connectSocket(
  cli: PodmanCli,
  container: string,
  socket: string,
  ended?: () => string | undefined,
): Promise<AgentLink> {
  const deadline = Date.now() + READY_MS;
  let nextStateCheck = Date.now() + 250;
  // Woken as soon as the socket appears in its directory, not on the next poll.
  let wake: (() => void) | undefined;
  const watcher = watchDirectory(dirname(socket), () => wake?.());
  try {
    for (;;) {
      try {
        const session = await AgentSession.connect(socket);
        return {
          session,
          close: async () => session.close(),
        };
      } catch (err) {
        // Not listening yet: no socket, or the previous agent's socket file still there.
        const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
      }
      if (Date.now() > deadline) throw notReady(container, `no agent listening on ${socket} after ${READY_MS} ms`);
      const detail = ended?.();
      if (detail !== undefined) throw notReady(container, detail);
      if (!ended && Date.now() > nextStateCheck) {
        nextStateCheck = Date.now() + 250;
        await failIfExited(cli, container);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    watcher?.close();
  }
}

/** Calls `onChange` on every change in `dir`; undefined when it cannot be watched (polling alone then). */
function watchDirectory(dir: string, onChange: () => void): FSWatcher | undefined {
  try {
    return watch(dir, onChange).on('error', () => {});
  } catch {
    return undefined;
  }
}

/**
 * Runs a second agent in the container through one long-lived
 * `podman exec -i`, serving a session on its stdin and stdout: for a podman
 * that shares no directory with this host. Its commands run in the
 * container's namespaces and cgroup, children of that agent.
 *
 * @example
 * ```ts
 * import { connectExec, PodmanCli } from '@execenv/podman';
 * const cli = new PodmanCli({ url: 'ssh://builder@build-host/run/podman/podman.sock' });
 * const link = await connectExec(cli, 'execenv-abc123'); // the container runs, its agent copied in
 * try {
 *   console.log(await link.session.stat('/etc/os-release', true));
 * } finally {
 *   await link.close(); // the agent ends the exec session
 * }
 * ```
 */
export async function connectExec(cli: PodmanCli, container: string): Promise<AgentLink> {
  const proc: RunningProcess = cli.spawn(['exec', '-i', container, AGENT_PATH, '--stdio'], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exitedEarly = proc.exited.then(
    (r) => r,
    (err: unknown) => ({ exitCode: null, signal: String(err) }),
  );
  const session = await Promise.race([
    AgentSession.over(proc.stdout!, proc.stdin!),
    exitedEarly.then((r) => {
      throw notReady(container, `podman exec of the agent ended (${r.exitCode ?? r.signal}): ${stderr.trim()}`);
    }),
  ]).catch(async (err: unknown) => {
    proc.kill('SIGKILL');
    await exitedEarly;
    throw err;
  });
  return {
    session,
    close: async () => {
      // The agent must end the exec session itself: a remote podman does not pass the end of stdin on,
      // and an exec session whose process outlives the client leaves its conmon behind.
      await Promise.race([session.shutdown().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
      session.close();
      proc.stdin?.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exitedEarly;
      clearTimeout(timer);
    },
  };
}

async function failIfExited(cli: PodmanCli, container: string): Promise<void> {
  const state = await cli.run(['inspect', '--type', 'container', '--format', '{{.State.Status}}', container], {
    check: false,
  });
  const status = state.stdout.trim();
  if (state.exitCode === 0 && status !== 'exited' && status !== 'stopped') return;
  const logs = await cli.run(['logs', '--tail', '20', container], { check: false });
  throw notReady(container, `the container is ${status || 'gone'}: ${(logs.stderr + logs.stdout).trim()}`);
}

function notReady(container: string, detail: string): DriverUnavailableError {
  return new DriverUnavailableError('podman', `the agent of container ${container} did not start: ${detail}`);
}
