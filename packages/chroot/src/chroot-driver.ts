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
  defaultCacheDir,
  defaultStateDir,
  type EnvironmentInfo,
  type EnvSpec,
  emit,
  type GcReport,
  hostRunner,
  type IdMap,
  InvalidSpecError,
  type Lease,
  type OpenOptions,
  type ProcessRunner,
  processStartTime,
  throwIfAborted,
  toHostId,
  validateSpec,
  withContext,
} from '@execenv/core';
import {
  agentError,
  findBinary,
  HOST_PATH,
  hostArch,
  leaseGc,
  leaseList,
  openWithLease,
  unsupportedField,
} from '@execenv/core/driver';
import { checkImageSettings, driverImages, imageRootDirectory, resolveImage, sweepImageCache } from '@execenv/images';
import { type NamespaceLink, type NetworkMode, networkMode, resolvConf } from '@execenv/net';
import { MAX_SOCKET_PATH, startAgentServer } from './agent-server.js';
import { ChrootEnvironment } from './chroot-environment.js';
import { createNetworkNamespace, type MountContext, mountOverlay, type RootLayout } from './chroot-mounts.js';
import { joinNetwork } from './chroot-network.js';
import type { ChrootDriverOptions, ChrootEnvOptions, ChrootImageSources, ChrootMode } from './chroot-options.js';
import { ensureDefaultImage } from './default-image.js';
import { chrootUndo, mappedTree } from './mapped-tree.js';
import { currentSubordinateIds, rootlessIdMap, rootlessMapArgs } from './subordinate-ids.js';

/**
 * The registry name of this driver.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { DRIVER_NAME } from '@execenv/chroot'; // importing the package registers the driver
 * const env = await open(DRIVER_NAME, { image: './bookworm.tar.zst' });
 * await env.close();
 * ```
 */
export const DRIVER_NAME = 'chroot';

/**
 * ChrootDriver opens chroot environments: an overlay over a cached root
 * filesystem, with every command in its own mount and pid namespace.
 *
 * @example
 * ```ts
 * import { ChrootDriver } from '@execenv/chroot';
 * const driver = new ChrootDriver({ cacheDir: '/var/cache/execenv' });
 * const env = await driver.open({ image: '/srv/bookworm-minbase.tar.zst', network: 'host' });
 * try {
 *   await env.exec(['apt-get', 'install', '-y', 'lintian'], { check: true, timeout: 600_000 });
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class ChrootDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<ChrootDriverOptions>;

  constructor(options: ChrootDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  get #runner(): ProcessRunner {
    return this.#options.runner ?? hostRunner();
  }

  get #cacheDir(): string {
    return this.#options.cacheDir ?? defaultCacheDir();
  }

  /** The mode open() will use, and why. */
  async mode(): Promise<{ mode: ChrootMode; reason: string }> {
    const asked = this.#options.mode ?? 'auto';
    const mode: ChrootMode = asked !== 'auto' ? asked : process.getuid?.() === 0 ? 'root' : 'rootless';
    const why = asked !== 'auto' ? `mode "${asked}" was asked for` : mode === 'root' ? 'running as root' : 'not root';
    if (mode === 'root') return { mode, reason: `${why}: mounts in the host mount namespace` };
    const sub = await this.#subordinateIds();
    return {
      mode,
      reason: sub
        ? `${why}: mounts inside a user namespace, subordinate ids ${sub.uids.start}+${sub.uids.count} mapped to 1..${sub.uids.count}`
        : `${why}: mounts inside a user namespace mapping only root (no subordinate ids in /etc/subuid and /etc/subgid, or no newuidmap)`,
    };
  }

  async #subordinateIds() {
    if (this.#options.subordinateIds === false) return undefined;
    if (!(await findBinary('newuidmap')) || !(await findBinary('newgidmap'))) return undefined;
    return currentSubordinateIds();
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = ['isolation-chroot', 'root'];
    const missing: string[] = [];
    for (const tool of ['unshare', 'mount', 'umount', ...((await this.mode()).mode === 'rootless' ? ['nsenter'] : [])])
      if (!(await findBinary(tool))) missing.push(tool);
    if (missing.length > 0)
      return {
        available: false,
        reason: `missing ${missing.join(', ')}: apt-get install util-linux mount`,
        capabilities,
      };
    const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
    if (!/\toverlay$/m.test(filesystems))
      return { available: false, reason: 'the kernel has no overlayfs (modprobe overlay)', capabilities };
    const { mode, reason } = await this.mode();
    const agent = await this.#agentBinary().catch((err: Error) => err);
    if (agent instanceof Error) return { available: false, reason: agent.message, capabilities };
    const version = (
      await this.#runner.run(['unshare', '--version'], { check: false, env: { PATH: HOST_PATH } })
    ).stdout.trim();
    return { available: true, reason, version, capabilities, details: { mode } };
  }

  async open(spec: EnvSpec<ChrootEnvOptions>, opts: OpenOptions = {}): Promise<ChrootEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const network = checkedNetwork(checked.network, { driver: DRIVER_NAME, op: 'open' });
    if (checked.resources) throw unsupportedField(DRIVER_NAME, 'resources', 'a chroot has no resource limits');
    const specImages = checkImageSettings(
      (checked.driverOptions as ChrootEnvOptions | undefined)?.images,
      'driverOptions.images',
      { driver: DRIVER_NAME, op: 'open' },
    );
    const host = hostArch();
    const linux32 = checked.arch === 'i386' && host === 'amd64';
    if (checked.arch && checked.arch !== host && !linux32)
      throw new InvalidSpecError(
        'arch',
        `a chroot runs the host's architecture (${host}) or i386 on amd64, not ${checked.arch}`,
        { driver: DRIVER_NAME },
      );
    if (checked.ephemeral === false)
      throw new InvalidSpecError('ephemeral', 'chroot environments are always ephemeral; publish an image instead', {
        driver: DRIVER_NAME,
      });
    const { mode } = await this.mode();
    if (network.mode === 'private' && mode === 'rootless')
      throw new InvalidSpecError(
        'network',
        `a rootless chroot cannot join network "${network.network}": its veth pair and bridge need root on the host; ` +
          'use "none" or "host", or run as root (mode "root")',
        { driver: DRIVER_NAME },
      );
    const runner = this.#runner;
    const undo = chrootUndo(runner, this.#options.networks);
    throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });
    const agentBinary = await this.#agentBinary();
    // The image is resolved before the environment exists: a download holds no lease.
    const image = checked.image ?? (await ensureDefaultImage(this.#cacheDir, runner, opts.onEvent));
    emit(opts.onEvent, { type: 'image-resolve', reference: image });
    const { images, cache } = await this.#images(specImages);
    const resolved = await resolveImage(image, {
      ...images,
      cache,
      runner,
      onEvent: opts.onEvent,
      signal: opts.signal,
    });
    const base = await imageRootDirectory(resolved, { cache, runner, onEvent: opts.onEvent });
    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      undo,
      create: async ({ id, lease, stateDir, throwIfAborted }) => {
        const context = { envId: id, driver: DRIVER_NAME, op: 'open' };
        const envDir = join(stateDir, 'envs', id);
        await lease.add({ kind: 'dir', path: envDir });
        // The extracted image is the overlay's lower layer: pruning the cache must leave it while this runs.
        const hold = await cache.holdTree(base, id);
        if (hold) await lease.add({ kind: 'dir', path: hold });
        const layout: RootLayout = {
          base,
          upper: join(envDir, 'upper'),
          work: join(envDir, 'work'),
          root: join(envDir, 'root'),
        };
        for (const dir of [layout.upper, layout.work, layout.root]) await mkdir(dir, { recursive: true, mode: 0o755 });
        const ctx = await this.#mountContext(mode, lease, runner, [layout.upper, layout.work]);
        // Recorded before mounting: a crash half-way leaves a lease gc() can finish.
        if (mode === 'root') await lease.add({ kind: 'mount', path: layout.root, recursive: true });
        await mountOverlay(layout, ctx);
        const netns = network.mode === 'host' ? undefined : join(envDir, 'netns');
        if (netns) {
          if (mode === 'root') await lease.add({ kind: 'mount', path: netns });
          await createNetworkNamespace(netns, ctx);
        }
        const link =
          netns && network.mode === 'private'
            ? await joinNetwork(runner, this.#options.networks ?? {}, {
                id,
                stateDir,
                network: network.network,
                netns,
                lease,
              })
            : undefined;
        const dns: DnsSource = {
          hostDns: (checked.driverOptions as ChrootEnvOptions | undefined)?.hostDns !== false,
          link,
        };
        throwIfAborted();
        const socket = await socketPath(envDir, lease);
        const startAgent = async () => {
          const server = await startAgentServer(runner, {
            binary: agentBinary,
            enter: ctx.enter,
            root: layout.root,
            linux32,
            netns,
            socket,
            // Through a sudo runner the agent is root while this process is not: give it the socket.
            owner: mode === 'root' ? process.getuid?.() : undefined,
            binds: checked.mounts ?? [],
          });
          try {
            if (server.process) await lease.add({ kind: 'process', ...server.process });
            const session = await AgentSession.connect(socket);
            await writeDnsFiles(session, dns);
            return { server, session };
          } catch (err) {
            await server.stop();
            // The agent's own errors (a lost connection, a failed write) leave as the SDK's typed ones.
            throw agentError(err, context, socket);
          }
        };
        let agent = await startAgent();
        return new ChrootEnvironment({
          id,
          driver: DRIVER_NAME,
          capabilities: capabilitiesOf(network),
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session: agent.session,
          hostRunner: runner,
          hostAgent: { socket, binary: agentBinary },
          env: checked.env ?? {},
          checkUser: ctx.ids ? (resolved, user) => checkMapped(ctx.ids!, resolved, user) : undefined,
          // Revert: the agent and its namespaces go, the overlay's upper layer is emptied, both come back.
          restart: async () => {
            agent.session.close();
            await agent.server.stop();
            await ctx.run(['umount', layout.root]);
            // Removed from inside the namespace that owns the files (subordinate ids in rootless mode).
            await ctx.run(['rm', '-rf', '--one-file-system', '--', layout.upper, layout.work]);
            await ctx.run(['mkdir', '-m', '0755', '--', layout.upper, layout.work]);
            await mountOverlay(layout, ctx);
            agent = await startAgent();
            return agent.session;
          },
          destroy: async () => {
            await agent.server.stop();
            await lease.release(undo);
          },
        });
      },
    });
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    const report = await leaseGc(
      opts.stateDir ?? defaultStateDir(),
      DRIVER_NAME,
      chrootUndo(this.#runner, this.#options.networks),
    );
    // A killed open may have left a partial download or a half-extracted tree in the image cache.
    return sweepImageCache(report, this.#images());
  }

  /** Image settings (the user's configuration and EXECENV_* variables, then the driver's, then the spec's) and their cache. */
  async #images(forEnvironment?: ChrootImageSources) {
    return driverImages(this.#options.cacheDir, this.#options.images, forEnvironment);
  }

  /** The agent binary for this host, shipped in @execenv/agent. */
  async #agentBinary(): Promise<string> {
    try {
      return await agentBinaryPath(hostArch());
    } catch (err) {
      throw new DriverUnavailableError(DRIVER_NAME, (err as Error).message, { cause: err });
    }
  }

  /** In rootless mode, starts the process whose user and mount namespace hold the mounts. */
  async #mountContext(
    mode: ChrootMode,
    lease: Lease,
    runner: ProcessRunner,
    ownedTrees: readonly string[],
  ): Promise<MountContext & { enter: string[]; ids?: IdMap }> {
    const env = { PATH: HOST_PATH };
    if (mode === 'root')
      return {
        mode,
        enter: [],
        run: (argv) => runner.run(argv, { env }),
        hostPath: (p) => p,
      };
    const sub = await this.#subordinateIds();
    const mapArgs = rootlessMapArgs(sub);
    // Recorded before the holder, so undone after it is gone: by then nothing is mounted on them.
    for (const tree of ownedTrees) await lease.add(mappedTree(tree, mapArgs));
    const holder = runner.spawn(
      ['unshare', '--user', ...mapArgs, '--mount', '--propagation', 'private', '--', 'sleep', 'infinity'],
      { env, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' },
    );
    const pid = holder.pid;
    const startTime = pid ? await waitForNamespace(pid) : undefined;
    if (!pid || !startTime) {
      holder.kill('SIGKILL');
      throw new DriverUnavailableError(
        DRIVER_NAME,
        'could not create a user namespace (unshare --user --map-root-user failed); is kernel.unprivileged_userns_clone enabled?',
      );
    }
    await lease.add({ kind: 'process', pid, startTime });
    const enter = ['nsenter', `--target=${pid}`, '--user', '--mount'];
    return {
      mode,
      enter,
      ids: rootlessIdMap(process.getuid?.() ?? 0, process.getgid?.() ?? 0, sub),
      run: (argv) => runner.run([...enter, ...argv], { env }),
      hostPath: (p) => `/proc/${pid}/root${p}`,
    };
  }
}

/** Waits until the holder has entered its namespaces (it execs sleep), returning its start time. */
async function waitForNamespace(pid: number): Promise<string | undefined> {
  for (let i = 0; i < 200; i++) {
    const exe = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => undefined);
    if (exe === undefined) return undefined;
    if (exe.trim() === 'sleep') return processStartTime(pid);
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}

/** What an environment has a network for: the host's, or a private one it joined. */
function capabilitiesOf(network: NetworkMode): Capability[] {
  return ['isolation-chroot', 'root', 'revert', ...(network.mode === 'none' ? [] : (['network'] as const))];
}

/** What the environment's resolv.conf and hosts are made of. */
interface DnsSource {
  /** Copy the host's files (driverOptions.hostDns). */
  hostDns: boolean;
  /** The private network the environment joined, whose dnsmasq answers it. */
  link: NamespaceLink | undefined;
}

/**
 * Writes the environment's resolv.conf and hosts through its agent: on a
 * private network the network's resolv.conf (the image's stays when the
 * network has no DNS), else the host's when `hostDns`; the host's hosts when `hostDns`.
 */
async function writeDnsFiles(session: AgentSession, dns: DnsSource): Promise<void> {
  const files: [string, Buffer | undefined][] = [
    ['/etc/resolv.conf', await resolvConfFor(dns)],
    ['/etc/hosts', dns.hostDns ? await readHostFile('/etc/hosts') : undefined],
  ];
  for (const [file, content] of files)
    if (content) await session.writeFile(file, Readable.from([content]), { mode: 0o644, uid: 0, gid: 0 });
}

async function resolvConfFor(dns: DnsSource): Promise<Buffer | undefined> {
  if (!dns.link) return dns.hostDns ? readHostFile('/etc/resolv.conf') : undefined;
  const conf = resolvConf(dns.link);
  return conf === undefined ? undefined : Buffer.from(conf);
}

/** A host file's content; undefined when the host has none (nothing to copy). */
function readHostFile(file: string): Promise<Buffer | undefined> {
  return readFile(file).catch(() => undefined);
}

/** Refuses a user whose ids the rootless environment's user namespace does not map. */
function checkMapped(ids: IdMap, user: { uid: number; gid: number }, name: string): void {
  if (toHostId(ids.uids, user.uid) === undefined || toHostId(ids.gids, user.gid) === undefined)
    throw new InvalidSpecError(
      'user',
      `${name} (${user.uid}:${user.gid}) is not mapped in this rootless environment; give the user subordinate ids in /etc/subuid and /etc/subgid`,
    );
}

/** The agent's socket: in the environment's directory, or a private temporary one when that path is too long. */
async function socketPath(envDir: string, lease: Lease): Promise<string> {
  const inEnvDir = join(envDir, 'agent.sock');
  if (Buffer.byteLength(inEnvDir) <= MAX_SOCKET_PATH) return inEnvDir;
  const dir = await mkdtemp(join(tmpdir(), 'execenv-'));
  await lease.add({ kind: 'dir', path: dir });
  return join(dir, 'agent.sock');
}

/** Reads `spec.network` (networkMode of @execenv/net), naming this driver on a bad name's error. */
function checkedNetwork(network: string | undefined, context: { driver: string; op: string }): NetworkMode {
  try {
    return networkMode(network);
  } catch (err) {
    throw withContext(err, context);
  }
}
