import type { ImageSettings } from '@execenv/images';
import type { LxdEndpoint } from './lxd-client.js';

/**
 * How an LxdDriver reaches its daemon and where it keeps its things.
 *
 * @example
 * ```ts
 * import { LxdDriver, type LxdDriverOptions } from '@execenv/lxd';
 * const options: LxdDriverOptions = {
 *   project: 'ci',
 *   cacheDir: '/var/cache/execenv',
 *   imageMaxIdleMs: 24 * 3600 * 1000, // gc() removes imported images unused for a day
 *   imageServers: { lxc: 'https://images.example.org' },
 *   agentMount: false, // the socket is forwarded from another machine: write the agent in instead
 * };
 * const driver = new LxdDriver(options);
 * ```
 */
export interface LxdDriverOptions {
  /**
   * The daemon: a unix socket or a remote HTTPS endpoint with a client certificate.
   * @default the first local socket found: `$LXD_SOCKET`, `$LXD_DIR/unix.socket`, Debian's, the snap's, Incus's
   */
  endpoint?: LxdEndpoint;
  /** LXD project of every instance, image and profile. @default the daemon's default project */
  project?: string;
  /** Directory for leases. @default OpenOptions.stateDir, else defaultStateDir() */
  stateDir?: string;
  /** Cache root: converted and downloaded images go to `<cacheDir>/images`. @default the image settings' cache */
  cacheDir?: string;
  /** How long an image this driver imported may stay unused before gc() removes it. @default 7 days */
  imageMaxIdleMs?: number;
  /** Servers for `index:` image references; the same as `images.servers`, which wins. */
  imageServers?: { lxc?: string; simplestreams?: string };
  /**
   * Whether unprivileged containers of a daemon on a unix socket get the
   * host's agent binary through a read-only disk device (nothing copied)
   * rather than written through the files API. Turn it off when the socket
   * leads to a daemon that does not see this host's files (a socket
   * forwarded from another machine). @default true
   */
  agentMount?: boolean;
  /**
   * Image settings over the user's configuration and EXECENV_* variables:
   * servers, trusted keys for signed indexes and images, verification, cache budget.
   */
  images?: ImageSettings;
}

/**
 * What the `driverOptions` of an EnvSpec may say to the LXD driver.
 *
 * @example
 * ```ts
 * import type { EnvSpec } from '@execenv/core';
 * import { LxdDriver, type LxdEnvOptions } from '@execenv/lxd';
 * const spec: EnvSpec<LxdEnvOptions> = {
 *   image: 'lxd:debian-12',
 *   driverOptions: { type: 'virtual-machine', storagePool: 'fast', readyTimeoutMs: 600_000 },
 * };
 * const env = await new LxdDriver().open(spec);
 * ```
 */
export interface LxdEnvOptions {
  /** Image settings for this environment, over the user's configuration and the driver's `images`. */
  images?: ImageSettings;
  /** @default 'container' */
  type?: 'container' | 'virtual-machine';
  /** Run the container privileged (`security.privileged`). @default false */
  privileged?: boolean;
  /** Extra `raw.lxc` lines (containers only). */
  rawLxc?: string[];
  /** cloud-init vendor-data passed through as `cloud-init.vendor-data`. */
  vendorData?: string;
  /** Storage pool of the root disk. @default the default profile's */
  storagePool?: string;
  /**
   * Init of a container (`lxc.init.cmd`). `auto` runs `/bin/sleep infinity`
   * when the image reference is a file or URL (a root filesystem tarball
   * promises no init) and the image's own init for `lxd:`, `index:` and
   * `simplestreams:` images; `image` always runs the image's own; an argv
   * runs that command. VMs always boot their image's init.
   * @default 'auto'
   */
  init?: 'auto' | 'image' | string[];
  /** Milliseconds to wait until the instance runs commands. @default 60000 (containers), 300000 (VMs) */
  readyTimeoutMs?: number;
  /** More instance config keys, passed as they are. */
  config?: Record<string, string>;
}

/**
 * Names of the local sockets looked for, in order, after $LXD_SOCKET and $LXD_DIR.
 *
 * @example
 * ```ts
 * import { findLocalSocket, LOCAL_SOCKETS } from '@execenv/lxd';
 * if ((await findLocalSocket()) === undefined)
 *   console.error(`no LXD socket at ${LOCAL_SOCKETS.join(', ')}: set LXD_SOCKET, or start the daemon`);
 * ```
 */
export const LOCAL_SOCKETS = [
  '/var/lib/lxd/unix.socket',
  '/var/snap/lxd/common/lxd/unix.socket',
  '/var/lib/incus/unix.socket',
] as const;
