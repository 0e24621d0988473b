import { type ErrorContext, ExecenvError, TransportError } from '../errors.js';
import type { ProcessRunner } from '../runner.js';
import { hostEnv } from './host.js';
import { outcomeCodeError } from './outcome-error.js';

/**
 * An agent this host reaches through a unix socket, and an agent binary
 * that runs on this host. With it, directory pushes and pulls run
 * `execenv-agent --push|--pull SOCKET SRC DEST` on the host: the archive
 * goes from one agent process straight to the other, through no pipe of
 * this process, and the host side packs and extracts with the agent's own
 * tar code (an extraction follows no symlink already in DEST and makes no
 * device node or fifo).
 *
 * @example
 * ```ts
 * import { agentBinaryPath } from '@execenv/agent';
 * import type { HostAgentLink } from '@execenv/core/driver';
 * const link: HostAgentLink = { socket: '/run/execenv/env-1/agent.sock', binary: await agentBinaryPath() };
 * ```
 */
export interface HostAgentLink {
  /** The unix socket the agent listens on. */
  socket: string;
  /** An execenv-agent binary for this host's architecture. */
  binary: string;
}

/**
 * What a directory transfer moved.
 *
 * @example
 * ```ts
 * import { hostTransfer, type TransferCounts } from '@execenv/core/driver';
 * const moved: TransferCounts = await hostTransfer(runner, link, 'push', '/srv/src', '/build', { op: 'push' }, 'archive');
 * env.emit({ type: 'copy', envId: env.id, direction: 'push', path: '/build', bytes: moved.bytes });
 * ```
 */
export interface TransferCounts {
  /** Archive entries. */
  entries: number;
  /** Bytes of file content. */
  bytes: number;
}

/**
 * Runs one directory transfer through a HostAgentLink: `pull` extracts the
 * environment's `src` into the host directory `dest` (new or empty),
 * `push` packs the host directory `src` into `dest` inside the
 * environment. The agent's outcome becomes the SDK's error for
 * `context.op` (NotFoundError, UnsafePathError, InvalidSpecError naming
 * `field`, ExecenvError EXEC_FAILED); a host side that could not talk to
 * the agent a TransportError quoting its stderr.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { hostTransfer } from '@execenv/core/driver';
 * const counts = await hostTransfer(hostRunner(), link, 'pull', '/var/log', '/tmp/logs', { op: 'pull', envId: 'env-1' }, 'src');
 * console.log(`${counts.entries} entries, ${counts.bytes} bytes`);
 * ```
 */
export async function hostTransfer(
  runner: ProcessRunner,
  link: HostAgentLink,
  direction: 'push' | 'pull',
  src: string,
  dest: string,
  context: ErrorContext & { op: string },
  field: string,
): Promise<TransferCounts> {
  const argv = [link.binary, `--${direction}`, link.socket, src, dest];
  const result = await runner.run(argv, { env: hostEnv(), check: false });
  const [kind, ...fields] = result.stdout.split('\0');
  const inside = direction === 'pull' ? src : dest;
  if (result.exitCode === 0 && kind === 'ok') {
    const value = (key: string) => Number(fields.find((f) => f.startsWith(`${key}=`))?.slice(key.length + 1) ?? 0);
    return { entries: value('entries'), bytes: value('bytes') };
  }
  if (result.exitCode === 1 && kind === 'error') {
    const [code = 'IO', ...message] = fields.filter((f) => f !== '');
    return Promise.reject(outcomeCodeError(code, message.join(' ') || 'failed', context, inside, field));
  }
  const how = result.signal ? `killed by ${result.signal}` : `exit status ${result.exitCode}`;
  const detail = result.stderr.trim() || how;
  const message = `execenv: ${context.op} ${inside}: the host side of the transfer failed (${how}): ${detail}`;
  return Promise.reject(
    result.exitCode === 2 ? new TransportError(message, context) : new ExecenvError('EXEC_FAILED', message, context),
  );
}
