import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentSession, agentBinaryPath } from '@execenv/agent';
import {
  type Availability,
  type Capability,
  type Driver,
  DriverUnavailableError,
  defaultCacheDir,
  defaultStateDir,
  type EnvironmentInfo,
  type EnvSpec,
  emit,
  type GcReport,
  hostRunner,
  hostUndo,
  InvalidSpecError,
  type OpenOptions,
  type ProcessRunner,
  processStartTime,
  TransportError,
  UnsupportedError,
  validateSpec,
} from '@execenv/core';
import {
  AgentEnvironment,
  findBinary,
  HOST_PATH,
  hostArch,
  leaseGc,
  leaseList,
  openWithLease,
} from '@execenv/core/driver';
import { ImageCache, imageRootDirectory, resolveImage } from '@execenv/images';
import { sandboxArgv } from './bwrap-argv.js';
import { BWRAP_NETWORKS, type BwrapDriverOptions } from './bwrap-options.js';

/** The registry name of this driver. */
export const DRIVER_NAME = 'bwrap';

/**
 * BwrapDriver opens environments in bubblewrap sandboxes: each one a private
 * copy of the image's root filesystem, with its own mount, pid, IPC, UTS and
 * (by default) network namespaces. Commands and files go through the execenv
 * agent, which runs as the sandbox's init.
 *
 * It needs root on the host: the agent makes the sandbox's mount and pid
 * namespaces, which bubblewrap lets only a privileged caller keep the
 * capabilities for.
 *
 * @example
 * ```ts
 * const driver = new BwrapDriver();
 * const env = await driver.open({ image: './busybox.tar', network: 'none' });
 * try {
 *   console.log((await env.exec(['id', '-u'])).stdout); // 0
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class BwrapDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<BwrapDriverOptions>;

  constructor(options: BwrapDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  get #runner(): ProcessRunner {
    return this.#options.runner ?? hostRunner();
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = ['isolation-container', 'root'];
    const bwrap = await findBinary('bwrap');
    if (!bwrap) return { available: false, reason: 'bwrap is not installed: apt-get install bubblewrap', capabilities };
    if (process.getuid?.() !== 0)
      return { available: false, reason: 'the bwrap driver runs as root (the agent makes namespaces)', capabilities };
    const agent = await agentBinaryPath().catch((err: Error) => err);
    if (agent instanceof Error) return { available: false, reason: agent.message, capabilities };
    const version = (await this.#runner.run([bwrap, '--version'], { check: false, env: { PATH: HOST_PATH } })).stdout;
    return { available: true, version: version.trim(), capabilities };
  }

  async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<AgentEnvironment> {
    // Everything the spec can get wrong is refused before anything exists.
    const checked = validateSpec(spec, DRIVER_NAME);
    const network = checked.network ?? 'none';
    if (!(BWRAP_NETWORKS as readonly string[]).includes(network))
      throw new InvalidSpecError(
        'network',
        `the bwrap driver supports ${BWRAP_NETWORKS.join(' and ')}, got "${network}"`,
        {
          driver: DRIVER_NAME,
        },
      );
    if (checked.resources) throw new UnsupportedError(DRIVER_NAME, 'resource-limits', { op: 'open' });
    if (checked.arch && checked.arch !== hostArch())
      throw new InvalidSpecError('arch', `a bwrap sandbox runs the host's architecture (${hostArch()})`, {
        driver: DRIVER_NAME,
      });
    if (checked.ephemeral === false)
      throw new InvalidSpecError('ephemeral', 'bwrap environments are always ephemeral', { driver: DRIVER_NAME });
    if (!checked.image) throw new InvalidSpecError('image', 'the bwrap driver needs an image', { driver: DRIVER_NAME });
    const bwrap = await findBinary('bwrap');
    if (!bwrap) throw new DriverUnavailableError(DRIVER_NAME, 'bwrap is not installed: apt-get install bubblewrap');
    const agent = await agentBinaryPath();
    const runner = this.#runner;
    const undo = hostUndo(runner);

    // @execenv/images turns any image reference (a rootfs tarball, an index entry, a URL) into a directory tree.
    const cache = new ImageCache({ dir: join(this.#options.cacheDir ?? defaultCacheDir(), 'images') });
    emit(opts.onEvent, { type: 'image-resolve', reference: checked.image });
    const resolved = await resolveImage(checked.image, { cache, runner, onEvent: opts.onEvent, signal: opts.signal });
    const base = await imageRootDirectory(resolved, { cache, runner, onEvent: opts.onEvent });

    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      undo,
      create: async ({ id, lease, stateDir, throwIfAborted }) => {
        const envDir = join(stateDir, 'envs', id);
        await lease.add({ kind: 'dir', path: envDir });
        await mkdir(envDir, { recursive: true, mode: 0o700 });
        const root = join(envDir, 'root');
        await runner.run(['cp', '-a', '--reflink=auto', '--', base, root], { env: { PATH: HOST_PATH } });
        throwIfAborted();
        const argv = sandboxArgv({
          bwrap,
          agent,
          root,
          network: network as 'none' | 'host',
          mounts: checked.mounts ?? [],
        });
        const sandbox = runner.spawn(argv, { env: { PATH: HOST_PATH }, stdin: 'pipe' });
        const startTime = sandbox.pid ? await processStartTime(sandbox.pid) : undefined;
        if (sandbox.pid && startTime) await lease.add({ kind: 'process', pid: sandbox.pid, startTime });
        let stderr = '';
        sandbox.stderr?.on('data', (c: Buffer) => {
          stderr = (stderr + c.toString()).slice(-4096);
        });
        const stop = async () => {
          sandbox.stdin?.end();
          await sandbox.exited.catch(() => {});
        };
        let session: AgentSession;
        try {
          if (!sandbox.stdout || !sandbox.stdin) throw new Error('bwrap was started without pipes');
          session = await AgentSession.over(sandbox.stdout, sandbox.stdin);
        } catch (err) {
          sandbox.kill('SIGKILL');
          await stop();
          const ctx = { envId: id, driver: DRIVER_NAME, op: 'open' };
          if (stderr) throw new DriverUnavailableError(DRIVER_NAME, `the sandbox did not start: ${stderr.trim()}`, ctx);
          throw new TransportError(`execenv: the agent in bwrap sandbox ${id} did not answer`, { ...ctx, cause: err });
        }
        return new AgentEnvironment({
          id,
          driver: DRIVER_NAME,
          capabilities: ['isolation-container', 'root', ...(network === 'host' ? (['network'] as const) : [])],
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session,
          env: checked.env,
          hostRunner: runner,
          destroy: async () => {
            await stop();
            await lease.release(undo);
          },
        });
      },
    });
  }

  /** Environments of this driver under `stateDir`, including those of dead owners. */
  list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  /** Removes what environments of dead owners left: their sandbox process and their directory. */
  gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    return leaseGc(opts.stateDir ?? defaultStateDir(), DRIVER_NAME, hostUndo(this.#runner));
  }
}
