import type { Readable } from 'node:stream';
import {
  type ErrorContext,
  ExecenvError,
  type FileOptions,
  InvalidSpecError,
  NotFoundError,
  TransportError,
  UnsupportedError,
  withContext,
} from '@execenv/core';
import { AgentEnvironment, type AgentEnvironmentInit } from '@execenv/core/driver';
import { LxdApiError, type LxdClient, LxdConnectionError } from './lxd-client.js';
import { LxdFiles } from './lxd-files.js';

/**
 * What an LxdEnvironment is made of once its instance runs and its agent answers.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { LxdEnvironment } from '@execenv/lxd';
 * // What LxdDriver.open does once the instance runs:
 * const agent = await startLxdAgent(client, id);
 * const env = new LxdEnvironment({
 *   id, driver: 'lxd', capabilities: ['isolation-container', 'root'], session: agent.session,
 *   instance: id, hostRunner: hostRunner(),
 *   destroy: async () => { await agent.close(); await lease.release(undo); },
 * });
 * ```
 */
export interface LxdEnvironmentInit extends AgentEnvironmentInit {
  /** The daemon the instance runs on: pushed file content goes through its files API. */
  client: LxdClient;
  /** The instance name (the environment id). */
  instance: string;
  /** Publishes the instance as an image; present when the environment is Publishable. */
  publish?: (alias: string) => Promise<string>;
}

/**
 * LxdEnvironment is one LXD instance with the execenv agent running inside
 * it, started through one exec of the daemon's API: commands are the
 * agent's children, in the instance's namespaces and cgroup; files and
 * archives are read and written by the agent, which resolves every path
 * inside the instance. Pushed file content goes through the daemon's files
 * API instead, which resolves paths inside the instance too and moves bulk
 * bytes faster than the exec websockets.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import type { LxdEnvironment } from '@execenv/lxd';
 * const env = (await open('lxd', { image: './busybox.tar' })) as LxdEnvironment;
 * try {
 *   console.log(env.instance, (await env.exec(['uname', '-n'])).stdout);
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class LxdEnvironment extends AgentEnvironment {
  readonly #init: LxdEnvironmentInit;

  readonly #files: LxdFiles;

  constructor(init: LxdEnvironmentInit) {
    super(init);
    this.#init = init;
    this.#files = new LxdFiles(init.client, init.instance);
  }

  protected override async writeFileContent(content: Readable, dest: string, opts: Required<FileOptions>) {
    const ctx = { envId: this.id, driver: this.driver, op: 'push' };
    try {
      await this.#files.write(dest, content, opts);
    } catch (err) {
      throw lxdFileError(err, ctx, dest);
    }
    // The files API keeps only the permission bits: setuid, setgid and sticky are set by the agent.
    if (opts.mode & 0o7000) {
      const r = await this.exec(['chmod', (opts.mode & 0o7777).toString(8), dest], { stdin: 'ignore' });
      if (r.exitCode !== 0)
        throw new ExecenvError('EXEC_FAILED', `execenv: push ${dest} in ${this.id}: chmod: ${r.stderr.trim()}`, ctx);
    }
  }

  /** The LXD instance name. */
  get instance(): string {
    return this.#init.instance;
  }

  /**
   * Publishes the instance's current state as an image under `alias`; returns `lxd:<alias>`.
   *
   * @example
   * ```ts
   * await env.exec(['sh', '-c', 'echo prepared > /etc/motd']);
   * const image = await env.publish('my-template'); // 'lxd:my-template'
   * const next = await open('lxd', { image });
   * ```
   */
  async publish(alias: string): Promise<string> {
    this.ensureOpen('publish');
    if (!this.#init.publish)
      throw new UnsupportedError(this.driver, 'publish', { envId: this.id, driver: this.driver, op: 'publish' });
    return this.#init.publish(alias);
  }
}

/** What a files API call failed with, as the SDK's error for `op` on `path` (`dest` names the field). */
function lxdFileError(err: unknown, context: ErrorContext & { op: string }, path: string): unknown {
  if (err instanceof ExecenvError) return withContext(err, context);
  const ctx = { ...context, cause: err };
  if (err instanceof LxdConnectionError)
    return new TransportError(`execenv: ${context.op} ${path}: lost the connection to LXD: ${err.message}`, ctx);
  if (err instanceof LxdApiError) {
    if (err.status === 404 || /no such file|not found/i.test(err.message)) return new NotFoundError(path, ctx);
    if (err.status === 400 && /is a directory|not a directory|exists/i.test(err.message))
      return new InvalidSpecError('dest', `${path}: ${err.message}`, ctx);
    return new ExecenvError(
      'EXEC_FAILED',
      `execenv: ${context.op} ${path} in ${context.envId}: LXD said ${err.message}`,
      ctx,
    );
  }
  return new TransportError(`execenv: ${context.op} ${path} in ${context.envId}: ${(err as Error).message}`, ctx);
}
