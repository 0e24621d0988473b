import type { ProcessRunner } from '@execenv/core';
import type { ResolveImageOptions } from '@execenv/images';

/** Where `index:` references are looked up and which keys sign them (see resolveImage of @execenv/images). */
export type NspawnImageSources = Pick<ResolveImageOptions, 'servers' | 'keys' | 'verify'>;

/** Options of an nspawn driver instance. */
export interface NspawnDriverOptions {
  /** Runs every host command. @default core's execa runner */
  runner?: ProcessRunner;
  /** Where extracted root filesystems are cached. @default core's defaultCacheDir() */
  cacheDir?: string;
  /**
   * Where the directories of persistent machines (`ephemeral: false`) live.
   * @default `<defaultStateDir()>/nspawn/machines`
   */
  machinesDir?: string;
  /** Image servers and trusted keys for `index:` references; local paths and URLs need none. */
  images?: NspawnImageSources;
  /**
   * Mount a tmpfs on /run/systemd/nspawn when it is not one, so nspawn can
   * create and remove its propagation directories there (on a disk-backed
   * /run it refuses to remove them and warns on every run).
   * @default true
   */
  fixPropagationTmpfs?: boolean;
}

/** Per-environment options, given as `spec.driverOptions`. */
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
}

/** Networks the nspawn driver supports: none (a private network namespace with loopback) or the host's. */
export const NSPAWN_NETWORKS = ['none', 'host'] as const;

/** How the container runs: the agent as its init, or a booted init with the agent entered into it. */
export type NspawnMode = 'plain' | 'boot';
