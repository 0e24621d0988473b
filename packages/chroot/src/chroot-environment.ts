import { readFile, stat as statHost } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import {
  BaseEnvironment,
  type EnvironmentInit,
  type ExecOptions,
  type ExecProcess,
  type ExecResult,
  type FileOptions,
  type FileStat,
  type IdMap,
  InvalidSpecError,
  type Lease,
  NotFoundError,
  type ProcessRunner,
  RootedFiles,
  type RunningProcess,
  resolveInRoot,
  resolveUser,
  superviseExec,
  superviseSpawn,
  toHostId,
  type Undo,
} from '@execenv/core';
import type { ExecServer } from './exec-server.js';

/** PATH inside the environment unless the spec or the exec sets one. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Everything a chroot environment is made of once its root is mounted. */
export interface ChrootEnvironmentInit extends EnvironmentInit {
  runner: ProcessRunner;
  lease: Lease;
  undo: Undo;
  /** The merged root as this process can open it. */
  hostRoot: string;
  /** Id map of the user namespace (rootless mode). */
  ids?: IdMap;
  /** The server that starts every command of the environment. */
  execServer: ExecServer;
  /** Default environment variables of every exec. */
  env: Readonly<Record<string, string>>;
  /** Unmounts the root, empties the overlay's upper layer and mounts it again. */
  resetRoot: () => Promise<void>;
}

/**
 * ChrootEnvironment runs each command in a fresh mount and pid namespace
 * chrooted into an overlay of the image, so the image never changes and a
 * timeout or abort reaches every process the command started.
 */
export class ChrootEnvironment extends BaseEnvironment {
  readonly #init: ChrootEnvironmentInit;
  readonly #files: RootedFiles;
  readonly #running = new Set<RunningProcess>();

  constructor(init: ChrootEnvironmentInit) {
    super(init);
    this.#init = init;
    this.#files = new RootedFiles(init.hostRoot, {
      runner: init.runner,
      ids: init.ids,
      context: { envId: init.id, driver: init.driver },
      onCopy: (e) => this.emit({ type: 'copy', envId: this.id, ...e }),
    });
  }

  protected override async doExec(argv: string[], opts: ExecOptions): Promise<ExecResult> {
    const proc = await this.#start(argv, opts);
    try {
      return await superviseExec(proc, argv, opts, this.#control(proc));
    } finally {
      this.#running.delete(proc);
    }
  }

  protected override doSpawn(argv: string[], opts: ExecOptions): ExecProcess {
    // spawn() must hand back streams at once, while user and cwd lookups are async: bridge them.
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = opts.stdin === undefined ? new PassThrough() : null;
    let proc: RunningProcess | undefined;
    let killed = false;
    const started = this.#start(argv, opts).then((p) => {
      proc = p;
      if (killed) p.kill('SIGKILL');
      return p;
    });
    const result = started.then(async (p) => {
      const spawned = superviseSpawn(p, argv, opts, this.#control(p));
      spawned.stdout.pipe(stdout);
      spawned.stderr.pipe(stderr);
      if (stdin && spawned.stdin) stdin.pipe(spawned.stdin);
      try {
        return await spawned.result;
      } finally {
        this.#running.delete(p);
      }
    });
    result.catch((err) => {
      stdout.destroy(err);
      stderr.destroy();
    });
    const kill = () => {
      killed = true;
      proc?.kill('SIGKILL');
    };
    return {
      stdin,
      stdout,
      stderr,
      result,
      kill,
      async [Symbol.asyncDispose]() {
        kill();
        await result.catch(() => {});
      },
    };
  }

  protected override doPush(src: string | Uint8Array | Readable, dest: string, opts: FileOptions): Promise<void> {
    return this.#files.push(src, dest, opts);
  }

  protected override doPull(src: string, dest: string): Promise<void> {
    return this.#files.pull(src, dest);
  }

  protected override doPushArchive(tar: Readable, destDir: string): Promise<void> {
    return this.#files.pushArchive(tar, destDir);
  }

  protected override doPullArchive(srcPath: string): Readable {
    return this.#files.pullArchive(srcPath);
  }

  protected override doStat(path: string): Promise<FileStat | null> {
    return this.#files.stat(path);
  }

  protected override doReadDir(path: string): Promise<string[]> {
    return this.#files.readDir(path);
  }

  /** Goes back to the image as it was opened: every change is discarded and running commands are killed. */
  async revert(): Promise<void> {
    this.ensureOpen('revert');
    await this.#killRunning();
    await this.#init.resetRoot();
  }

  async #killRunning(): Promise<void> {
    await Promise.all(
      [...this.#running].map(async (p) => {
        p.kill('SIGKILL');
        await p.exited.catch(() => {});
      }),
    );
  }

  protected override async destroy(): Promise<void> {
    await this.#killRunning();
    await this.#init.execServer.stop();
    await this.#init.lease.release(this.#init.undo);
  }

  #control(proc: RunningProcess) {
    return {
      killTree: () => {
        // The exec server kills the command's init when its connection closes; that empties the pid namespace.
        proc.kill('SIGKILL');
      },
      context: this.context('exec'),
    };
  }

  async #start(argv: string[], opts: ExecOptions): Promise<RunningProcess> {
    const i = this.#init;
    const cwd = opts.cwd ?? '/';
    await this.#checkCwd(cwd);
    const user = opts.user ? await this.#resolveUser(opts.user) : { uid: 0, gid: 0, groups: [] as number[] };
    const env = { PATH: DEFAULT_PATH, ...i.env, ...opts.env };
    const proc = i.execServer.exec({ cwd, uid: user.uid, gid: user.gid, groups: user.groups, env, argv });
    this.#running.add(proc);
    return proc;
  }

  async #checkCwd(cwd: string): Promise<void> {
    const dir = await resolveInRoot(this.#init.hostRoot, cwd, { followFinal: true });
    const info = await statHost(dir).catch(() => undefined);
    if (!info?.isDirectory()) throw new NotFoundError(cwd, { ...this.context('exec') });
  }

  async #resolveUser(user: string) {
    const read = async (path: string) =>
      readFile(await resolveInRoot(this.#init.hostRoot, path, { followFinal: true }), 'utf8').catch(() => '');
    const resolved = resolveUser(user, await read('/etc/passwd'), await read('/etc/group'), this.id);
    const ids = this.#init.ids;
    if (ids && (toHostId(ids.uids, resolved.uid) === undefined || toHostId(ids.gids, resolved.gid) === undefined))
      throw new InvalidSpecError(
        'user',
        `${user} (${resolved.uid}:${resolved.gid}) is not mapped in this rootless environment; give the user subordinate ids in /etc/subuid and /etc/subgid`,
        this.context('exec'),
      );
    return {
      ...resolved,
      groups: ids ? resolved.groups.filter((g) => toHostId(ids.gids, g) !== undefined) : resolved.groups,
    };
  }
}
