import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { agentBinaryPath } from '@execenv/agent';
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
  type Lease,
  type LeaseResource,
  type OpenOptions,
  type ProcessRunner,
  parseSize,
  processStartTime,
  throwIfAborted,
  type Undo,
  validateSpec,
} from '@execenv/core';
import {
  findBinary,
  HOST_PATH,
  hostArch,
  isStaticElf,
  leaseGc,
  leaseList,
  openWithLease,
  unsupportedField,
} from '@execenv/core/driver';
import {
  convertToQcow2,
  driverImages,
  type ImageSettings,
  imageRootDirectory,
  QemuImg,
  resolveImage,
  sweepImageCache,
} from '@execenv/images';
import {
  leaseJoin,
  NETWORK_LEASE_KIND,
  type NetworkMode,
  networkMode,
  releaseLeasedJoin,
  resolvConf,
} from '@execenv/net';
import { type AccelChoice, chooseAccel, hostTscKhz, type KvmProbe, probeKvm } from './accel.js';
import { DiskSnapshots } from './disk-snapshots.js';
import { startGuest } from './guest.js';
import { type GuestNetwork, type QemuNic, userNetwork } from './guest-network.js';
import { GuestSession } from './guest-session.js';
import { buildInitramfs, checkGuestBinds, guestInitramfs } from './initramfs.js';
import { loadKernel, type QemuKernel } from './kernel.js';
import { ROOT_DRIVE } from './qemu-command.js';
import { QemuEnvironment } from './qemu-environment.js';
import { type CheckedEnvOptions, checkEnvOptions, type QemuDriverOptions } from './qemu-options.js';
import { GUEST_PULL_DIR, GUEST_STAGING_DIR, PULL_TAG, PullStaging, PushStaging, STAGING_TAG } from './staging.js';

/**
 * The registry name of this driver.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { DRIVER_NAME } from '@execenv/qemu'; // importing the package registers the driver
 * const env = await open(DRIVER_NAME, { image: './rootfs.tar.zst' }); // the kernel from EXECENV_QEMU_KERNEL
 * await env.close();
 * ```
 */
export const DRIVER_NAME = 'qemu';

const DEFAULT_MEMORY_MIB = 512;
const DEFAULT_BOOT_TIMEOUT_MS = 120_000;
/** What every environment of this driver can do. */
const CAPABILITIES: readonly Capability[] = [
  'isolation-machine',
  'root',
  'resource-limits',
  'revert',
  'reboot',
  'snapshot',
];
/** Longest path a unix socket address holds. */
const MAX_SOCKET_PATH = 107;

/** QEMU binaries by Debian architecture of the guest. */
const SYSTEM_BINARY: Readonly<Record<string, string>> = {
  amd64: 'qemu-system-x86_64',
  i386: 'qemu-system-x86_64',
  arm64: 'qemu-system-aarch64',
};

/**
 * QemuDriver opens virtual machines: a fresh qcow2 overlay on a cached base
 * disk made from the image, a kernel booted directly with a small initramfs
 * whose init runs the execenv agent on a virtio serial port, and QMP for
 * control. Exec and files go through the agent, whose root is the guest's
 * disk. Where KVM does not work the guest runs under TCG, and says so.
 *
 * @example
 * ```ts
 * import { QemuDriver } from '@execenv/qemu';
 * const driver = new QemuDriver({ kernel: process.env.EXECENV_QEMU_KERNEL });
 * console.log((await driver.accel()).reason); // KVM, or why TCG
 * const env = await driver.open({ image: './rootfs.tar.zst', resources: { cpu: 2, memory: '1G' } });
 * try {
 *   console.log((await env.exec(['uname', '-r'])).stdout); // the guest's kernel, not the host's
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class QemuDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<QemuDriverOptions>;
  readonly #initramfs = new Map<string, Promise<string>>();
  #kvmProbe: Promise<KvmProbe> | undefined;

  constructor(options: QemuDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  get #runner(): ProcessRunner {
    return this.#options.runner ?? hostRunner();
  }

  get #cacheDir(): string {
    return this.#options.cacheDir ?? defaultCacheDir();
  }

  get #binary(): string {
    return this.#options.binary ?? SYSTEM_BINARY[hostArch()] ?? 'qemu-system-x86_64';
  }

  /**
   * The accelerator guests will use, and why. With `accel: 'auto'` QEMU is
   * started once with KVM (the first call; later ones reuse its answer):
   * KVM when that works, else TCG with QEMU's reason.
   */
  async accel(): Promise<AccelChoice> {
    const asked = this.#options.accel ?? 'auto';
    if (asked !== 'auto') return chooseAccel(asked, { works: asked === 'kvm' });
    this.#kvmProbe ??= probeKvm(this.#runner, this.#binary, this.#options.machine ?? 'microvm');
    return chooseAccel(asked, await this.#kvmProbe);
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = [...CAPABILITIES, 'network'];
    const unavailable = (reason: string): Availability => ({ available: false, reason, capabilities });
    const binary = this.#binary;
    if (!binary.includes('/') && !(await findBinary(binary)))
      return unavailable(`${binary} not found: apt-get install --no-install-recommends qemu-system-x86 qemu-utils`);
    if (!(await findBinary('qemu-img'))) return unavailable('qemu-img not found: apt-get install qemu-utils');
    try {
      await this.#kernel();
    } catch (err) {
      return unavailable((err as Error).message);
    }
    const busybox = this.#options.busybox ?? '/bin/busybox';
    if (!(await isStaticElf(busybox)))
      return unavailable(`${busybox} is missing or not static: apt-get install busybox-static`);
    const agent = await this.#agentBinary().catch((err: Error) => err);
    if (agent instanceof Error) return unavailable(agent.message);
    const version = (await this.#runner.run([binary, '--version'], { check: false, env: { PATH: HOST_PATH } })).stdout
      .split('\n')[0]
      ?.trim();
    const accel = await this.accel();
    return { available: true, reason: accel.reason, version, capabilities, details: { accel: accel.accel } };
  }

  async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<QemuEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const context = { driver: DRIVER_NAME, op: 'open' };
    const network = networkMode(checked.network);
    if (network.mode === 'host')
      throw new InvalidSpecError(
        'network',
        'a guest has a kernel of its own and cannot share the host\'s network: use "nat" or a named network',
        context,
      );
    const envOptions = checkEnvOptions(checked.driverOptions, checked.network ?? 'none');
    if (network.mode === 'private' && !envOptions.userNetwork && process.getuid?.() !== 0)
      throw new InvalidSpecError(
        'network',
        `a guest on network "${network.network}" gets a tap on a bridge of this host, which needs root; ` +
          'without root, use network "nat" with driverOptions.userNetwork (QEMU user-mode networking)',
        context,
      );
    const mounts = checked.mounts ?? [];
    for (const [i, m] of mounts.entries())
      if (!(await stat(m.source).catch(() => undefined))?.isDirectory())
        throw new InvalidSpecError(
          `mounts[${i}].source`,
          `${m.source} is not a directory on the host: guests share whole directories (9p)`,
          context,
        );
    if (checked.arch && checked.arch !== hostArch())
      throw new InvalidSpecError(
        'arch',
        `guests run the host's architecture (${hostArch()}), not ${checked.arch}`,
        context,
      );
    if (checked.ephemeral === false)
      throw new InvalidSpecError(
        'ephemeral',
        'qemu environments are always ephemeral; publish an image instead',
        context,
      );
    if (!checked.image)
      throw new InvalidSpecError(
        'image',
        'the qemu driver needs an image: a root filesystem tarball or a qcow2/raw disk',
        context,
      );
    const binds = mounts.map((m, i) => ({ tag: `execenv${i}`, target: m.target, readOnly: !!m.readOnly }));
    // Pushed archives cross into the guest through this read-only share (see GuestSession).
    const stagingBind = { tag: STAGING_TAG, target: GUEST_STAGING_DIR, readOnly: true };
    try {
      checkGuestBinds(binds);
    } catch (err) {
      throw new InvalidSpecError('mounts', (err as Error).message, context);
    }
    const memoryMiB = checked.resources?.memory
      ? Math.ceil(parseSize(checked.resources.memory)! / 2 ** 20)
      : (this.#options.memoryMiB ?? DEFAULT_MEMORY_MIB);
    if (memoryMiB < 128)
      throw new InvalidSpecError('resources.memory', `a guest needs at least 128 MiB, got ${memoryMiB} MiB`, context);
    if (checked.resources?.disk)
      throw unsupportedField(DRIVER_NAME, 'resources.disk', 'the overlay takes the size of its base image');
    const runner = this.#runner;
    const undo = this.#undo();
    throwIfAborted(opts.signal, ['open'], { driver: DRIVER_NAME, op: 'open' });
    const kernel = await this.#kernel();
    const initramfs = await this.#initramfsFor(kernel);
    const accel = await this.accel();
    if (accel.accel === 'tcg' && (this.#options.accel ?? 'auto') === 'auto')
      emit(opts.onEvent, { type: 'warning', message: `qemu: ${accel.reason}` });
    const base = await this.#baseDisk(checked.image, envOptions.images, opts);
    const tscKhz = accel.accel === 'tcg' ? await hostTscKhz() : undefined;
    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      undo,
      create: async ({ id, lease, stateDir, throwIfAborted }) => {
        const envDir = join(stateDir, 'envs', id);
        await lease.add({ kind: 'dir', path: envDir });
        await mkdir(envDir, { recursive: true, mode: 0o700 });
        if (Buffer.byteLength(join(envDir, 'qmp.sock')) > MAX_SOCKET_PATH)
          throw new InvalidSpecError('stateDir', `${envDir} is too long for a unix socket path`, context);
        const net = await this.#joinNetwork(network, envOptions, { id, lease, stateDir });
        const staging = {
          push: await PushStaging.create(join(envDir, 'stage'), GUEST_STAGING_DIR, { context: { envId: id } }),
          pull: await PullStaging.create(join(envDir, 'pull'), GUEST_PULL_DIR, { context: { envId: id } }),
        };
        const bootInitramfs = await guestInitramfs(
          initramfs,
          { binds: [...binds, stagingBind], pullTag: PULL_TAG, network: net?.guest },
          join(envDir, 'initramfs.cpio.gz'),
        );
        const disk = join(envDir, 'disk.qcow2');
        const qemuImg = new QemuImg(runner);
        const freshDisk = () => qemuImg.create(disk, { backingFile: base.path, backingFormat: base.format });
        await freshDisk();
        throwIfAborted();
        const boot = () => {
          emit(opts.onEvent, { type: 'boot', envId: id, driver: DRIVER_NAME });
          return startGuest({
            runner,
            envId: id,
            bootTimeoutMs: this.#options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
            machine: {
              binary: this.#binary,
              machine: this.#options.machine ?? 'microvm',
              accel: accel.accel,
              cpus: checked.resources?.cpu ?? 1,
              memoryMiB,
              kernel,
              initramfs: bootInitramfs,
              disk,
              shares: [
                ...mounts.map((m, i) => ({ tag: `execenv${i}`, path: m.source, readOnly: !!m.readOnly })),
                { tag: STAGING_TAG, path: staging.push.hostDir, readOnly: true },
                // The guest writes here: mapped-file makes whatever it creates a plain file on the host.
                { tag: PULL_TAG, path: staging.pull.hostDir, readOnly: false, security: 'mapped-file' },
              ],
              agentSocket: join(envDir, 'agent.sock'),
              qmpSocket: join(envDir, 'qmp.sock'),
              consoleLog: join(envDir, 'console.log'),
              tscKhz,
              nic: net?.nic,
            },
            onStarted: async (pid) => {
              const startTime = await processStartTime(pid);
              if (startTime) await lease.add({ kind: 'process', pid, startTime });
            },
          });
        };
        let guest = await boot();
        const snapshots = new DiskSnapshots({
          disk,
          device: ROOT_DRIVE,
          qemuImg,
          qmp: () => guest.qmp,
          context: { envId: id },
        });
        return new QemuEnvironment({
          id,
          driver: DRIVER_NAME,
          capabilities: [
            ...CAPABILITIES,
            ...(net ? (['network'] as const) : []),
            ...(net?.nic.kind === 'user' && net.nic.forwards.length > 0 ? (['port-forwarding'] as const) : []),
          ],
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session: new GuestSession(guest.session, staging, runner),
          hostRunner: runner,
          env: checked.env ?? {},
          restart: async ({ graceful, whileStopped }) => {
            await guest.stop({ graceful });
            await whileStopped?.();
            guest = await boot();
            return new GuestSession(guest.session, staging, runner);
          },
          freshDisk,
          snapshots,
          destroy: async () => {
            await guest.stop();
            await lease.release(undo);
          },
        });
      },
    });
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  /**
   * Removes what dead owners left: their guests, overlays, sockets and
   * network attachments (by lease), and what killed processes left in the
   * image cache (partial downloads, half-made conversions).
   */
  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    const report = await leaseGc(opts.stateDir ?? defaultStateDir(), DRIVER_NAME, this.#undo());
    return sweepImageCache(report, this.#images());
  }

  /** Image settings (the user's configuration and EXECENV_* variables, then the driver's, then the spec's) and their cache. */
  #images(forEnvironment?: ImageSettings) {
    return driverImages(this.#options.cacheDir, this.#options.images, forEnvironment);
  }

  /** Undoes one lease resource: a guest's network through @execenv/net, the rest as core does. */
  #undo(): Undo {
    const host = hostUndo(this.#runner);
    return async (resource: LeaseResource) =>
      resource.kind === NETWORK_LEASE_KIND
        ? releaseLeasedJoin(this.#runner, this.#options.networks ?? {}, resource)
        : host(resource);
  }

  /**
   * The guest's NIC and what its init configures: QEMU's user-mode network
   * when asked for, else a tap on the @execenv/net bridge of a private
   * network, recorded in the lease before it is made (the holder is the env
   * id, so close, a failed open and gc release it); none for `none`.
   */
  async #joinNetwork(
    network: NetworkMode,
    envOptions: CheckedEnvOptions,
    ctx: { id: string; lease: Lease; stateDir: string },
  ): Promise<{ nic: QemuNic; guest: GuestNetwork } | undefined> {
    if (envOptions.userNetwork) return userNetwork(envOptions.userNetwork.forwards);
    if (network.mode !== 'private') return undefined;
    const networks = await leaseJoin(this.#runner, this.#options.networks ?? {}, { ...ctx, network: network.network });
    const link = await networks.attachTap({ network: network.network, holder: ctx.id });
    return {
      nic: { kind: 'tap', tap: link.tap, mac: link.mac },
      guest: {
        mac: link.mac,
        address: link.address,
        prefixLength: link.prefixLength,
        gateway: link.gateway,
        resolvConf: resolvConf(link),
      },
    };
  }

  async #kernel(): Promise<QemuKernel> {
    const dir = this.#options.kernel ?? process.env.EXECENV_QEMU_KERNEL;
    if (!dir)
      throw new DriverUnavailableError(
        DRIVER_NAME,
        'no guest kernel: pass the kernel option or set EXECENV_QEMU_KERNEL to a directory built by tools/fixtures/qemu-kernel.sh',
      );
    return loadKernel(dir);
  }

  /** The initramfs for a kernel, built once per driver and kernel. */
  #initramfsFor(kernel: QemuKernel): Promise<string> {
    let built = this.#initramfs.get(kernel.modulesDir);
    if (!built) {
      built = this.#agentBinary().then((agent) =>
        buildInitramfs(
          { kernel, agent, busybox: this.#options.busybox ?? '/bin/busybox' },
          join(this.#cacheDir, 'qemu'),
        ),
      );
      built.catch(() => this.#initramfs.delete(kernel.modulesDir));
      this.#initramfs.set(kernel.modulesDir, built);
    }
    return built;
  }

  /** The cached, never written, base disk of an image: a disk as given, or a root filesystem made into one. */
  async #baseDisk(
    image: string,
    specImages: ImageSettings | undefined,
    opts: OpenOptions,
  ): Promise<{ path: string; format: string }> {
    const runner = this.#runner;
    emit(opts.onEvent, { type: 'image-resolve', reference: image });
    const { images, cache } = await this.#images(specImages);
    const resolved = await resolveImage(image, {
      ...images,
      cache,
      runner,
      onEvent: opts.onEvent,
      signal: opts.signal,
    });
    if (resolved.kind === 'disk') return { path: resolved.path, format: resolved.format };
    const ctx = { cache, runner, onEvent: opts.onEvent };
    const tree = await imageRootDirectory(resolved, ctx);
    const disk = await convertToQcow2(tree, { size: this.#options.diskSize ?? '2G' }, ctx);
    return { path: disk.path, format: 'qcow2' };
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
