import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidSpecError } from '@execenv/core';
import { hostArch } from '@execenv/core/driver';
import { FakeRunner } from '@execenv/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elfArch, kernelImageArch, rootArch } from '../src/binary-arch.js';
import { machineArch, machineOption, type QemuMachine, qemuArgv } from '../src/qemu-command.js';
import { QemuDriver } from '../src/qemu-driver.js';

let scratch: string;
/** An arm64 kernel directory: an Image with its magic, and modules.dep naming the boot modules. */
let arm64Kernel: string;
/** An amd64 kernel directory: an ELF vmlinux for x86-64. */
let amd64Kernel: string;
let arm64Busybox: string;
let amd64Busybox: string;

/** The 64-byte header of a static little-endian ELF64 executable for `machine`. */
function elfHeader(machine: number): Buffer {
  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2;
  header[5] = 1;
  header.writeUInt16LE(2, 16);
  header.writeUInt16LE(machine, 18);
  return header;
}

async function kernelDir(name: string, image: string, content: Buffer): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(join(dir, 'modules', '6.1.0-test'), { recursive: true });
  await writeFile(join(dir, image), content);
  await writeFile(
    join(dir, 'modules', '6.1.0-test', 'modules.dep'),
    'kernel/drivers/char/virtio_console.ko:\nkernel/fs/ext4/ext4.ko:\n',
  );
  for (const m of ['drivers/char/virtio_console.ko', 'fs/ext4/ext4.ko']) {
    const path = join(dir, 'modules', '6.1.0-test', 'kernel', m);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, 'module');
  }
  return dir;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'execenv-qemu-arm64-'));
  const image = Buffer.alloc(128);
  image.write('ARMd', 0x38, 'latin1');
  arm64Kernel = await kernelDir('arm64-kernel', 'Image', image);
  amd64Kernel = await kernelDir('amd64-kernel', 'vmlinux', elfHeader(0x3e));
  arm64Busybox = join(scratch, 'busybox-arm64');
  amd64Busybox = join(scratch, 'busybox-amd64');
  await writeFile(arm64Busybox, elfHeader(0xb7), { mode: 0o755 });
  await writeFile(amd64Busybox, elfHeader(0x3e), { mode: 0o755 });
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const virt: QemuMachine = {
  binary: 'qemu-system-aarch64',
  machine: 'virt',
  accel: 'tcg',
  cpus: 2,
  memoryMiB: 512,
  kernel: { image: '/k/Image', elf: false, modulesDir: '/k/modules/6.1', release: '6.1', arch: 'arm64' },
  initramfs: '/c/initramfs.cpio.gz',
  disk: '/s/env/disk.qcow2',
  agentSocket: '/s/env/agent.sock',
  qmpSocket: '/s/env/qmp.sock',
  consoleLog: '/s/env/console.log',
  tscKhz: 2445432,
  shareSecurity: 'none',
  shares: [{ tag: 'execenv0', path: '/host/src', readOnly: true }],
};

describe('qemuArgv for an arm64 guest', () => {
  it('boots virt under TCG with the max CPU minus pointer authentication, PCI devices and the PL011 console', () => {
    expect(qemuArgv(virt)).toEqual([
      'qemu-system-aarch64',
      '-machine',
      'virt,gic-version=max',
      '-accel',
      'tcg',
      '-cpu',
      'max,pauth=off',
      '-smp',
      '2',
      '-m',
      '512M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      '/k/Image',
      '-initrd',
      '/c/initramfs.cpio.gz',
      '-append',
      'console=ttyAMA0 panic=-1 quiet',
      '-serial',
      'file:/s/env/console.log',
      '-drive',
      'id=root,file=/s/env/disk.qcow2,format=qcow2,if=none,cache=unsafe',
      '-device',
      'virtio-blk-pci,drive=root',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      'socket,id=agent,path=/s/env/agent.sock,server=on,wait=off',
      '-device',
      'virtserialport,chardev=agent,name=org.execenv.agent',
      '-qmp',
      'unix:/s/env/qmp.sock,server=on,wait=off',
      '-fsdev',
      'local,id=share0,path=/host/src,security_model=none,readonly=on',
      '-device',
      'virtio-9p-pci,fsdev=share0,mount_tag=execenv0',
    ]);
  });

  it("takes the host's CPU under KVM", () => {
    expect(qemuArgv({ ...virt, accel: 'kvm' }).slice(1, 7)).toEqual([
      '-machine',
      'virt,gic-version=max',
      '-accel',
      'kvm',
      '-cpu',
      'host',
    ]);
  });

  it('names virt the arm64 machine and the others amd64', () => {
    expect(machineArch('virt')).toBe('arm64');
    expect(machineArch('microvm')).toBe('amd64');
    expect(machineArch('q35')).toBe('amd64');
    expect(machineOption('virt')).toBe('virt,gic-version=max');
  });
});

describe('binary architectures', () => {
  it('reads ELF machines, kernel image magics and a root through its symlinks', async () => {
    expect(await elfArch(arm64Busybox)).toBe('arm64');
    expect(await elfArch(amd64Busybox)).toBe('amd64');
    expect(await elfArch(join(arm64Kernel, 'Image'))).toBeUndefined();
    expect(await elfArch(join(scratch, 'absent'))).toBeUndefined();
    expect(await kernelImageArch(join(arm64Kernel, 'Image'))).toBe('arm64');
    expect(await kernelImageArch(join(amd64Kernel, 'vmlinux'))).toBe('amd64');
    const bzImage = Buffer.alloc(0x300);
    bzImage.write('HdrS', 0x202, 'latin1');
    await writeFile(join(scratch, 'bzImage'), bzImage);
    expect(await kernelImageArch(join(scratch, 'bzImage'))).toBe('amd64');
    await writeFile(join(scratch, 'gzipped'), Buffer.from([0x1f, 0x8b, ...Buffer.alloc(0x300)]));
    expect(await kernelImageArch(join(scratch, 'gzipped'))).toBeUndefined();

    // A merged-/usr root: /bin -> usr/bin, /usr/bin/sh -> /usr/bin/dash (absolute, inside the root).
    const root = join(scratch, 'root');
    await mkdir(join(root, 'usr', 'bin'), { recursive: true });
    await symlink('usr/bin', join(root, 'bin'));
    await symlink('/usr/bin/dash', join(root, 'usr', 'bin', 'sh'));
    await writeFile(join(root, 'usr', 'bin', 'dash'), elfHeader(0xb7));
    expect(await rootArch(root)).toBe('arm64');
    const looped = join(scratch, 'looped');
    await mkdir(join(looped, 'bin'), { recursive: true });
    await symlink('/bin/sh', join(looped, 'bin', 'sh'));
    expect(await rootArch(looped)).toBeUndefined();
  });
});

describe('QemuDriver with arch', () => {
  const opened = async (driver: QemuDriver, spec: Parameters<QemuDriver['open']>[0], stateDir: string) => {
    const err = await driver.open(spec, { stateDir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(await readdir(stateDir).catch(() => [])).toEqual([]);
    return err as InvalidSpecError & { code: string };
  };

  it('refuses an architecture it does not boot, x86 machines for arm64 and virt for amd64, before running anything', async () => {
    const runner = new FakeRunner();
    const stateDir = join(scratch, 'state-options');
    const spec = { image: join(scratch, 'root') };
    const cases: [ConstructorParameters<typeof QemuDriver>[0], string, RegExp][] = [
      [{ arch: 'riscv64' as 'arm64' }, 'options.arch', /boots amd64 and arm64 guests, not "riscv64"/],
      [
        { arch: 'arm64', machine: 'microvm' },
        'options.machine',
        /"microvm" is no machine type for arm64 guests: use "virt"/,
      ],
      [{ arch: 'arm64', machine: 'q35' }, 'options.machine', /for arm64 guests/],
      [{ arch: 'arm64', machine: 'pc' }, 'options.machine', /for arm64 guests/],
      [{ arch: 'amd64', machine: 'virt' }, 'options.machine', /"virt" is no machine type for amd64 guests/],
    ];
    for (const [options, field, message] of cases) {
      const err = await opened(new QemuDriver({ runner, kernel: arm64Kernel, ...options }), spec, stateDir);
      expect(err).toBeInstanceOf(InvalidSpecError);
      expect(err.field).toBe(field);
      expect(err.message).toMatch(message);
      const probe = await new QemuDriver({ runner, ...options }).probe();
      expect(probe.available).toBe(false);
      expect(probe.reason).toMatch(message);
    }
    expect(runner.ran).toEqual([]);
    expect(runner.spawned).toEqual([]);
  });

  it('runs a guest of another architecture under TCG without probing KVM, and refuses KVM for it', async () => {
    const runner = new FakeRunner();
    const foreign = hostArch() === 'arm64' ? 'amd64' : 'arm64';
    const choice = await new QemuDriver({ runner, arch: foreign }).accel();
    expect(choice.accel).toBe('tcg');
    expect(choice.reason).toBe(
      `an ${foreign} guest on an ${hostArch()} host: software emulation (TCG), since KVM runs the host's architecture only`,
    );
    await expect(new QemuDriver({ runner, arch: foreign, accel: 'kvm' }).accel()).rejects.toMatchObject({
      code: 'INVALID_SPEC',
      field: 'options.accel',
    });
    expect(runner.ran).toEqual([]);
  });

  it("refuses a spec's arch other than the driver's", async () => {
    const driver = new QemuDriver({ runner: new FakeRunner(), arch: 'arm64', kernel: arm64Kernel });
    const err = await opened(driver, { image: join(scratch, 'root'), arch: 'amd64' }, join(scratch, 'state-spec'));
    expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'arch' });
    expect(err.message).toMatch(/boots arm64 guests, not amd64/);
  });

  it('wants a kernel and a busybox of its architecture, and says where to get them', async () => {
    const runner = new FakeRunner();
    const stateDir = join(scratch, 'state-kernel');
    const spec = { image: join(scratch, 'root') };
    const arm64 = { runner, arch: 'arm64' as const, cacheDir: join(scratch, 'cache') };
    const cases: [ConstructorParameters<typeof QemuDriver>[0], RegExp][] = [
      [
        { ...arm64, kernel: amd64Kernel, busybox: arm64Busybox },
        /is built for amd64, not for the arm64 guests.*qemu-kernel-arm64\.sh/,
      ],
      [
        { ...arm64, arch: 'amd64', kernel: arm64Kernel, busybox: amd64Busybox },
        /is built for arm64, not for the amd64/,
      ],
      [
        { ...arm64, kernel: arm64Kernel, busybox: amd64Busybox },
        /busybox-amd64 is built for amd64, not for the arm64 guests.*busybox-static-arm64\.sh/,
      ],
    ];
    if (hostArch() !== 'arm64')
      cases.push([
        { ...arm64, kernel: arm64Kernel },
        /arm64 guests need a static arm64 busybox.*pass the busybox option/,
      ]);
    for (const [options, message] of cases) {
      const err = await opened(new QemuDriver(options), spec, stateDir);
      expect(err).toMatchObject({ code: 'DRIVER_UNAVAILABLE' });
      expect(err.message).toMatch(message);
    }
    expect(runner.spawned).toEqual([]);
  });

  it('refuses an image whose programs are of another architecture before making a disk', async () => {
    const runner = new FakeRunner();
    const amd64Root = join(scratch, 'amd64-root');
    await mkdir(join(amd64Root, 'bin'), { recursive: true });
    await writeFile(join(amd64Root, 'bin', 'busybox'), elfHeader(0x3e));
    await symlink('busybox', join(amd64Root, 'bin', 'sh'));
    const driver = new QemuDriver({
      runner,
      arch: 'arm64',
      kernel: arm64Kernel,
      busybox: arm64Busybox,
      cacheDir: join(scratch, 'cache'),
    });
    const err = await opened(driver, { image: amd64Root }, join(scratch, 'state-image'));
    expect(err).toBeInstanceOf(InvalidSpecError);
    expect(err.field).toBe('image');
    expect(err.message).toMatch(/holds amd64 programs \(its \/bin\/sh\), but this qemu driver boots arm64 guests/);
    expect(runner.ran.map((r) => r.argv[0])).not.toContain('mkfs.ext4');
    expect(runner.spawned).toEqual([]);
  });
});
