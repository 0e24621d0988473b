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
import { elfArch, rootArch } from './binary-arch.js';
import { DiskSnapshots } from './disk-snapshots.js';
import { startGuest } from './guest.js';
import { type GuestNetwork, type QemuNic, userNetwork } from './guest-network.js';
import { GuestSession } from './guest-session.js';
import { buildInitramfs, checkGuestBinds, guestInitramfs } from './initramfs.js';
import { loadKernel, type QemuKernel } from './kernel.js';
import { QEMU_ARCHES, type QemuArch, type QemuMachineType, ROOT_DRIVE } from './qemu-command.js';
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

/** The Debian package of each architecture's QEMU system emulator. */
const EMULATOR_PACKAGE: Readonly<Record<QemuArch, string>> = { amd64: 'qemu-system-x86', arm64: 'qemu-system-arm' };

/** What a driver boots, after the checks of its options. */
interface Target {
  arch: QemuArch;
  machine: QemuMachineType;
  binary: string;
  /** Whether the guest's architecture is the host's (KVM is possible, host binaries fit). */
  native: boolean;
}

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

  /**
   * The guest architecture, machine type and emulator, from the options.
   * @throws InvalidSpecError for an architecture the driver does not boot, a machine type of another
   * architecture, or KVM asked for a guest of another architecture than the host's.
   */
  #target(): Target {
    const context = { driver: DRIVER_NAME, op: 'open' };
    const host = hostArch();
    const asked = this.#options.arch;
    if (asked !== undefined && !Object.hasOwn(QEMU_ARCHES, asked))
      throw new InvalidSpecError(
        'options.arch',
        `the qemu driver boots ${Object.keys(QEMU_ARCHES).join(' and ')} guests, not ${JSON.stringify(asked)}`,
        context,
      );
    const arch: QemuArch = asked ?? (host === 'arm64' ? 'arm64' : 'amd64');
    const { machines, binary } = QEMU_ARCHES[arch];
    const machine = this.#options.machine ?? machines[0]!;
    if (!machines.includes(machine))
      throw new InvalidSpecError(
        'options.machine',
        `${JSON.stringify(machine)} is no machine type for ${arch} guests: use ${machines.map((m) => `"${m}"`).join(', ')}`,
        context,
      );
    const native = arch === host || (arch === 'amd64' && host === 'i386');
    if (!native && this.#options.accel === 'kvm')
      throw new InvalidSpecError(
        'options.accel',
        `KVM runs guests of the host's architecture (${host}) only; an ${arch} guest needs accel "tcg" or "auto"`,
        context,
      );
    return { arch, machine, binary: this.#options.binary ?? binary, native };
  }

  /**
   * The accelerator guests will use, and why. With `accel: 'auto'` QEMU is
   * started once with KVM (the first call; later ones reuse its answer):
   * KVM when that works, else TCG with QEMU's reason. A guest of another
   * architecture than the host's always runs under TCG, which the reason says.
   * @throws InvalidSpecError when the options are inconsistent (see QemuDriverOptions.arch).
   */
  async accel(): Promise<AccelChoice> {
    const asked = this.#options.accel ?? 'auto';
    const target = this.#target();
    if (!target.native && asked === 'auto')
      return {
        accel: 'tcg',
        reason: `an ${target.arch} guest on an ${hostArch()} host: software emulation (TCG), since KVM runs the host's architecture only`,
      };
    if (asked !== 'auto') return chooseAccel(asked, { works: asked === 'kvm' });
    this.#kvmProbe ??= probeKvm(this.#runner, target.binary, target.machine);
    return chooseAccel(asked, await this.#kvmProbe);
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = [...CAPABILITIES, 'network'];
    const unavailable = (reason: string): Availability => ({ available: false, reason, capabilities });
    let target: Target;
    try {
      target = this.#target();
    } catch (err) {
      return unavailable((err as Error).message);
    }
    const { binary } = target;
    if (!binary.includes('/') && !(await findBinary(binary)))
      return unavailable(
        `${binary} not found: apt-get install --no-install-recommends ${EMULATOR_PACKAGE[target.arch]} qemu-utils`,
      );
    if (!(await findBinary('qemu-img'))) return unavailable('qemu-img not found: apt-get install qemu-utils');
    try {
      await this.#kernel(target);
      await this.#busybox(target);
    } catch (err) {
      return unavailable((err as Error).message);
    }
    const agent = await this.#agentBinary(target.arch).catch((err: Error) => err);
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
    const target = this.#target();
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
    if (checked.arch && checked.arch !== target.arch)
      throw new InvalidSpecError(
        'arch',
        `this qemu driver boots ${target.arch} guests, not ${checked.arch}: make one with the arch option ` +
          `(new QemuDriver({ arch: '${checked.arch}', kernel, busybox }))`,
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
    const kernel = await this.#kernel(target);
    const initramfs = await this.#initramfsFor(kernel, target);
    const accel = await this.accel();
    if (accel.accel === 'tcg' && (this.#options.accel ?? 'auto') === 'auto')
      emit(opts.onEvent, { type: 'warning', message: `qemu: ${accel.reason}` });
    const base = await this.#baseDisk(checked.image, envOptions.images, opts, target.arch);
    const tscKhz = accel.accel === 'tcg' && target.arch === 'amd64' ? await hostTscKhz() : undefined;
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
              binary: target.binary,
              machine: target.machine,
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

  /**
   * The guest kernel: the kernel option, else EXECENV_QEMU_KERNEL for guests of the host's
   * architecture and EXECENV_QEMU_KERNEL_ARM64 (say) for others.
   * @throws DriverUnavailableError when there is none, or it is built for another architecture.
   */
  async #kernel(target: Target): Promise<QemuKernel> {
    const variable = target.native ? 'EXECENV_QEMU_KERNEL' : `EXECENV_QEMU_KERNEL_${target.arch.toUpperCase()}`;
    const dir = this.#options.kernel ?? process.env[variable];
    const fixture = target.arch === 'amd64' ? 'qemu-kernel.sh' : `qemu-kernel-${target.arch}.sh`;
    if (!dir)
      throw new DriverUnavailableError(
        DRIVER_NAME,
        `no ${target.arch} guest kernel: pass the kernel option or set ${variable} to a directory built by tools/fixtures/${fixture}`,
      );
    const kernel = await loadKernel(dir);
    if (kernel.arch && kernel.arch !== target.arch)
      throw new DriverUnavailableError(
        DRIVER_NAME,
        `the kernel ${kernel.image} is built for ${kernel.arch}, not for the ${target.arch} guests this driver boots; ` +
          `build an ${target.arch} one with tools/fixtures/${fixture}`,
      );
    return kernel;
  }

  /**
   * The static busybox the initramfs runs its init with: the busybox option, else the host's
   * /bin/busybox for guests of the host's architecture; guests of another need the option.
   * @throws DriverUnavailableError when it is missing, not static, or built for another architecture.
   */
  async #busybox(target: Target): Promise<string> {
    const busybox = this.#options.busybox ?? (target.native ? '/bin/busybox' : undefined);
    const fetch = target.native
      ? 'apt-get install busybox-static'
      : `tools/fixtures/busybox-static-${target.arch}.sh fetches Debian's busybox-static:${target.arch}`;
    if (!busybox)
      throw new DriverUnavailableError(
        DRIVER_NAME,
        `${target.arch} guests need a static ${target.arch} busybox for their initramfs: pass the busybox option (${fetch})`,
      );
    if (!(await isStaticElf(busybox)))
      throw new DriverUnavailableError(DRIVER_NAME, `${busybox} is missing or not static: ${fetch}`);
    const arch = await elfArch(busybox);
    if (!runsOn(arch, target.arch))
      throw new DriverUnavailableError(
        DRIVER_NAME,
        `${busybox} is built for ${arch}, not for the ${target.arch} guests this driver boots: ${fetch}`,
      );
    return busybox;
  }

  /** The initramfs for a kernel, built once per driver and kernel. */
  #initramfsFor(kernel: QemuKernel, target: Target): Promise<string> {
    let built = this.#initramfs.get(kernel.modulesDir);
    if (!built) {
      built = Promise.all([this.#agentBinary(target.arch), this.#busybox(target)]).then(([agent, busybox]) =>
        buildInitramfs({ kernel, agent, busybox }, join(this.#cacheDir, 'qemu')),
      );
      built.catch(() => this.#initramfs.delete(kernel.modulesDir));
      this.#initramfs.set(kernel.modulesDir, built);
    }
    return built;
  }

  /**
   * The cached, never written, base disk of an image: a disk as given, or a root filesystem made into one.
   * @throws InvalidSpecError when the root filesystem's programs are built for another architecture than `arch`.
   */
  async #baseDisk(
    image: string,
    specImages: ImageSettings | undefined,
    opts: OpenOptions,
    arch: QemuArch,
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
    // A root of another architecture would boot as far as a kernel panic (init cannot run): say so instead.
    const programs = await rootArch(tree);
    if (programs && !runsOn(programs, arch))
      throw new InvalidSpecError(
        'image',
        `${image} holds ${programs} programs (its /bin/sh), but this qemu driver boots ${arch} guests: ` +
          `use an ${arch} image, or a driver with arch: '${programs}'`,
        { driver: DRIVER_NAME, op: 'open' },
      );
    const disk = await convertToQcow2(tree, { size: this.#options.diskSize ?? '2G' }, ctx);
    return { path: disk.path, format: 'qcow2' };
  }

  /** The agent binary for the guest's architecture, shipped in @execenv/agent. */
  async #agentBinary(arch: QemuArch): Promise<string> {
    try {
      return await agentBinaryPath(arch);
    } catch (err) {
      throw new DriverUnavailableError(DRIVER_NAME, (err as Error).message, { cause: err });
    }
  }
}

/** Whether programs built for `programs` run on a kernel of `guest`: the same architecture, or i386 on amd64. */
function runsOn(programs: string | undefined, guest: QemuArch): boolean {
  return programs === guest || (programs === 'i386' && guest === 'amd64');
}
