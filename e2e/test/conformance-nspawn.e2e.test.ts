import { describeConformance } from '@execenv/core/conformance';
import { NspawnDriver } from '@execenv/nspawn';
import { afterAll } from 'vitest';
import {
  busyboxTarball,
  busyboxTarballWithSymlinks,
  minbaseTarball,
  removeBusyboxVariants,
  systemdTarball,
} from './fixtures.js';

afterAll(removeBusyboxVariants);

const driver = new NspawnDriver();
// gc-after-kill opens an environment from a separate process that is then killed: it makes its driver so.
const ownerProcess = { module: '@execenv/nspawn', exportName: 'NspawnDriver' };

// The same suite every driver runs, against real systemd-nspawn containers on this host.
describeConformance({
  name: 'nspawn, plain mode (the agent as init), busybox rootfs',
  driver,
  ownerProcess,
  spec: { image: busyboxTarball() },
  imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links) }),
});

describeConformance({
  name: 'nspawn, plain mode, Debian bookworm minbase',
  driver,
  ownerProcess,
  spec: { image: minbaseTarball() },
  // The hostile image is busybox-based whatever the suite's image: what it checks is the driver's.
  imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links) }),
});

describeConformance({
  name: 'nspawn, boot mode (systemd as PID 1), Debian bookworm with systemd',
  driver,
  ownerProcess,
  spec: { image: systemdTarball(), driverOptions: { boot: true } },
  // Booted: busybox's init comes up, then the open is refused (no systemd) or runs; host paths stay untouched either way.
  imageWithSymlinks: async (links) => ({
    image: await busyboxTarballWithSymlinks(links),
    driverOptions: { boot: true, startTimeoutMs: 30_000 },
  }),
});
