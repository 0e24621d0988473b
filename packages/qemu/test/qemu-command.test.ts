import { describe, expect, it } from 'vitest';
import { initScript } from '../src/initramfs.js';
import { type QemuMachine, qemuArgv } from '../src/qemu-command.js';

const machine: QemuMachine = {
  binary: 'qemu-system-x86_64',
  machine: 'microvm',
  accel: 'tcg',
  cpus: 2,
  memoryMiB: 512,
  kernel: { image: '/k/vmlinux', elf: true, modulesDir: '/k/modules/6.1', release: '6.1' },
  initramfs: '/c/initramfs.cpio.gz',
  disk: '/s/env,1/disk.qcow2',
  agentSocket: '/s/env,1/agent.sock',
  qmpSocket: '/s/env,1/qmp.sock',
  consoleLog: '/s/env,1/console.log',
  tscKhz: 2445432,
};

describe('qemuArgv', () => {
  it('boots a microvm under TCG with virtio-mmio devices, no network and no defaults', () => {
    expect(qemuArgv(machine)).toEqual([
      'qemu-system-x86_64',
      '-machine',
      'microvm,x-option-roms=off,rtc=on',
      '-accel',
      'tcg',
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
      '/k/vmlinux',
      '-initrd',
      '/c/initramfs.cpio.gz',
      '-append',
      'console=ttyS0 panic=-1 quiet tsc_early_khz=2445432 tsc=reliable',
      '-serial',
      'file:/s/env,,1/console.log',
      '-drive',
      'id=root,file=/s/env,,1/disk.qcow2,format=qcow2,if=none,cache=unsafe',
      '-device',
      'virtio-blk-device,drive=root',
      '-device',
      'virtio-serial-device',
      '-chardev',
      'socket,id=agent,path=/s/env,,1/agent.sock,server=on,wait=off',
      '-device',
      'virtserialport,chardev=agent,name=org.execenv.agent',
      '-qmp',
      'unix:/s/env,,1/qmp.sock,server=on,wait=off',
    ]);
  });

  it('uses PCI devices on q35, and the host CPU without a TSC hint under KVM', () => {
    const argv = qemuArgv({ ...machine, machine: 'q35', accel: 'kvm' });
    expect(argv.slice(1, 7)).toEqual(['-machine', 'q35', '-accel', 'kvm', '-cpu', 'host']);
    expect(argv).toContain('virtio-blk-pci,drive=root');
    expect(argv).toContain('virtio-serial-pci');
    expect(argv[argv.indexOf('-append') + 1]).toBe('console=ttyS0 panic=-1 quiet');
  });
});

describe('qemuArgv with shared directories', () => {
  it('exports each over virtio-9p under its tag, read-only where asked', () => {
    const argv = qemuArgv({
      ...machine,
      shareSecurity: 'passthrough',
      shares: [
        { tag: 'execenv0', path: '/host/rw', readOnly: false },
        { tag: 'execenv1', path: '/host/r,o', readOnly: true },
      ],
    });
    expect(argv.slice(-8)).toEqual([
      '-fsdev',
      'local,id=share0,path=/host/rw,security_model=passthrough',
      '-device',
      'virtio-9p-device,fsdev=share0,mount_tag=execenv0',
      '-fsdev',
      'local,id=share1,path=/host/r,,o,security_model=passthrough,readonly=on',
      '-device',
      'virtio-9p-device,fsdev=share1,mount_tag=execenv1',
    ]);
  });
});

describe('qemuArgv with a share of its own security model', () => {
  it('writes mapped-file for the pull share whatever the machine default', () => {
    const argv = qemuArgv({
      ...machine,
      shareSecurity: 'passthrough',
      shares: [{ tag: 'execenvpull', path: '/state/pull', readOnly: false, security: 'mapped-file' }],
    });
    expect(argv.slice(-4)).toEqual([
      '-fsdev',
      'local,id=share0,path=/state/pull,security_model=mapped-file',
      '-device',
      'virtio-9p-device,fsdev=share0,mount_tag=execenvpull',
    ]);
  });
});

describe('initScript', () => {
  it('loads the modules in order, mounts the disk and runs the agent on the named port', () => {
    const script = initScript(['kernel/drivers/virtio/virtio_ring.ko', 'kernel/fs/ext4/ext4.ko']);
    const lines = script.split('\n');
    expect(lines[0]).toBe('#!/bin/busybox sh');
    const insmods = lines.filter((l) => l.includes('insmod'));
    expect(insmods).toEqual([
      '/bin/busybox insmod /lib/modules/virtio_ring.ko || fail "insmod kernel/drivers/virtio/virtio_ring.ko"',
      '/bin/busybox insmod /lib/modules/ext4.ko || fail "insmod kernel/fs/ext4/ext4.ko"',
    ]);
    expect(script).toContain('= org.execenv.agent ]');
    expect(script).toContain('/execenv-agent --root /newroot "$@" --stdio <>"$port" >&0');
    expect(script).toContain('set -- "$@" "--$kind" "/shares/$tag" "$target"');
    expect(script.indexOf('mount -t ext4 /dev/vda /newroot')).toBeGreaterThan(script.indexOf('ext4.ko'));
  });
});
