import { describeConformance } from '@execenv/core/conformance';
import { QemuDriver } from '@execenv/qemu';
import { afterAll } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, removeBusyboxVariants } from './fixtures.js';
import { qemuKernel } from './qemu-fixtures.js';

afterAll(removeBusyboxVariants);

// Real guests on this host (TCG: no usable KVM), each booting its own kernel.
describeConformance({
  name: 'qemu, microvm, busybox rootfs',
  driver: new QemuDriver({ kernel: qemuKernel() }),
  spec: { image: busyboxTarball() },
  imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links) }),
  ownerProcess: { module: '@execenv/qemu', exportName: 'QemuDriver', args: [{ kernel: qemuKernel() }] },
  // Every command is a process start under software emulation (TCG): the same promises, longer bounds.
  timeScale: 3,
  raceMs: 15_000,
});
