import { describeConformance } from '@execenv/core/conformance';
import { QemuDriver } from '@execenv/qemu';
import { afterAll, describe, it } from 'vitest';
import { busyboxTarballWithSymlinks, removeBusyboxVariants } from './fixtures.js';
import { arm64Fixtures } from './qemu-fixtures.js';

afterAll(removeBusyboxVariants);

// The whole suite against arm64 under TCG took 8 min 46 s on a 2-core host (deep-tree-close alone 5.5 min),
// so it runs only when asked for; qemu-arm64.e2e.test.ts covers an arm64 guest in every run.
const asked = process.env.EXECENV_E2E_QEMU_ARM64_CONFORMANCE === '1';
const fixtures = asked
  ? arm64Fixtures()
  : { missing: 'set EXECENV_E2E_QEMU_ARM64_CONFORMANCE=1 to run it (about 9 min)' };
if ('missing' in fixtures) {
  console.log(`qemu arm64 conformance skipped: ${fixtures.missing}`);
  describe('qemu, virt (arm64), busybox rootfs', () => {
    it.skip(`skipped: ${fixtures.missing}`, () => {});
  });
} else {
  const options = {
    arch: 'arm64' as const,
    kernel: fixtures.kernel,
    busybox: fixtures.busybox,
    bootTimeoutMs: 600_000,
  };
  // arm64 guests under TCG on this host: every command is an emulated process start of another architecture.
  describeConformance({
    name: 'qemu, virt (arm64), busybox rootfs',
    driver: new QemuDriver(options),
    spec: { image: fixtures.rootfs },
    imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links, fixtures.rootfs) }),
    ownerProcess: { module: '@execenv/qemu', exportName: 'QemuDriver', args: [options] },
    timeScale: 3,
    raceMs: 15_000,
  });
}
