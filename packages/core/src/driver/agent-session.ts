import type { Readable } from 'node:stream';
import type { RunningProcess } from '../runner.js';

/**
 * What an agent needs to start one command inside the environment.
 *
 * @example
 * ```ts
 * import { type AgentExecRequest, DEFAULT_PATH } from '@execenv/core/driver';
 * const nobody = { uid: 65534, gid: 65534, groups: [] };
 * const request: AgentExecRequest = { cwd: '/tmp', ...nobody, env: { PATH: DEFAULT_PATH }, argv: ['id', '-u'] };
 * const proc = session.exec(request); // a RunningProcess: stdout, stderr, exited
 * ```
 */
export interface AgentExecRequest {
  /** Working directory inside the environment. */
  cwd: string;
  /** User id the command runs as. */
  uid: number;
  /** Group id the command runs as. */
  gid: number;
  /** Supplementary group ids. */
  groups: readonly number[];
  /** The command's whole environment. */
  env: Readonly<Record<string, string>>;
  /** The command and its arguments. */
  argv: readonly string[];
}

/**
 * A path inside the environment as the agent describes it.
 *
 * @example
 * ```ts
 * import type { AgentFileStat } from '@execenv/core/driver';
 * const st: AgentFileStat | null = await session.stat('/etc/os-release', true);
 * if (st?.type === 'file') console.log(st.size, (st.mode & 0o7777).toString(8)); // e.g. 267 '644'
 * ```
 */
export interface AgentFileStat {
  /** The kind of entry. */
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits, including setuid/setgid/sticky. */
  mode: number;
  /** Owner uid inside the environment. */
  uid: number;
  /** Owner gid inside the environment. */
  gid: number;
  /** Size in bytes (file) or link length (symlink). */
  size: number;
  /** Modification time. */
  mtime: Date;
  /** Link target of a symlink. */
  target?: string;
}

/**
 * Owner and mode of a file an agent writes.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { Readable } from 'node:stream';
 * import type { AgentWriteOptions } from '@execenv/core/driver';
 * const rootOwned: AgentWriteOptions = { mode: 0o644, uid: 0, gid: 0 };
 * await session.writeFile('/etc/resolv.conf', Readable.from([await readFile('/etc/resolv.conf')]), rootOwned);
 * ```
 */
export interface AgentWriteOptions {
  /** Permission bits. */
  mode: number;
  /** Owner uid inside the environment. */
  uid: number;
  /** Owner gid inside the environment. */
  gid: number;
}

/**
 * AgentSessionLike is the part of an agent connection an agent-backed
 * environment uses, typed structurally so core does not depend on the agent
 * package (`@execenv/agent`'s AgentSession satisfies it) and tests can hand
 * in a fake. Operations reject with an error named `AgentError` carrying a
 * `code` (`NOT_FOUND`, `UNSAFE_PATH`, `CONFLICT`, `INVALID`, `IO`), or one named
 * `AgentTransportError` when the connection to the agent is lost.
 *
 * @example
 * ```ts
 * import { AgentSession } from '@execenv/agent';
 * import { AgentEnvironment, type AgentSessionLike } from '@execenv/core/driver';
 * // @execenv/agent's session in a driver; a FakeAgentSession from @execenv/core/testing in its unit tests.
 * const session: AgentSessionLike = await AgentSession.connect(socket);
 * const env = new AgentEnvironment({ id, driver: 'foo', capabilities: ['isolation-container'], session, destroy });
 * ```
 */
export interface AgentSessionLike {
  /** Starts a command; `kill()` or `kill('SIGKILL')` kills its whole tree, another signal goes to the command. */
  exec(request: AgentExecRequest): RunningProcess;
  /** Writes a file atomically, creating missing parents; follows a final symlink inside the environment. */
  writeFile(path: string, content: Readable, opts: AgentWriteOptions): Promise<void>;
  /** Streams a file's content; `done` gives its mode and size once read whole. */
  readFile(path: string): { content: Readable; done: Promise<{ mode: number; size: number }> };
  /** Describes a path, following a final symlink when `follow`; null when it does not exist. */
  stat(path: string, follow: boolean): Promise<AgentFileStat | null>;
  /** Names in a directory, sorted. */
  readDir(path: string): Promise<string[]>;
  /** Creates a directory and its missing parents. */
  mkdir(path: string, mode: number): Promise<void>;
  /** Removes a file, symlink or whole tree; a missing path is not an error. */
  remove(path: string): Promise<void>;
  /** Streams a path as a tar archive (see PROTOCOL.md, tar-out). */
  tarOut(path: string): Readable;
  /** Extracts a tar archive into destDir, refusing unsafe entries. */
  tarIn(destDir: string, tar: Readable): Promise<{ entries: number; bytes: number }>;
  /**
   * Copies a host directory's tree into destDir, as `tarIn` of its archive
   * would. Optional: a session with a faster way to move a host tree than a
   * tar stream through the connection (a share the environment reads) has
   * it; without it, pushes of directories go through `tarIn`.
   */
  pushDirectory?(dir: string, destDir: string): Promise<{ entries: number; bytes: number }>;
  /** Closes the connection; the agent kills what this session still runs. */
  close(): void;
}
