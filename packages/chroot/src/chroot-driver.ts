import { copyFile, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Availability,
  type Capability,
  collectDeadLeases,
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
  isAlive,
  Lease,
  type LeaseResource,
  newEnvironmentId,
  type OpenOptions,
  type ProcessRunner,
  processStartTime,
  readLeases,
  resolveInRoot,
  throwIfAborted,
  UnsupportedError,
  validateSpec,
} from '@execenv/core';
import { ImageCache, imageRootDirectory, resolveImage } from '@execenv/images';
import { ChrootEnvironment } from './chroot-environment.js';
import { createNetworkNamespace, type MountContext, mountBinds, mountRoot, type RootLayout } from './chroot-mounts.js';
import { CHROOT_NETWORKS, type ChrootDriverOptions, type ChrootEnvOptions, type ChrootMode } from './chroot-options.js';
import { ensureDefaultImage } from './default-image.js';
import { ensureExecServer, MAX_SOCKET_PATH, startExecServer } from './exec-server.js';
import { findBinary, HOST_PATH } from './host-binaries.js';
import { chrootUndo, mappedTree } from './mapped-tree.js';

import { currentSubordinateIds, rootlessIdMap, rootlessMapArgs } from './subordinate-ids.js';

/** The registry name of this driver. */
export const DRIVER_NAME = 'chroot';

const HOST_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  ia32: 'i386',
  ppc64: 'ppc64el',
  s390x: 's390x',
};

/**
 * ChrootDriver opens chroot environments: an overlay over a cached root
 * filesystem, with every command in its own mount and pid namespace.
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
    if (!(await findBinary(this.#options.cc ?? 'cc')))
      return {
        available: false,
        reason: 'needs a C compiler once to build its exec server: apt-get install gcc libc6-dev',
        capabilities,
      };
    const version = (
      await this.#runner.run(['unshare', '--version'], { check: false, env: { PATH: HOST_PATH } })
    ).stdout.trim();
    return { available: true, reason, version, capabilities, details: { mode } };
  }

  async open(spec: EnvSpec<ChrootEnvOptions>, opts: OpenOptions = {}): Promise<ChrootEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const network = checked.network ?? 'none';
    if (!(CHROOT_NETWORKS as readonly string[]).includes(network))
      throw new InvalidSpecError(
        'network',
        `the chroot driver supports ${CHROOT_NETWORKS.join(' and ')}, got "${network}"`,
        {
          driver: DRIVER_NAME,
        },
      );
    if (checked.resources) throw new UnsupportedError(DRIVER_NAME, 'resource-limits', { op: 'open' });
    const hostArch = HOST_ARCH[process.arch];
    const linux32 = checked.arch === 'i386' && hostArch === 'amd64';
    if (checked.arch && checked.arch !== hostArch && !linux32)
      throw new InvalidSpecError(
        'arch',
        `a chroot runs the host's architecture (${hostArch}) or i386 on amd64, not ${checked.arch}`,
        {
          driver: DRIVER_NAME,
        },
      );
    if (checked.ephemeral === false)
      throw new InvalidSpecError('ephemeral', 'chroot environments are always ephemeral; publish an image instead', {
        driver: DRIVER_NAME,
      });
    throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });

    const started = performance.now();
    const runner = this.#runner;
    const { mode } = await this.mode();
    const stateDir = opts.stateDir ?? defaultStateDir();
    const image = checked.image ?? (await ensureDefaultImage(this.#cacheDir, runner, opts.onEvent));
    emit(opts.onEvent, { type: 'image-resolve', reference: image });
    const cache = new ImageCache({ dir: join(this.#cacheDir, 'images') });
    const resolved = await resolveImage(image, {
      ...this.#options.images,
      cache,
      runner,
      onEvent: opts.onEvent,
      signal: opts.signal,
    });
    const base = await imageRootDirectory(resolved, { cache, runner, onEvent: opts.onEvent });
    const execServerBinary = await ensureExecServer(this.#cacheDir, runner, this.#options.cc);
    throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });

    const id = newEnvironmentId();
    const lease = await Lease.create(stateDir, id, DRIVER_NAME, checked.labels);
    const undo = chrootUndo(runner);
    try {
      emit(opts.onEvent, { type: 'create', envId: id, driver: DRIVER_NAME });
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
      const hostRoot = ctx.hostPath(layout.root);
      const hostDns = (checked.driverOptions as ChrootEnvOptions | undefined)?.hostDns !== false;
      const prepareRoot = async () => {
        await mountRoot(layout, ctx);
        if (checked.mounts) await mountBinds(layout, checked.mounts, ctx);
        if (hostDns) await copyHostDns(hostRoot);
      };
      await prepareRoot();
      const netns = network === 'none' ? join(envDir, 'netns') : undefined;
      if (netns) {
        if (mode === 'root') await lease.add({ kind: 'mount', path: netns });
        await createNetworkNamespace(netns, ctx);
      }
      throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });
      const execServer = await startExecServer(runner, {
        binary: execServerBinary,
        enter: ctx.enter,
        root: layout.root,
        linux32,
        netns,
        socket: await socketPath(envDir, lease),
        // Through a sudo runner the server is root while this process is not: give it the socket.
        owner: mode === 'root' ? process.getuid?.() : undefined,
      });
      const env = new ChrootEnvironment({
        id,
        driver: DRIVER_NAME,
        capabilities: ['isolation-chroot', 'root', 'revert', ...(network === 'host' ? (['network'] as const) : [])],
        onEvent: opts.onEvent,
        closeOnSignal: opts.closeOnSignal,
        runner,
        lease,
        undo,
        hostRoot,
        ids: ctx.ids,
        execServer,
        // Revert: the root comes down, the overlay's upper layer is emptied, the root goes up again.
        resetRoot: async () => {
          // Lazily, as one tree: in a user namespace the rbind of /sys has locked submounts that cannot go one by one.
          await ctx.run(['umount', '--lazy', layout.root]);
          // Removed from inside the namespace that owns the files (subordinate ids in rootless mode).
          await ctx.run(['rm', '-rf', '--one-file-system', '--', layout.upper, layout.work]);
          await ctx.run(['mkdir', '-m', '0755', '--', layout.upper, layout.work]);
          await prepareRoot();
        },
        env: checked.env ?? {},
      });
      emit(opts.onEvent, {
        type: 'ready',
        envId: id,
        driver: DRIVER_NAME,
        durationMs: Math.round(performance.now() - started),
      });
      return env;
    } catch (err) {
      await lease.release(undo).catch(() => {});
      throw err;
    }
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    const records = await readLeases(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
    return Promise.all(
      records.map(async (r) => ({
        id: r.id,
        driver: r.driver,
        ownerAlive: await isAlive(r.owner),
        resources: r.resources.map(describeResource),
      })),
    );
  }

  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    return collectDeadLeases(opts.stateDir ?? defaultStateDir(), DRIVER_NAME, chrootUndo(this.#runner));
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

async function copyHostDns(hostRoot: string): Promise<void> {
  for (const file of ['/etc/resolv.conf', '/etc/hosts']) {
    const target = await resolveInRoot(hostRoot, file, { followFinal: true });
    await copyFile(file, target).catch(() => {
      // a host without the file, or an image without /etc: nothing to copy
    });
  }
}

function describeResource(r: LeaseResource): string {
  if (r.kind === 'process') return `process ${r.pid}`;
  return `${r.kind} ${String(r.path)}`;
}

/** The exec server's socket: in the environment's directory, or a private temporary one when that path is too long. */
async function socketPath(envDir: string, lease: Lease): Promise<string> {
  const inEnvDir = join(envDir, 'exec.sock');
  if (Buffer.byteLength(inEnvDir) <= MAX_SOCKET_PATH) return inEnvDir;
  const dir = await mkdtemp(join(tmpdir(), 'execenv-'));
  await lease.add({ kind: 'dir', path: dir });
  return join(dir, 'exec.sock');
}
