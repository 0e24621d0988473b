import { chmod, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentBinaryPath } from '@execenv/agent';
import {
  type Availability,
  type Capability,
  type Driver,
  DriverUnavailableError,
  defaultStateDir,
  type EnvironmentInfo,
  type EnvSpec,
  emit,
  type GcReport,
  HostCommandError,
  hostRunner,
  InvalidSpecError,
  isAlive,
  type Lease,
  type OpenOptions,
  ownerOf,
  type ProcessRunner,
  throwIfAborted,
  validateSpec,
} from '@execenv/core';
import {
  agentError,
  findBinary,
  hostArch,
  leaseGc,
  leaseList,
  openWithLease,
  unsupportedField,
} from '@execenv/core/driver';
import { checkImageSettings, driverImages, type ImageSettings, resolveImage, sweepImageCache } from '@execenv/images';
import { type AgentLink, connectExec, connectSocket } from './agent-link.js';
import { AttachedRun, waitForConmon } from './attached-run.js';
import { AGENT_PATH, type ContainerPlan, createArgs } from './container-args.js';
import {
  ID_LABEL,
  OWNER_LABEL,
  ownerLabel,
  PUBLISHED_LABEL,
  parseOwnerLabel,
  ROOTFS_LABEL,
  rootfsImageName,
} from './labels.js';
import { PodmanCli } from './podman-cli.js';
import { PodmanEnvironment } from './podman-environment.js';
import { ensureImage } from './podman-images.js';
import {
  type AgentTransport,
  PODMAN_NETWORKS,
  type PodmanDriverOptions,
  type PodmanEnvOptions,
} from './podman-options.js';
import {
  CONTAINER,
  containerResource,
  networkResource,
  podmanUndo,
  removeContainer,
  removeNetwork,
} from './podman-undo.js';
import { TarballImports } from './tarball-imports.js';

/**
 * The registry name of this driver.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { DRIVER_NAME } from '@execenv/podman'; // importing the package registers the driver
 * const env = await open(DRIVER_NAME, { image: 'oci:docker.io/library/debian:bookworm' });
 * await env.close();
 * ```
 */
export const DRIVER_NAME = 'podman';

/** Longest path a unix socket address holds (sun_path less its NUL). */
const MAX_SOCKET_PATH = 107;

const ctx = { driver: DRIVER_NAME, op: 'open' };

/**
 * PodmanDriver opens podman containers, local or remote, rootful or
 * rootless. The container's entrypoint is the execenv agent, so commands and
 * file operations go through it; podman itself is only asked to create,
 * start, stop, commit and remove.
 *
 * @example
 * ```ts
 * import { PodmanDriver } from '@execenv/podman';
 * const driver = new PodmanDriver({ connection: 'build-host' }); // a remote podman: the agent over podman exec
 * const env = await driver.open({ image: 'oci:docker.io/library/debian:bookworm', network: 'nat' });
 * try {
 *   await env.exec(['apt-get', 'update'], { check: true });
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class PodmanDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<PodmanDriverOptions>;
  /** Images this driver found in podman or put there. */
  readonly #knownImages = new Set<string>();
  /** Images made from local tarball files, by the file's identity. */
  readonly #tarballImports = new TarballImports();

  constructor(options: PodmanDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  get #runner(): ProcessRunner {
    return this.#options.runner ?? hostRunner();
  }

  /** The podman command line this driver runs, with its connection. */
  cli(): PodmanCli {
    return new PodmanCli({ ...this.#options, runner: this.#runner });
  }

  /** How the agent is reached: through a shared socket, or through `podman exec -i`. */
  get transport(): AgentTransport {
    return this.#options.transport ?? (this.cli().remote ? 'exec' : 'socket');
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = [
      'isolation-container',
      'root',
      'revert',
      'reboot',
      'publish',
      'resource-limits',
    ];
    const binary = this.#options.podman ?? 'podman';
    if (!(await findBinary(binary)))
      return { available: false, reason: `${binary} is not installed: apt-get install podman runc`, capabilities };
    const agent = await agentBinary().catch((err: Error) => err);
    if (agent instanceof Error) return { available: false, reason: agent.message, capabilities };
    const cli = this.cli();
    const info = await cli.run(
      ['info', '--format', '{{.Host.Security.Rootless}} {{.Host.OCIRuntime.Name}} {{.Host.NetworkBackend}}'],
      { check: false },
    );
    if (info.exitCode !== 0)
      return { available: false, reason: `podman info failed: ${info.stderr.trim()}`, capabilities };
    const [rootless, runtime, network] = info.stdout.trim().split(' ');
    const version = (await cli.run(['version', '--format', '{{.Client.Version}}'], { check: false })).stdout.trim();
    const mode = rootless === 'true' ? 'rootless' : 'rootful';
    return {
      available: true,
      reason: `${cli.remote ? 'remote' : 'local'} ${mode} podman, OCI runtime ${runtime}, agent over ${this.transport}`,
      version,
      capabilities,
      details: {
        mode,
        transport: this.transport,
        remote: String(cli.remote),
        runtime: runtime ?? '',
        network: network ?? '',
      },
    };
  }

  async open(spec: EnvSpec<PodmanEnvOptions>, opts: OpenOptions = {}): Promise<PodmanEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const envOptions = checkEnvOptions(checked.driverOptions);
    if (!checked.image)
      throw new InvalidSpecError('image', 'the podman driver needs an image: oci:NAME or a rootfs tarball', ctx);
    if (checked.arch && checked.arch !== hostArch())
      throw new InvalidSpecError(
        'arch',
        `podman runs the host's architecture (${hostArch()}), not ${checked.arch}`,
        ctx,
      );
    if (checked.ephemeral === false)
      throw new InvalidSpecError(
        'ephemeral',
        'podman environments are always removed on close; publish an image instead',
        ctx,
      );
    if (checked.resources?.disk !== undefined)
      throw unsupportedField(DRIVER_NAME, 'resources.disk', 'podman cannot limit the size of a container’s filesystem');
    const network = checked.network ?? 'none';
    const cli = this.cli();
    const runner = this.#runner;
    const transport = this.transport;
    if (envOptions.privateNetwork && network !== 'nat')
      throw new InvalidSpecError(
        'driverOptions.privateNetwork',
        'a private network is made only with network "nat"',
        ctx,
      );
    if (
      !(PODMAN_NETWORKS as readonly string[]).includes(network) &&
      !(await cli.succeeds(['network', 'exists', network]))
    )
      throw new InvalidSpecError('network', `"${network}" is neither none, nat, host nor a podman network`, ctx);
    for (const [i, m] of (checked.mounts ?? []).entries())
      if (m.source.includes(',') || m.target.includes(','))
        throw new InvalidSpecError(`mounts[${i}]`, 'podman cannot bind a path containing a comma', ctx);
    throwIfAborted(opts.signal, ['open'], ctx);
    const binary = await agentBinary();
    const { images, cache } = await this.#images(envOptions.images);
    emit(opts.onEvent, { type: 'image-resolve', reference: checked.image });
    // The image is made available before the environment exists: a pull or an import holds no lease.
    const imageOptions = {
      cli,
      cache,
      runner,
      reference: checked.image,
      pull: envOptions.pull,
      known: this.#knownImages,
      onEvent: opts.onEvent,
      signal: opts.signal,
    };
    const reference = checked.image;
    const tarballKey = await this.#tarballImports.key(reference);
    const ensure = async (): Promise<string> => {
      const resolved = await resolveImage(reference, {
        ...images,
        cache,
        runner,
        onEvent: opts.onEvent,
        signal: opts.signal,
      });
      const name = await ensureImage(resolved, imageOptions);
      if (tarballKey) this.#tarballImports.set(tarballKey, name);
      return name;
    };
    const remembered = tarballKey && this.#tarballImports.get(tarballKey);
    const image = remembered && this.#knownImages.has(remembered) ? remembered : await ensure();
    const owner = ownerLabel(await ownerOf(), hostname());
    const undo = podmanUndo(cli, this.#options.runner);
    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      undo,
      create: async ({ id, lease, throwIfAborted }) => {
        const labels = ['--label', `${ID_LABEL}=${id}`, '--label', `${OWNER_LABEL}=${owner}`];
        // nat without a network of its own: podman's default (a bridge rootful, slirp4netns rootless).
        let podmanNetwork = network === 'nat' ? undefined : network;
        if (envOptions.privateNetwork) {
          await lease.add(networkResource(id));
          await cli.run(['network', 'create', ...labels, id]);
          podmanNetwork = id;
        }
        const runtimeDir = transport === 'socket' ? await this.#runtimeDir(lease) : undefined;
        const socket = runtimeDir ? join(runtimeDir, 'agent.sock') : undefined;
        const conmonPidFile = runtimeDir ? join(runtimeDir, 'conmon.pid') : undefined;
        const plan: ContainerPlan = {
          name: id,
          image,
          owner,
          transport,
          agentBinary: binary,
          runtimeDir,
          network: podmanNetwork,
          resources: checked.resources,
          pids: envOptions.pids,
          mounts: checked.mounts,
          conmonPidFile,
        };
        // With the socket transport one attached `podman run --rm` holds the container from open to close.
        let run: AttachedRun | undefined;
        const connect = async (ended?: () => string | undefined): Promise<AgentLink> => {
          try {
            return socket ? await connectSocket(cli, id, socket, ended) : await connectExec(cli, id);
          } catch (err) {
            throw agentError(err, { envId: id, driver: DRIVER_NAME, op: 'open' }, id);
          }
        };
        // An image remembered as present may have been removed since: look it up again once.
        const createContainer = async (args: string[]) => {
          try {
            await cli.run(args);
          } catch (err) {
            if (!isMissingImage(err)) throw err;
            this.#knownImages.delete(image);
            await ensure();
            await cli.run(args);
          }
        };
        const runAttached = async (): Promise<AgentLink> => {
          const started = AttachedRun.start(cli, createArgs(plan, true));
          run = started;
          const ended = () => {
            const exit = started.exit;
            return exit && `podman run ended (${exit.exitCode ?? exit.signal}): ${exit.stderr}`;
          };
          try {
            return await connect(ended);
          } catch (err) {
            // Whatever podman got to make, it removes once its stdin closes; lease.release removes the rest.
            await started.end();
            throw err;
          }
        };
        const createAndStart = async (): Promise<AgentLink> => {
          emit(opts.onEvent, { type: 'boot', envId: id, driver: DRIVER_NAME });
          if (socket) {
            // A new agent cannot bind while its predecessor's socket file is there.
            await rm(socket, { force: true });
            try {
              return await runAttached();
            } catch (err) {
              const exit = run?.exit;
              if (!exit || !MISSING_IMAGE.test(exit.stderr)) throw err;
              this.#knownImages.delete(image);
              await ensure();
              return runAttached();
            }
          }
          await createContainer(createArgs(plan));
          await copyAgent(cli, binary, id);
          await cli.run(['start', id]);
          return connect();
        };
        /**
         * Ends `ending` and removes the container: through its attached run when that still reaches the
         * agent, else with `podman rm`.
         */
        const removeOwnContainer = async (ending: AgentLink): Promise<void> => {
          const current = run;
          run = undefined;
          if (current) {
            // SHUTDOWN ends the agent sooner than the end of stdin, which podman and conmon pass on.
            const shutdown = ending.session.shutdown().catch(() => {});
            const removed = await current.end();
            await shutdown;
            if (removed) {
              if (conmonPidFile) await waitForConmon(conmonPidFile, id, 5000);
              return;
            }
          }
          await ending.close();
          await removeContainer(cli, id);
          await current?.reap();
        };
        // Recorded before it exists: a crash in between leaves a record gc() can finish.
        await lease.add(containerResource(id));
        throwIfAborted();
        let link = await createAndStart();
        return new PodmanEnvironment({
          id,
          driver: DRIVER_NAME,
          container: id,
          capabilities: [
            'isolation-container',
            'root',
            'revert',
            'reboot',
            'publish',
            ...(checked.resources ? (['resource-limits'] as const) : []),
            ...(network !== 'none' ? (['network'] as const) : []),
          ],
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session: link.session,
          hostRunner: hostRunner(),
          hostAgent: socket ? { socket, binary } : undefined,
          env: checked.env ?? {},
          lifecycle: {
            commit: async (name) => {
              const r = await cli.run([
                'commit',
                '--quiet',
                '--change',
                `LABEL ${PUBLISHED_LABEL}=${id}`,
                '--change',
                `LABEL ${ID_LABEL}=`,
                '--change',
                `LABEL ${OWNER_LABEL}=`,
                id,
                name,
              ]);
              return r.stdout.trim();
            },
            recreate: async () => {
              await removeOwnContainer(link);
              link = await createAndStart();
              return link.session;
            },
            restart: async () => {
              await link.close();
              if (run) {
                // A `run --rm` container is removed when it stops, so it is not restarted: its PID 1 is the
                // agent, and the environment killed every command's tree before this, which leaves
                // nothing else running. A new session on the same agent is the rebooted container.
                link = await connect();
                return link.session;
              }
              if (socket) await rm(socket, { force: true });
              // The agent, PID 1, exits on SIGTERM at once; the timeout only bounds a stuck one.
              await cli.run(['restart', '--time', '5', id]);
              link = await connect();
              return link.session;
            },
          },
          destroy: async () => {
            await removeOwnContainer(link);
            // Removed above, or by podman rm when that fails: podmanUndo would only ask podman again.
            await lease.release((r) => (r.kind === CONTAINER && r.name === id ? Promise.resolve() : undo(r)));
          },
        });
      },
    });
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  /**
   * Removes what environments of dead owners left: first through their
   * leases (containers, networks, runtime directories), then every container
   * and network labelled `execenv.owner` whose owner process, on this host,
   * is gone, and sweeps the image cache of what killed processes left there
   * (partial downloads, half-converted tarballs). Images are never removed
   * here (see pruneImages).
   */
  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    const cli = this.cli();
    const report = await leaseGc(
      opts.stateDir ?? defaultStateDir(),
      DRIVER_NAME,
      podmanUndo(cli, this.#options.runner),
    );
    const dead = async (labels: Record<string, string> | null | undefined) => {
      const parsed = parseOwnerLabel(labels?.[OWNER_LABEL] ?? '');
      return parsed !== undefined && parsed.hostname === hostname() && !(await isAlive(parsed.owner));
    };
    const note = (id: string | undefined) => {
      if (id && !report.removed.includes(id)) report.removed.push(id);
    };
    const containers = await cli
      .json<{ Names: string[]; Labels?: Record<string, string> }[]>([
        'ps',
        '--all',
        '--filter',
        `label=${OWNER_LABEL}`,
        '--format',
        'json',
      ])
      .catch((err: Error) => {
        report.errors.push(`listing containers: ${err.message}`);
        return [];
      });
    for (const c of containers) {
      if (!(await dead(c.Labels))) continue;
      const name = c.Names[0];
      if (!name) continue;
      await removeContainer(cli, name).then(
        () => note(c.Labels?.[ID_LABEL]),
        (err: Error) => report.errors.push(`${name}: ${err.message}`),
      );
    }
    const networks = await cli
      .json<{ name: string; labels?: Record<string, string> }[]>([
        'network',
        'ls',
        '--filter',
        `label=${OWNER_LABEL}`,
        '--format',
        'json',
      ])
      .catch((err: Error) => {
        report.errors.push(`listing networks: ${err.message}`);
        return [];
      });
    for (const n of networks) {
      if (!(await dead(n.labels))) continue;
      await removeNetwork(cli, n.name).then(
        () => note(n.labels?.[ID_LABEL]),
        (err: Error) => report.errors.push(`${n.name}: ${err.message}`),
      );
    }
    // A killed open may have left a partial download or a half-converted tarball in the image cache.
    return sweepImageCache(report, this.#images());
  }

  /** Image settings (the user's configuration and EXECENV_* variables, then the driver's, then the spec's) and their cache. */
  #images(forEnvironment?: ImageSettings) {
    return driverImages(this.#options.cacheDir, this.#options.images, forEnvironment);
  }

  /**
   * Removes the images this driver imported from rootfs tarballs (labelled
   * `execenv.rootfs`) that no container uses; the next open of such a
   * tarball imports it again. Returns the names removed. The user's images
   * and published ones are never touched.
   */
  async pruneImages(): Promise<string[]> {
    const cli = this.cli();
    const images = await cli.json<{ Id: string; Names?: string[]; Labels?: Record<string, string> }[]>([
      'images',
      '--filter',
      `label=${ROOTFS_LABEL}`,
      '--format',
      'json',
    ]);
    const removed: string[] = [];
    for (const image of images) {
      // Published images inherit the label: only the import itself, named after its digest, is ours to drop.
      const digest = image.Labels?.[ROOTFS_LABEL];
      if (!digest || !image.Names?.includes(rootfsImageName(digest))) continue;
      // Without --force podman refuses an image a container uses.
      const r = await cli.run(['rmi', image.Id], { check: false });
      if (r.exitCode === 0) removed.push(...image.Names);
    }
    return removed;
  }

  /**
   * A private directory for the agent's socket, made through the given
   * runner so the podman user owns it; without one, podman runs as this
   * process's user and the directory is made here, without a process.
   */
  async #runtimeDir(lease: Lease): Promise<string> {
    const base = this.#options.runtimeDir ?? tmpdir();
    const template = join(base, 'execenv-podman-XXXXXXXX');
    if (Buffer.byteLength(join(template, 'agent.sock')) > MAX_SOCKET_PATH)
      throw new DriverUnavailableError(DRIVER_NAME, `runtimeDir ${base} is too long for a unix socket path`);
    const dir = this.#options.runner
      ? (await this.#options.runner.run(['mktemp', '-d', template])).stdout.trim()
      : await mkdtemp(template.slice(0, -'XXXXXXXX'.length));
    await lease.add({ kind: 'dir', path: dir });
    return dir;
  }
}

/** What podman says when the image to create a container from is not there. */
const MISSING_IMAGE = /image not known|no such image/i;

/** Whether podman refused to create a container because its image is not there. */
function isMissingImage(err: unknown): boolean {
  return err instanceof HostCommandError && MISSING_IMAGE.test(err.result.stderr);
}

/** The agent binary for this host, shipped in @execenv/agent. */
async function agentBinary(): Promise<string> {
  try {
    return await agentBinaryPath(hostArch());
  } catch (err) {
    throw new DriverUnavailableError(DRIVER_NAME, (err as Error).message, { cause: err });
  }
}

/** Copies the agent into a created container (the exec transport: the podman host cannot see this one's files). */
async function copyAgent(cli: PodmanCli, binary: string, container: string): Promise<void> {
  const staging = await mkdtemp(join(tmpdir(), 'execenv-podman-agent-'));
  try {
    const dir = join(staging, 'execenv');
    await mkdir(dir, { mode: 0o755 });
    await copyFile(binary, join(dir, 'agent'));
    await chmod(join(dir, 'agent'), 0o755);
    // The directory becomes /.execenv, whose agent is the entrypoint; podman cp resolves it inside the container.
    await cli.run(['cp', dir, `${container}:${AGENT_PATH.slice(0, AGENT_PATH.lastIndexOf('/'))}`]);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Checks spec.driverOptions before anything is created. */
function checkEnvOptions(raw: unknown): PodmanEnvOptions {
  const o = (raw ?? {}) as Record<string, unknown>;
  const known = ['privateNetwork', 'pids', 'pull', 'images'];
  for (const key of Object.keys(o))
    if (!known.includes(key))
      throw new InvalidSpecError(
        `driverOptions.${key}`,
        `unknown option; the podman driver knows ${known.join(', ')}`,
        ctx,
      );
  if (o.privateNetwork !== undefined && typeof o.privateNetwork !== 'boolean')
    throw new InvalidSpecError('driverOptions.privateNetwork', 'must be a boolean', ctx);
  if (o.pids !== undefined && !(Number.isInteger(o.pids) && (o.pids as number) > 0))
    throw new InvalidSpecError('driverOptions.pids', 'must be a positive integer', ctx);
  if (o.pull !== undefined && !['missing', 'always', 'never'].includes(o.pull as string))
    throw new InvalidSpecError('driverOptions.pull', 'must be missing, always or never', ctx);
  const images = checkImageSettings(o.images, 'driverOptions.images', ctx);
  return { ...(o as PodmanEnvOptions), images };
}
