import { ChrootDriver } from '@execenv/chroot';
import { describeConformance } from '@execenv/core/conformance';
import { afterAll } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, minbaseTarball, removeBusyboxVariants } from './fixtures.js';

afterAll(removeBusyboxVariants);

const imageWithSymlinks = async (links: Record<string, string>) => ({ image: await busyboxTarballWithSymlinks(links) });

// The same suite every driver runs, against real chroots on this host.
describeConformance({
  name: 'chroot, root mode, busybox rootfs',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: busyboxTarball() },
  imageWithSymlinks,
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'root' }] },
});

describeConformance({
  name: 'chroot, root mode, Debian bookworm minbase',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: minbaseTarball() },
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'root' }] },
});

describeConformance({
  name: 'chroot, rootless mode with subordinate ids, busybox rootfs',
  driver: new ChrootDriver({ mode: 'rootless' }),
  spec: { image: busyboxTarball('.xz') },
  imageWithSymlinks,
  ownerProcess: { module: '@execenv/chroot', exportName: 'ChrootDriver', args: [{ mode: 'rootless' }] },
});

describeConformance({
  name: 'chroot, rootless mode mapping only root, busybox rootfs',
  driver: new ChrootDriver({ mode: 'rootless', subordinateIds: false }),
  spec: { image: busyboxTarball('.zst') },
  imageWithSymlinks,
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
