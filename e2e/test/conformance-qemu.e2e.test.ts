import { describeConformance } from '@execenv/core/conformance';
import { QemuDriver } from '@execenv/qemu';
import { afterAll } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, removeBusyboxVariants } from './fixtures.js';
import { qemuKernel } from './qemu-fixtures.js';

afterAll(removeBusyboxVariants);

// Real guests under TCG on this host: every environment boots a kernel, so transfers are kept small.
describeConformance({
  name: 'qemu, microvm, busybox rootfs',
  driver: new QemuDriver({ kernel: qemuKernel() }),
  spec: { image: busyboxTarball() },
  imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links) }),
  ownerProcess: { module: '@execenv/qemu', exportName: 'QemuDriver', args: [{ kernel: qemuKernel() }] },
});
