import {
  HostCommandError,
  hostRunner,
  type ProcessRunner,
  type RunningProcess,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
} from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import type { PodmanConnection } from './podman-options.js';

/**
 * What PodmanCli needs: the binary, the connection, the environment of every call.
 *
 * @example
 * ```ts
 * import { PodmanCli, type PodmanCliOptions } from '@execenv/podman';
 * const options: PodmanCliOptions = {
 *   podman: '/usr/local/bin/podman',
 *   connection: 'build-host', // from `podman system connection list`
 *   env: { CONTAINERS_CONF: '/etc/execenv/containers.conf' },
 * };
 * const cli = new PodmanCli(options);
 * ```
 */
export interface PodmanCliOptions extends PodmanConnection {
  /** The podman binary. @default 'podman' */
  podman?: string;
  /** Added to hostEnv() for every call. */
  env?: Readonly<Record<string, string>>;
  /** Runs every command. @default hostRunner() */
  runner?: ProcessRunner;
}

/**
 * PodmanCli builds and runs podman command lines: the binary, the connection
 * flags (`--url`, `--connection`, `--identity`), then the subcommand, always
 * as an argv array through the process runner.
 *
 * @example
 * ```ts
 * import { PodmanCli } from '@execenv/podman';
 * const cli = new PodmanCli({ url: 'ssh://builder@build-host/run/podman/podman.sock' });
 * cli.argv(['ps']); // ['podman', '--url', 'ssh://builder@build-host/run/podman/podman.sock', 'ps']
 * const version = (await cli.run(['version', '--format', '{{.Client.Version}}'])).stdout.trim();
 * const hasDebian = await cli.succeeds(['image', 'exists', 'docker.io/library/debian:bookworm']);
 * ```
 */
export class PodmanCli {
  readonly #binary: string;
  readonly #global: readonly string[];
  readonly #env: Readonly<Record<string, string>>;
  readonly #runner: ProcessRunner;
  /** Whether the podman spoken to is a remote service (its host shares no files with this one). */
  readonly remote: boolean;

  constructor(opts: PodmanCliOptions = {}) {
    this.#binary = opts.podman ?? 'podman';
    this.#global = [
      ...(opts.url ? ['--url', opts.url] : []),
      ...(opts.connection ? ['--connection', opts.connection] : []),
      ...(opts.identity ? ['--identity', opts.identity] : []),
    ];
    this.#env = { ...hostEnv(), ...opts.env };
    this.#runner = opts.runner ?? hostRunner();
    this.remote = Boolean(opts.url || opts.connection || opts.env?.CONTAINER_HOST);
  }

  /** The full argv of `podman ARGS...`. */
  argv(args: readonly string[]): string[] {
    return [this.#binary, ...this.#global, ...args];
  }

  /** Runs `podman ARGS...`; a failure throws HostCommandError (code EXEC_FAILED) unless `check` is false. */
  run(args: readonly string[], opts: Omit<RunOptions, 'env'> = {}): Promise<RunResult> {
    return this.#runner.run(this.argv(args), { ...opts, env: { ...this.#env } });
  }

  /** Starts `podman ARGS...` and returns the running process. */
  spawn(args: readonly string[], opts: Omit<SpawnOptions, 'env'> = {}): RunningProcess {
    return this.#runner.spawn(this.argv(args), { ...opts, env: { ...this.#env } });
  }

  /** Runs `podman ARGS...` and parses its stdout as JSON. */
  async json<T>(args: readonly string[]): Promise<T> {
    const r = await this.run(args);
    const text = r.stdout.trim();
    return (text === '' ? [] : JSON.parse(text)) as T;
  }

  /** Whether `podman ARGS...` exits 0 (for `image exists`, `container exists`, `network exists`). */
  async succeeds(args: readonly string[]): Promise<boolean> {
    return (await this.run(args, { check: false })).exitCode === 0;
  }
}

/**
 * Whether a podman failure says the object is already gone (`no such container`, `network not found`...).
 *
 * @example
 * ```ts
 * import { isGone, PodmanCli } from '@execenv/podman';
 * await new PodmanCli().run(['network', 'rm', '--force', 'execenv-abc123']).catch((err: unknown) => {
 *   if (!isGone(err)) throw err; // already removed is fine
 * });
 * ```
 */
export function isGone(err: unknown): boolean {
  if (!(err instanceof HostCommandError)) return false;
  return /no such (container|object|network|image)|not found|does not exist/i.test(err.result.stderr);
}
