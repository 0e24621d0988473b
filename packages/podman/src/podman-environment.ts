import { InvalidSpecError } from '@execenv/core';
import { AgentEnvironment, type AgentEnvironmentInit, type AgentSessionLike } from '@execenv/core/driver';

/** What a podman environment can do to its container besides exec and files. */
export interface ContainerLifecycle {
  /** Commits the container as image `name`; returns the image id. */
  commit(name: string): Promise<string>;
  /** Removes the container and creates it again from its image; returns the new agent session. */
  recreate(): Promise<AgentSessionLike>;
  /** Restarts the container, keeping its filesystem; returns the new agent session. */
  restart(): Promise<AgentSessionLike>;
}

/** Everything a podman environment is made of once its agent answers. */
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
