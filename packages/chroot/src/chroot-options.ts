import type { ProcessRunner } from '@execenv/core';
import type { ImageSettings } from '@execenv/images';
import type { ChrootNetworksOptions } from './chroot-network.js';

/**
 * Where `index:` references are looked up, which keys sign them, and how
 * images are cached (see ImageSettings of @execenv/images). Given to the
 * driver or per environment, these override the user's configuration
 * (`$XDG_CONFIG_HOME/execenv/config.json`, `EXECENV_*` variables).
 *
 * @example
 * ```ts
 * import { ChrootDriver, type ChrootImageSources } from '@execenv/chroot';
 * const images: ChrootImageSources = {
 *   servers: { lxc: 'https://images.example.org' },
 *   keys: ['/usr/share/keyrings/images.gpg'],
 * };
 * const env = await new ChrootDriver({ images }).open({ image: 'index:debian/bookworm/amd64' });
 * ```
 */
export type ChrootImageSources = ImageSettings;

/**
 * How the driver gets the privileges to mount: as root, or inside a user namespace.
 *
 * @example
 * ```ts
 * import { ChrootDriver, type ChrootMode } from '@execenv/chroot';
 * const mode: ChrootMode = 'rootless'; // even as root: no mounts in the host's mount namespace
 * const driver = new ChrootDriver({ mode });
 * console.log((await driver.mode()).reason); // mode "rootless" was asked for: mounts inside a user namespace...
 * ```
 */
export type ChrootMode = 'root' | 'rootless';

/**
 * Options of a chroot driver instance (see ChrootDriver).
 *
 * @example
 * ```ts
 * import { ChrootDriver, type ChrootDriverOptions } from '@execenv/chroot';
 * const options: ChrootDriverOptions = { mode: 'rootless', subordinateIds: false, cacheDir: '/srv/execenv-cache' };
 * const driver = new ChrootDriver(options);
 * ```
 */
export interface ChrootDriverOptions {
  /**
   * `root` mounts in the host's mount namespace and needs root; `rootless`
   * holds the mounts in a user and mount namespace of its own.
   * @default 'auto' (root when running as root, else rootless)
   */
  mode?: 'auto' | ChrootMode;
  /**
   * In rootless mode, map the user's subordinate ids (/etc/subuid, /etc/subgid,
   * through newuidmap) to ids 1.. inside, so other users exist there.
   * @default true when the user has subordinate ids
   */
  subordinateIds?: boolean;
  /** Runs every host command. @default core's execa runner */
  runner?: ProcessRunner;
  /** Where extracted root filesystems and the default image are cached. @default core's defaultCacheDir() */
  cacheDir?: string;
  /** Image servers and trusted keys for `index:` references; local paths and URLs need none. @default the user's configuration */
  images?: ChrootImageSources;
  /**
   * How @execenv/net makes the networks environments join with `network:
   * 'nat'` or a named network (pools, firewall, dnsmasq's directory,
   * forwarding). Its state directory is the open's, and its runner this driver's.
   */
  networks?: ChrootNetworksOptions;
}

/**
 * Per-environment options, given as `spec.driverOptions`.
 *
 * @example
 * ```ts
 * import { ChrootDriver, type ChrootEnvOptions } from '@execenv/chroot';
 * import type { EnvSpec } from '@execenv/core';
 * const spec: EnvSpec<ChrootEnvOptions> = { image: './bookworm.tar.zst', driverOptions: { hostDns: false } };
 * const env = await new ChrootDriver().open(spec);
 * ```
 */
export interface ChrootEnvOptions {
  /**
   * Copy the host's /etc/resolv.conf and /etc/hosts into the environment, as
   * launchpad-buildd does. On a private network (`nat` or a named one) the
   * network's resolv.conf is written instead of the host's.
   * @default true
   */
  hostDns?: boolean;
  /** Image settings for this environment, over the driver's and the user's configuration. */
  images?: ChrootImageSources;
}
