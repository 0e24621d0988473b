import { ChrootDriver } from '@execenv/chroot';
import { describeConformance } from '@execenv/core/conformance';
import { afterAll } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, minbaseTarball, removeBusyboxVariants } from './fixtures.js';

afterAll(removeBusyboxVariants);

const imageWithSymlinks = async (links: Record<string, string>) => ({ image: await busyboxTarballWithSymlinks(links) });
// What the host shows of an open chroot: its overlay mounted under the state directory (root mode only),
// the agent and commands as host processes, and the lease.
const rootVisible = ['mount', 'process', 'state'] as const;
const rootlessVisible = ['process', 'state'] as const;

// The same suite every driver runs, against real chroots on this host.
describeConformance({
  name: 'chroot, root mode, busybox rootfs',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: busyboxTarball() },
  imageWithSymlinks,
  visibleOnHost: rootVisible,
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'root' }] },
});

describeConformance({
  name: 'chroot, root mode, Debian bookworm minbase',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: minbaseTarball() },
  visibleOnHost: rootVisible,
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'root' }] },
});

describeConformance({
  name: 'chroot, rootless mode with subordinate ids, busybox rootfs',
  driver: new ChrootDriver({ mode: 'rootless' }),
  spec: { image: busyboxTarball('.xz') },
  imageWithSymlinks,
  visibleOnHost: rootlessVisible,
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'rootless' }] },
});

describeConformance({
  name: 'chroot, rootless mode mapping only root, busybox rootfs',
  driver: new ChrootDriver({ mode: 'rootless', subordinateIds: false }),
  spec: { image: busyboxTarball('.zst') },
  imageWithSymlinks,
  visibleOnHost: rootlessVisible,
  ownerProcess: {
    module: '@execenv/chroot',
    exportName: 'ChrootDriver',
    args: [{ mode: 'rootless', subordinateIds: false }],
  },
  skip: {
    user: 'only root is mapped (unshare --map-root-user): other uids do not exist in its user namespace',
    'dev-stdio': 'only root is mapped: nobody does not exist in its user namespace',
    'file-modes': 'only root is mapped: uid 1234 does not exist in its user namespace',
  },
});
