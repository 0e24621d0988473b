import { DriverUnavailableError, type MountSpec, type ProcessRunner, processStartTime } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';

/** Longest path a unix socket address holds (sun_path less its NUL). */
export const MAX_SOCKET_PATH = 107;

/** Where and how an environment's agent runs. */
export interface AgentServerOptions {
  /** The agent binary for the environment's architecture. */
  binary: string;
  /** Argv that enters the namespace holding the mounts (empty in root mode). */
  enter: readonly string[];
  /** The environment's root as the agent's mount namespace sees it; the agent pivots into it. */
  root: string;
  /** Run commands under the 32-bit personality. */
  linux32: boolean;
  /** Network namespace file the agent joins; undefined shares the host's. */
  netns: string | undefined;
  /** Path of the unix socket to listen on, at most MAX_SOCKET_PATH bytes. */
  socket: string;
  /** Uid the socket is given to; undefined leaves it to the agent's own user. */
  owner: number | undefined;
  /** Host directories the agent binds into the root, targets resolved inside it. */
  binds: readonly MountSpec[];
}

/** A running agent: the init of the environment's mount and pid namespaces. */
export interface AgentServer {
  /** Host pid of the agent, and its start time, for the lease. */
  readonly process: { pid: number; startTime: string } | undefined;
  /** Stops the agent; its pid namespace, every command in it and its mounts go with it. */
  stop(): Promise<void>;
}

/** The agent's argv (PROTOCOL.md, "Command line"). */
export function agentArgv(o: AgentServerOptions): string[] {
  return [
    ...o.enter,
    o.binary,
    '--root',
    o.root,
    ...(o.netns ? ['--netns', o.netns] : []),
    ...(o.linux32 ? ['--personality', 'linux32'] : []),
    ...o.binds.flatMap((m) => [m.readOnly ? '--bind-ro' : '--bind', m.source, m.target]),
    '--listen',
    o.socket,
    ...(o.owner === undefined ? [] : ['--socket-owner', String(o.owner)]),
  ];
}

/**
 * Starts an environment's agent through the runner and waits until it
 * listens. The agent exits, killing everything inside, when its stdin closes:
 * on stop(), or when this process dies.
 */
export async function startAgentServer(runner: ProcessRunner, o: AgentServerOptions): Promise<AgentServer> {
  const argv = agentArgv(o);
  const proc = runner.spawn(argv, { env: { PATH: HOST_PATH }, stdin: 'pipe' });
  let stderr = '';
  const collectStderr = (c: Buffer) => (stderr += c.toString());
  proc.stderr?.on('data', collectStderr);
  const ready = new Promise<boolean>((resolve) => {
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready\n')) resolve(true);
    });
    proc.exited.then(
      () => resolve(false),
      () => resolve(false),
    );
  });
  if (!(await ready)) {
    await proc.exited.catch(() => {});
    throw new DriverUnavailableError('chroot', `the agent did not start: ${stderr.trim() || argv.join(' ')}`);
  }
  // Nothing more is expected on stdout; stderr carries only warnings. Keep reading so the agent never blocks.
  proc.stdout?.resume();
  proc.stderr?.off('data', collectStderr).resume();
  const startTime = proc.pid ? await processStartTime(proc.pid) : undefined;
  return {
    process: proc.pid && startTime ? { pid: proc.pid, startTime } : undefined,
    async stop() {
      proc.stdin?.end();
      await proc.exited.catch(() => {});
    },
  };
}
