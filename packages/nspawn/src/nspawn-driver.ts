import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AgentSession, agentBinaryPath } from '@execenv/agent';
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
  hostRunner,
  InvalidSpecError,
  type Lease,
  type OpenOptions,
  type ProcessRunner,
  throwIfAborted,
  validateSpec,
  withContext,
} from '@execenv/core';
import {
  AgentEnvironment,
  type AgentSessionLike,
  agentError,
  findBinary,
  HOST_PATH,
  hostArch,
  leaseGc,
  leaseList,
  openWithLease,
  unsupportedField,
} from '@execenv/core/driver';
import {
  checkImageSettings,
  driverImages,
  type ImageSettings,
  imageRootDirectory,
  resolveImage,
  sweepImageCache,
} from '@execenv/images';
import { type NamespaceLink, type NetworkMode, networkMode, resolvConf } from '@execenv/net';
import { waitUntilBooted } from './boot-readiness.js';
import { startContainer } from './container.js';
import { type EnteredAgent, startEnteredAgent } from './entered-agent.js';
import { ensurePropagationTmpfs, hostRunsSystemd, propagationDir } from './host-quirks.js';
import { checkMachineName, ensureMachine } from './machines.js';
import { nspawnArgv, SOCKET_NAME } from './nspawn-args.js';
import { joinNetwork } from './nspawn-network.js';
import type { NspawnDriverOptions, NspawnEnvOptions, NspawnMode } from './nspawn-options.js';
import { MACHINE, machineResource, nspawnUndo } from './nspawn-undo.js';
import { resourceProperties } from './resources.js';

/**
 * The registry name of this driver.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { DRIVER_NAME } from '@execenv/nspawn'; // importing the package registers the driver
 * const env = await open(DRIVER_NAME, { image: '/srv/bookworm-minbase.tar.zst' });
 * await env.close();
 * ```
 */
export const DRIVER_NAME = 'nspawn';

/** Longest path a unix socket address holds (sun_path less its NUL). */
const MAX_SOCKET_PATH = 107;

/** What open() settled from the spec before creating anything. */
interface Plan {
  mode: NspawnMode;
  network: NetworkMode;
  linux32: boolean;
  timeoutMs: number;
  machine: string | undefined;
  properties: string[];
  scope: boolean;
  /** Image settings given in the spec, checked. */
  images: ImageSettings | undefined;
}

/**
 * NspawnDriver opens systemd-nspawn containers: an overlay over a cached
 * root filesystem (or a kept machine directory), with the execenv agent as
 * the container's init, or entered into a booted systemd.
 *
 * @example
 * ```ts
 * import { NspawnDriver } from '@execenv/nspawn';
 * const driver = new NspawnDriver({ cacheDir: '/var/cache/execenv' });
 * const env = await driver.open({ image: '/srv/bookworm-systemd.tar.zst', driverOptions: { boot: true } });
 * try {
 *   await env.exec(['systemctl', 'start', 'cron'], { check: true });
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class NspawnDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<NspawnDriverOptions>;

  constructor(options: NspawnDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  get #runner(): ProcessRunner {
    return this.#options.runner ?? hostRunner();
  }

  #machinesDir(stateDir: string): string {
    return this.#options.machinesDir ?? join(stateDir, 'nspawn', 'machines');
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = ['isolation-container', 'root', 'network'];
    if (process.getuid?.() !== 0)
      return { available: false, reason: 'systemd-nspawn needs root (run as root or through sudo)', capabilities };
    const missing: string[] = [];
    if (!(await findBinary('systemd-nspawn'))) missing.push('systemd-nspawn (apt-get install systemd-container)');
    for (const tool of ['nsenter', 'mount', 'cp'])
      if (!(await findBinary(tool))) missing.push(`${tool} (apt-get install util-linux mount coreutils)`);
    if (missing.length > 0) return { available: false, reason: `missing ${missing.join(', ')}`, capabilities };
    const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
    if (!/\toverlay$/m.test(filesystems))
      return { available: false, reason: 'the kernel has no overlayfs (modprobe overlay)', capabilities };
    const agent = await this.#agentBinary().catch((err: Error) => err);
    if (agent instanceof Error) return { available: false, reason: agent.message, capabilities };
    const scope = await hostRunsSystemd();
    const version = (
      await this.#runner.run(['systemd-nspawn', '--version'], { check: false, env: { PATH: HOST_PATH } })
    ).stdout
      .split('\n')[0]
      ?.trim();
    return {
      available: true,
      reason: scope
        ? 'systemd is PID 1: each container gets a scope of its own, where resource limits apply'
        : 'no systemd as PID 1 (no machined, no system bus): containers run with --register=no --keep-unit, ' +
          'in the caller’s cgroup, so resource limits cannot be applied',
      version,
      capabilities: scope ? [...capabilities, 'resource-limits'] : capabilities,
      details: { manager: scope ? 'systemd' : 'none', resourceLimits: scope ? 'yes' : 'no' },
    };
  }

  async open(spec: EnvSpec<NspawnEnvOptions>, opts: OpenOptions = {}): Promise<AgentEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const plan = await this.#plan(checked);
    if (!checked.image)
      throw new InvalidSpecError('image', 'the nspawn driver needs an image (a rootfs tarball or directory)', {
        driver: DRIVER_NAME,
        op: 'open',
      });
    if (process.getuid?.() !== 0) throw new DriverUnavailableError(DRIVER_NAME, 'systemd-nspawn needs root');
    const runner = this.#runner;
    const nspawn = await findBinary('systemd-nspawn');
    if (!nspawn)
      throw new DriverUnavailableError(
        DRIVER_NAME,
        'systemd-nspawn is not installed: apt-get install systemd-container',
      );
    const nsenter = plan.mode === 'boot' ? await findBinary('nsenter') : undefined;
    const setpriv = plan.mode === 'boot' ? await findBinary('setpriv') : undefined;
    if (plan.mode === 'boot' && !nsenter)
      throw new DriverUnavailableError(DRIVER_NAME, 'nsenter is not installed: apt-get install util-linux');
    throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });
    const agentBinary = await this.#agentBinary();
    emit(opts.onEvent, { type: 'image-resolve', reference: checked.image });
    const { images, cache } = await this.#images(plan.images);
    const resolved = await resolveImage(checked.image, {
      ...images,
      cache,
      runner,
      onEvent: opts.onEvent,
      signal: opts.signal,
    });
    const base = await imageRootDirectory(resolved, { cache, runner, onEvent: opts.onEvent });
    const stateDir = opts.stateDir ?? defaultStateDir();
    if (this.#options.fixPropagationTmpfs !== false) await ensurePropagationTmpfs(runner, join(stateDir, 'nspawn'));
    const undo = nspawnUndo(runner, this.#options.networks);
    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      stateDir,
      undo,
      create: async ({ id, lease, throwIfAborted }) => {
        const envDir = join(stateDir, 'nspawn', 'envs', id);
        await lease.add({ kind: 'dir', path: envDir });
        await mkdir(envDir, { recursive: true, mode: 0o700 });
        let directory = base;
        let upper: string | undefined;
        if (plan.machine === undefined) {
          // The extracted image is the overlay's lower layer: pruning the cache must leave it while this runs.
          const hold = await cache.holdTree(base, id);
          if (hold) await lease.add({ kind: 'dir', path: hold });
          upper = join(envDir, 'upper');
          await mkdir(upper, { mode: 0o755 });
        } else {
          const machine = await ensureMachine(runner, this.#machinesDir(stateDir), plan.machine, base);
          await lease.add(machineResource(plan.machine, machine.dir));
          directory = machine.dir;
        }
        const runtimeDir = await this.#runtimeDir(envDir, lease);
        const machineName = plan.machine ?? id;
        // nspawn removes it on a clean exit; killed, it leaves it behind.
        await lease.add({ kind: 'dir', path: propagationDir(machineName) });
        const netns = join(envDir, 'netns');
        const link =
          plan.network.mode === 'private'
            ? await joinNetwork(runner, this.#options.networks ?? {}, {
                id,
                stateDir,
                network: plan.network.network,
                netns,
                lease,
              })
            : undefined;
        throwIfAborted();
        if (plan.mode === 'boot') emit(opts.onEvent, { type: 'boot', envId: id, driver: DRIVER_NAME });
        // One deadline for the whole start: the container, then (booted) the system inside.
        const deadline = Date.now() + plan.timeoutMs;
        const container = await startContainer(runner, {
          argv: nspawnArgv({
            nspawn,
            machine: machineName,
            directory,
            upper,
            mode: plan.mode,
            network: link ? { namespacePath: netns } : plan.network.mode === 'host' ? 'host' : 'none',
            runtimeDir,
            agentBinary,
            binds: checked.mounts ?? [],
            linux32: plan.linux32,
            scope: plan.scope,
            properties: plan.properties,
            killInit: plan.machine === undefined,
            setpriv,
          }),
          // Many overlays share one base: nspawn's exclusive image lock would let only one run. A kept machine is locked.
          env: { PATH: HOST_PATH, ...(plan.machine === undefined ? { SYSTEMD_NSPAWN_LOCK: '0' } : {}) },
          mode: plan.mode,
          timeoutMs: plan.timeoutMs,
          envId: id,
          signal: opts.signal,
          onProcess: (p) => lease.add({ kind: 'process', ...p }),
        });
        const socket = join(runtimeDir, SOCKET_NAME);
        let entered: EnteredAgent | undefined;
        const stop = async () => {
          await entered?.stop();
          await container.stop(plan.machine === undefined ? 5_000 : 30_000);
        };
        let session: AgentSessionLike;
        try {
          if (plan.mode === 'boot') entered = await startEnteredAgent(runner, nsenter!, container.init.pid, id);
          const connected = await AgentSession.connect(socket).catch((err: unknown) => {
            throw agentError(err, { envId: id, driver: DRIVER_NAME, op: 'open' }, socket);
          });
          session = connected;
          if (plan.mode === 'boot')
            await waitUntilBooted(connected, {
              envId: id,
              timeoutMs: plan.timeoutMs,
              deadline,
              console: () => container.output(),
              signal: opts.signal,
            }).catch((err: unknown) => {
              connected.close();
              throw err;
            });
          if (link) await writeResolvConf(connected, link, id);
        } catch (err) {
          await stop();
          throw err;
        }
        return new AgentEnvironment({
          id,
          driver: DRIVER_NAME,
          capabilities: capabilitiesOf(plan),
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session,
          hostRunner: runner,
          hostAgent: { socket, binary: agentBinary },
          env: checked.env ?? {},
          destroy: async () => {
            await stop();
            await lease.release(undo);
          },
        });
      },
    });
  }

  /** Lists this driver's environments under the state directory, live owners or dead. */
  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  /**
   * Removes what environments of dead owners left behind: their nspawn and
   * init processes, overlays, runtime and propagation directories, and what
   * killed processes left in the image cache (partial downloads,
   * half-extracted trees). Kept machine directories stay.
   */
  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    const report = await leaseGc(opts.stateDir ?? defaultStateDir(), DRIVER_NAME, nspawnUndo(this.#runner));
    return sweepImageCache(report, this.#images());
  }

  /** Image settings (the user's configuration and EXECENV_* variables, then the driver's, then the spec's) and their cache. */
  #images(forEnvironment?: ImageSettings) {
    return driverImages(this.#options.cacheDir, this.#options.images, forEnvironment);
  }

  /**
   * Deletes the directory of a kept machine (`ephemeral: false`). Refused
   * with INVALID_SPEC while an environment of a live owner runs on it.
   */
  async removeMachine(name: string, opts: { stateDir?: string } = {}): Promise<void> {
    checkMachineName(name);
    const stateDir = opts.stateDir ?? defaultStateDir();
    const dir = join(this.#machinesDir(stateDir), name);
    const inUse = (await this.list({ stateDir })).find(
      (e) => e.ownerAlive && e.resources.includes(`${MACHINE} ${dir}`),
    );
    if (inUse)
      throw new InvalidSpecError('machine', `machine ${name} is in use by ${inUse.id}; close it first`, {
        driver: DRIVER_NAME,
        op: 'removeMachine',
      });
    await this.#runner.run(['rm', '-rf', '--one-file-system', '--', dir], { env: { PATH: HOST_PATH } });
  }

  /** Checks everything in the spec that does not need the host, returning how to run it. */
  async #plan(spec: Readonly<EnvSpec<NspawnEnvOptions>>): Promise<Plan> {
    const ctx = { driver: DRIVER_NAME, op: 'open' };
    const network = checkedNetwork(spec.network, ctx);
    const host = hostArch();
    const linux32 = spec.arch === 'i386' && host === 'amd64';
    if (spec.arch && spec.arch !== host && !linux32)
      throw new InvalidSpecError(
        'arch',
        `a container runs the host's architecture (${host}) or i386 on amd64, not ${spec.arch}`,
        ctx,
      );
    const o = (spec.driverOptions ?? {}) as NspawnEnvOptions;
    if (o.boot !== undefined && typeof o.boot !== 'boolean')
      throw new InvalidSpecError('driverOptions.boot', 'must be a boolean', ctx);
    if (o.startTimeoutMs !== undefined && !(Number.isSafeInteger(o.startTimeoutMs) && o.startTimeoutMs > 0))
      throw new InvalidSpecError('driverOptions.startTimeoutMs', 'must be a positive number of milliseconds', ctx);
    let machine: string | undefined;
    if (spec.ephemeral === false) {
      if (o.machine === undefined)
        throw new InvalidSpecError('driverOptions.machine', 'ephemeral: false needs a machine name to keep', ctx);
      machine = checkMachineName(o.machine);
    } else if (o.machine !== undefined)
      throw new InvalidSpecError('driverOptions.machine', 'a machine name is kept only with ephemeral: false', ctx);
    const images = checkImageSettings(o.images, 'driverOptions.images', ctx);
    const scope = await hostRunsSystemd();
    const properties = resourceProperties(spec.resources);
    if (properties.length > 0 && !scope)
      throw unsupportedField(
        DRIVER_NAME,
        'resources',
        'no systemd as PID 1, so no scope to apply cpu and memory limits to',
      );
    const mode: NspawnMode = o.boot ? 'boot' : 'plain';
    return {
      mode,
      network,
      linux32,
      timeoutMs: o.startTimeoutMs ?? (mode === 'boot' ? 120_000 : 30_000),
      machine,
      properties,
      scope,
      images,
    };
  }

  /** The agent's runtime directory: in the environment's directory, or a private temporary one when the socket path would be too long. */
  async #runtimeDir(envDir: string, lease: Lease): Promise<string> {
    const inEnvDir = join(envDir, 'run');
    if (Buffer.byteLength(join(inEnvDir, SOCKET_NAME)) <= MAX_SOCKET_PATH) {
      await mkdir(inEnvDir, { mode: 0o700 });
      return inEnvDir;
    }
    const dir = await mkdtemp(join(tmpdir(), 'execenv-nspawn-'));
    await lease.add({ kind: 'dir', path: dir });
    return dir;
  }

  /** The agent binary for this host, shipped in @execenv/agent. */
  async #agentBinary(): Promise<string> {
    try {
      return await agentBinaryPath(hostArch());
    } catch (err) {
      throw new DriverUnavailableError(DRIVER_NAME, (err as Error).message, { cause: err });
    }
  }
}

function capabilitiesOf(plan: Plan): Capability[] {
  return [
    'isolation-container',
    'root',
    ...(plan.network.mode === 'none' ? [] : (['network'] as const)),
    ...(plan.properties.length > 0 ? (['resource-limits'] as const) : []),
  ];
}

/**
 * Writes the network's resolv.conf (its dnsmasq on the gateway) to the
 * container's /etc/resolv.conf through the agent; the image's stays when
 * the network has no DNS.
 */
async function writeResolvConf(session: AgentSession, link: NamespaceLink, envId: string): Promise<void> {
  const conf = resolvConf(link);
  if (conf === undefined) return;
  await session
    .writeFile('/etc/resolv.conf', Readable.from([Buffer.from(conf)]), { mode: 0o644, uid: 0, gid: 0 })
    .catch((err: unknown) => {
      session.close();
      throw agentError(err, { envId, driver: DRIVER_NAME, op: 'open' }, '/etc/resolv.conf');
    });
}

/** Reads `spec.network` (networkMode of @execenv/net), naming this driver on a bad name's error. */
function checkedNetwork(network: string | undefined, context: { driver: string; op: string }): NetworkMode {
  try {
    return networkMode(network);
  } catch (err) {
    throw withContext(err, context);
  }
}
