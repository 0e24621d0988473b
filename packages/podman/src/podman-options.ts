import type { ProcessRunner } from '@execenv/core';
import type { ImageSettings } from '@execenv/images';

/**
 * Which podman to talk to. Without any field the local podman of the user
 * running the commands is used (rootful as root, rootless otherwise), or a
 * remote one when `CONTAINER_HOST` is set in `env`.
 *
 * @example
 * ```ts
 * import { type PodmanConnection, PodmanDriver } from '@execenv/podman';
 * const connection: PodmanConnection = {
 *   url: 'ssh://builder@build-host/run/podman/podman.sock',
 *   identity: '/home/me/.ssh/id_ed25519',
 * };
 * const driver = new PodmanDriver(connection);
 * driver.transport; // 'exec': a remote podman shares no directory with this host
 * ```
 */
export interface PodmanConnection {
  /** A podman service URL, given as `--url`: `unix:///run/podman/podman.sock`, `ssh://user@host/run/podman/podman.sock`. */
  url?: string;
  /** A connection name from `podman system connection list`, given as `--connection`. */
  connection?: string;
  /** SSH key for an `ssh://` URL, given as `--identity`. */
  identity?: string;
}

/**
 * How the host talks to the agent in a container.
 *
 * @example
 * ```ts
 * import { type AgentTransport, PodmanDriver } from '@execenv/podman';
 * // A local podman whose containers cannot reach this host's files (podman machine): no shared socket.
 * const transport: AgentTransport = 'exec';
 * const driver = new PodmanDriver({ transport });
 * ```
 */
export type AgentTransport = 'socket' | 'exec';

/**
 * Options of a podman driver instance.
 *
 * @example
 * ```ts
 * import { PodmanDriver, type PodmanDriverOptions } from '@execenv/podman';
 * const options: PodmanDriverOptions = {
 *   env: { XDG_RUNTIME_DIR: '/run/user/1000' }, // added to every podman command
 *   runtimeDir: '/run/user/1000', // where per-environment socket directories are made
 *   cacheDir: '/var/cache/execenv',
 *   images: { servers: { lxc: 'https://images.example.org' }, keys: ['/usr/share/keyrings/images.gpg'] },
 * };
 * const driver = new PodmanDriver(options);
 * ```
 */
export interface PodmanDriverOptions extends PodmanConnection {
  /** The podman binary. @default `podman` found in the fixed host PATH */
  podman?: string;
  /**
   * Environment of every podman command, added to the fixed PATH and C
   * locale: `CONTAINER_HOST`, `CONTAINERS_CONF`, and, for rootless podman,
   * `HOME` and `XDG_RUNTIME_DIR`.
   */
  env?: Record<string, string>;
  /**
   * `socket`: the agent, the container's entrypoint, listens on a unix socket
   * in a bind-mounted runtime directory. `exec`: one long-lived
   * `podman exec -i` runs the agent on its stdin and stdout, for a podman
   * whose host shares no directory with this one.
   * @default 'exec' when a remote podman is configured, else 'socket'
   */
  transport?: AgentTransport;
  /** Runs every host command. @default core's execa runner */
  runner?: ProcessRunner;
  /**
   * A cache root of this driver's own: images are kept under `<cacheDir>/images`, whatever the
   * image settings say. @default the image settings' cacheDir, else `<defaultCacheDir()>/images`
   */
  cacheDir?: string;
  /**
   * Image settings (servers and keys for `index:` references, cache, budget, refresh, retries),
   * over the user's configuration (`$XDG_CONFIG_HOME/execenv/config.json`, `EXECENV_*` variables);
   * see ImageSettings of @execenv/images.
   */
  images?: ImageSettings;
  /** Directory the per-environment runtime directories (the agent's socket) are made in. @default os.tmpdir() */
  runtimeDir?: string;
}

/**
 * Per-environment options, given as `spec.driverOptions`.
 *
 * @example
 * ```ts
 * import type { EnvSpec } from '@execenv/core';
 * import { PodmanDriver, type PodmanEnvOptions } from '@execenv/podman';
 * const spec: EnvSpec<PodmanEnvOptions> = {
 *   image: 'oci:docker.io/library/debian:bookworm',
 *   network: 'nat',
 *   driverOptions: { privateNetwork: true, pids: 512, pull: 'never', images: { refresh: 'never' } },
 * };
 * const env = await new PodmanDriver().open(spec);
 * ```
 */
export interface PodmanEnvOptions {
  /** With network `nat`: a podman network of its own for this environment, removed on close. @default false */
  privateNetwork?: boolean;
  /** Most processes the container may hold (`--pids-limit`). */
  pids?: number;
  /** When to pull an `oci:` image: `missing` (the default), `always`, or `never`. */
  pull?: 'missing' | 'always' | 'never';
  /** Image settings for this environment, over the driver's and the user's configuration. */
  images?: ImageSettings;
}

/**
 * Networks the podman driver understands besides the name of an existing podman network.
 *
 * @example
 * ```ts
 * import { PODMAN_NETWORKS, PodmanCli } from '@execenv/podman';
 * const network = process.env.BUILD_NETWORK ?? 'none';
 * const known =
 *   (PODMAN_NETWORKS as readonly string[]).includes(network) ||
 *   (await new PodmanCli().succeeds(['network', 'exists', network]));
 * ```
 */
export const PODMAN_NETWORKS = ['none', 'nat', 'host'] as const;
