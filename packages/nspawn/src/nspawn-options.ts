import type { ProcessRunner } from '@execenv/core';
import type { ImageSettings } from '@execenv/images';
import type { NspawnNetworksOptions } from './nspawn-network.js';

/**
 * Where `index:` references are looked up, which keys sign them, and how
 * images are cached (see ImageSettings of @execenv/images). Given to the
 * driver or per environment, these override the user's configuration
 * (`$XDG_CONFIG_HOME/execenv/config.json`, `EXECENV_*` variables).
 *
 * @example
 * ```ts
 * import { NspawnDriver, type NspawnImageSources } from '@execenv/nspawn';
 * const images: NspawnImageSources = {
 *   servers: { lxc: 'https://images.example.org' },
 *   keys: ['/usr/share/keyrings/images.gpg'],
 * };
 * const env = await new NspawnDriver({ images }).open({ image: 'index:debian/bookworm/amd64' });
 * ```
 */
export type NspawnImageSources = ImageSettings;

/**
 * Options of an nspawn driver instance.
 *
 * @example
 * ```ts
 * import { NspawnDriver, type NspawnDriverOptions } from '@execenv/nspawn';
 * const options: NspawnDriverOptions = { cacheDir: '/var/cache/execenv', machinesDir: '/srv/machines' };
 * const driver = new NspawnDriver(options);
 * ```
 */
export interface NspawnDriverOptions {
  /** Runs every host command. @default core's execa runner */
  runner?: ProcessRunner;
  /**
   * A cache root of this driver's own: images and their extracted trees are kept under
   * `<cacheDir>/images`, whatever the image settings say.
   * @default the image settings' cacheDir, else `<defaultCacheDir()>/images`
   */
  cacheDir?: string;
  /**
   * Where the directories of persistent machines (`ephemeral: false`) live.
   * @default `<defaultStateDir()>/nspawn/machines`
   */
  machinesDir?: string;
  /** Image settings over the user's configuration; local paths and URLs need no server or key. */
  images?: NspawnImageSources;
  /**
   * Mount a tmpfs on /run/systemd/nspawn when it is not one, so nspawn can
   * create and remove its propagation directories there (on a disk-backed
   * /run it refuses to remove them and warns on every run).
   * @default true
   */
  fixPropagationTmpfs?: boolean;
  /**
   * How @execenv/net makes the networks containers join with `network:
   * 'nat'` or a named network (pools, firewall, dnsmasq's directory,
   * forwarding). Its state directory is the open's, and its runner this driver's.
   */
  networks?: NspawnNetworksOptions;
}

/**
 * Per-environment options, given as `spec.driverOptions`.
 *
 * @example
 * ```ts
 * import { NspawnDriver, type NspawnEnvOptions } from '@execenv/nspawn';
 * const driver = new NspawnDriver();
 * const driverOptions: NspawnEnvOptions = { machine: 'builder', startTimeoutMs: 60_000 };
 * const env = await driver.open({ image: '/srv/bookworm-minbase.tar.zst', ephemeral: false, driverOptions });
 * await env.close(); // the machine directory stays for the next open of 'builder'
 * await driver.removeMachine('builder');
 * ```
 */
export interface NspawnEnvOptions {
  /**
   * Boot the image's init (`systemd-nspawn -b`): systemd is PID 1, the agent
   * is entered into the container once, and open() waits until
   * `systemctl is-system-running --wait` says the system is up. Without it
   * the agent is the container's init (for images without systemd).
   * @default false
   */
  boot?: boolean;
  /**
   * Milliseconds to wait for the container to be ready: the agent listening
   * (plain mode) or the system running (boot mode). On expiry open() fails
   * with TIMEOUT quoting what the guest printed.
   * @default 30000 (plain), 120000 (boot)
   */
  startTimeoutMs?: number;
  /**
   * Name of the machine directory kept when `ephemeral: false`: created from
   * the image by the first open, reused as it is by later ones. Lower-case
   * letters, digits and dashes. Required with `ephemeral: false`.
   */
  machine?: string;
  /** Image settings for this environment, over the driver's and the user's configuration. */
  images?: NspawnImageSources;
}

/**
 * How the container runs: the agent as its init, or a booted init with the agent entered into it.
 *
 * @example
 * ```ts
 * import type { NspawnEnvOptions, NspawnMode } from '@execenv/nspawn';
 * const options: NspawnEnvOptions = { boot: true };
 * const mode: NspawnMode = options.boot ? 'boot' : 'plain';
 * ```
 */
export type NspawnMode = 'plain' | 'boot';
