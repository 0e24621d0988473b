import { ChrootDriver } from '@execenv/chroot';
import { describeConformance } from '@execenv/core/conformance';
import { busyboxTarball, minbaseTarball } from './fixtures.js';

// The same suite every driver runs, against real chroots on this host.
describeConformance({
  name: 'chroot, root mode, busybox rootfs',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: busyboxTarball() },
});

describeConformance({
  name: 'chroot, root mode, Debian bookworm minbase',
  driver: new ChrootDriver({ mode: 'root' }),
  spec: { image: minbaseTarball() },
});

describeConformance({
  name: 'chroot, rootless mode (user namespace), busybox rootfs',
  driver: new ChrootDriver({ mode: 'rootless' }),
  spec: { image: busyboxTarball('.zst') },
  skip: {
    user: 'rootless mode maps only root (unshare --map-root-user): other uids do not exist in its user namespace',
    'file-modes': 'rootless mode maps only root: a file pushed with uid 1234 shows as nobody (65534) inside',
  },
});
