import { InvalidSpecError } from '@execenv/core';
import { AgentEnvironment, type AgentEnvironmentInit, type AgentSessionLike } from '@execenv/core/driver';

/**
 * What a podman environment can do to its container besides exec and files.
 *
 * @example
 * ```ts
 * import { FakeAgentSession } from '@execenv/core/testing';
 * import type { ContainerLifecycle } from '@execenv/podman';
 * const commits: string[] = [];
 * const lifecycle: ContainerLifecycle = {
 *   commit: async (name) => {
 *     commits.push(name);
 *     return 'sha256:0123abcd'; // the image id
 *   },
 *   recreate: async () => new FakeAgentSession(), // a new container from the image, its agent's session
 *   restart: async () => new FakeAgentSession(),
 * };
 * ```
 */
export interface ContainerLifecycle {
  /** Commits the container as image `name`; returns the image id. */
  commit(name: string): Promise<string>;
  /** Removes the container and creates it again from its image; returns the new agent session. */
  recreate(): Promise<AgentSessionLike>;
  /** Restarts the container, keeping its filesystem; returns the new agent session. */
  restart(): Promise<AgentSessionLike>;
}

/**
 * Everything a podman environment is made of once its agent answers.
 *
 * @example
 * ```ts
 * import { FakeAgentSession } from '@execenv/core/testing';
 * import { PodmanEnvironment } from '@execenv/podman';
 * const fresh = async () => new FakeAgentSession();
 * const env = new PodmanEnvironment({
 *   id: 'execenv-test', driver: 'podman', container: 'execenv-test',
 *   capabilities: ['isolation-container', 'root', 'revert', 'reboot', 'publish'],
 *   session: new FakeAgentSession(),
 *   lifecycle: { commit: async () => 'sha256:0123abcd', recreate: fresh, restart: fresh },
 *   destroy: async () => {},
 * });
 * ```
 */
export interface PodmanEnvironmentInit extends AgentEnvironmentInit {
  /** The container's name (the environment id). */
  container: string;
  lifecycle: ContainerLifecycle;
}

const IMAGE_NAME = /^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

/**
 * PodmanEnvironment is one container whose entrypoint is the agent: every
 * command is a child of the container's PID 1, in its namespaces and cgroup.
 * It can be published as an image, reverted to its image and rebooted.
 *
 * @example
 * ```ts
 * import { PodmanDriver } from '@execenv/podman';
 * const driver = new PodmanDriver();
 * const env = await driver.open({ image: '/srv/images/bookworm-minbase.tar.zst', network: 'nat' });
 * try {
 *   await env.exec(['apt-get', 'install', '-y', 'build-essential'], { check: true, timeout: 600_000 });
 *   const image = await env.publish('bookworm-build'); // 'oci:localhost/bookworm-build', for a later open
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class PodmanEnvironment extends AgentEnvironment {
  /** The container's name in podman (the environment id). */
  readonly container: string;
  readonly #lifecycle: ContainerLifecycle;

  constructor(init: PodmanEnvironmentInit) {
    super(init);
    this.container = init.container;
    this.#lifecycle = init.lifecycle;
  }

  /**
   * Commits the container as image `alias` (`localhost/ALIAS` when no
   * registry is named) and returns the reference a later `open` takes:
   * `oci:NAME`. Running commands keep running.
   */
  async publish(alias: string): Promise<string> {
    this.ensureOpen('publish');
    const name = alias.includes('/') ? alias : `localhost/${alias}`;
    if (!IMAGE_NAME.test(name))
      throw new InvalidSpecError('alias', `"${alias}" is not a valid image name`, {
        envId: this.id,
        driver: this.driver,
        op: 'publish',
      });
    await this.#lifecycle.commit(name);
    return `oci:${name}`;
  }

  /** Goes back to the image as it was opened: the container is created anew; running commands are killed. */
  async revert(): Promise<void> {
    this.ensureOpen('revert');
    await this.killRunning();
    this.session.close();
    this.session = await this.#lifecycle.recreate();
  }

  /** Restarts the container (its init, the agent, with it), keeping its filesystem; running commands are killed. */
  async reboot(): Promise<void> {
    this.ensureOpen('reboot');
    await this.killRunning();
    this.session.close();
    this.session = await this.#lifecycle.restart();
  }
}
