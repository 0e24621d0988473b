import type { Readable } from 'node:stream';
import { hostRunner, type ProcessRunner, type RunningProcess } from '@execenv/core';
import type { AgentExecRequest, AgentFileStat, AgentSessionLike, AgentWriteOptions } from '@execenv/core/driver';
import type { PullStaging, PushStaging, StagedArchive } from './staging.js';

/**
 * The agent operations a guest session uses beyond AgentSessionLike:
 * `@execenv/agent`'s AgentSession has them.
 *
 * @example
 * ```ts
 * import { AgentSession } from '@execenv/agent';
 * import type { GuestAgent } from '@execenv/qemu';
 * const agent: GuestAgent = await AgentSession.connect('/run/vm/agent.sock');
 * ```
 */
export interface GuestAgent extends AgentSessionLike {
  tarOut(path: string, opts?: { direct?: boolean }): Readable;
  tarInFile(destDir: string, archive: string): Promise<{ entries: number; bytes: number }>;
  tarOutFile(path: string, archive: string): Promise<{ entries: number; bytes: number }>;
}

/**
 * The two staging directories of a guest: pushes are written into one, pulls read from the other.
 *
 * @example
 * ```ts
 * import { GUEST_PULL_DIR, GUEST_STAGING_DIR, type GuestStaging, PullStaging, PushStaging } from '@execenv/qemu';
 * const staging: GuestStaging = {
 *   push: await PushStaging.create(`${envDir}/stage`, GUEST_STAGING_DIR),
 *   pull: await PullStaging.create(`${envDir}/pull`, GUEST_PULL_DIR),
 * };
 * ```
 */
export interface GuestStaging {
  push: PushStaging;
  pull: PullStaging;
}

/**
 * GuestSession is the agent session of a guest with bulk transfers moved
 * off the serial line: an archive pushed in is written into the push share
 * and extracted by the agent from there (`tar-in-file`); a pulled path's
 * archive is written by the agent into the pull share (`tar-out-file`)
 * and streamed from the host's file. Under TCG the guest's CPU is
 * emulated, so what counts is how many bytes the guest copies itself: 9p's
 * zero-copy transfers and the agent's direct I/O let QEMU move them.
 * Everything else goes to the agent as it is.
 *
 * @example
 * ```ts
 * import { AgentEnvironment } from '@execenv/core/driver';
 * import { GUEST_PULL_DIR, GUEST_STAGING_DIR, GuestSession, PullStaging, PushStaging } from '@execenv/qemu';
 * const staging = {
 *   push: await PushStaging.create(`${envDir}/stage`, GUEST_STAGING_DIR),
 *   pull: await PullStaging.create(`${envDir}/pull`, GUEST_PULL_DIR),
 * };
 * const session = new GuestSession(guest.session, staging, hostRunner());
 * const env = new AgentEnvironment({ id, driver: 'qemu', capabilities, session, destroy });
 * await env.push('./src', '/work/src'); // staged, then tar-in-file in the guest
 * ```
 */
export class GuestSession implements AgentSessionLike {
  readonly agent: GuestAgent;
  readonly staging: GuestStaging;
  readonly #runner: ProcessRunner;

  /** `runner` runs the host's GNU tar that packs pushed directories into the push share. */
  constructor(agent: GuestAgent, staging: GuestStaging, runner: ProcessRunner = hostRunner()) {
    this.agent = agent;
    this.staging = staging;
    this.#runner = runner;
  }

  exec(request: AgentExecRequest): RunningProcess {
    return this.agent.exec(request);
  }

  writeFile(path: string, content: Readable, opts: AgentWriteOptions): Promise<void> {
    return this.agent.writeFile(path, content, opts);
  }

  readFile(path: string): { content: Readable; done: Promise<{ mode: number; size: number }> } {
    return this.agent.readFile(path);
  }

  stat(path: string, follow: boolean): Promise<AgentFileStat | null> {
    return this.agent.stat(path, follow);
  }

  readDir(path: string): Promise<string[]> {
    return this.agent.readDir(path);
  }

  mkdir(path: string, mode: number): Promise<void> {
    return this.agent.mkdir(path, mode);
  }

  remove(path: string): Promise<void> {
    return this.agent.remove(path);
  }

  /** The archive of a path, written by the agent into the pull share and read from there. */
  tarOut(path: string): Readable {
    return this.staging.pull.archive((archive) => this.agent.tarOutFile(path, archive));
  }

  /** Writes the archive into the staging share, has the agent extract it from there, and removes it. */
  async tarIn(destDir: string, tar: Readable): Promise<{ entries: number; bytes: number }> {
    return this.#extractStaged(await this.staging.push.write(tar), destDir);
  }

  /** Packs a host directory with GNU tar straight into the push share and has the agent extract it into destDir. */
  async pushDirectory(dir: string, destDir: string): Promise<{ entries: number; bytes: number }> {
    return this.#extractStaged(await this.staging.push.pack(this.#runner, dir), destDir);
  }

  /** Has the agent extract a staged archive into destDir, and removes the archive whatever the outcome. */
  async #extractStaged(archive: StagedArchive, destDir: string): Promise<{ entries: number; bytes: number }> {
    try {
      return await this.agent.tarInFile(destDir, archive.guestPath);
    } finally {
      await archive.remove();
    }
  }

  close(): void {
    this.agent.close();
  }
}
