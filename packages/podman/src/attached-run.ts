import { readFile } from 'node:fs/promises';
import type { RunningProcess } from '@execenv/core';
import type { PodmanCli } from './podman-cli.js';

/** The end of a `podman run` that stayed attached to its container. */
export interface AttachedExit {
  exitCode: number | null;
  signal: string | null;
  /** The last few kilobytes podman and the container wrote on stderr. */
  stderr: string;
}

/**
 * One `podman run --rm -i` kept in the foreground for an environment's whole
 * life: the container's standard input is this process's, so ending it makes
 * the agent (PID 1) exit, and the same podman process then removes the
 * container. Open and close together cost one podman process, as a plain
 * `podman run --rm` does.
 *
 * @example
 * ```ts
 * import { createArgs, PodmanCli } from '@execenv/podman';
 * import { AttachedRun } from './attached-run.js';
 * const plan = { name: 'execenv-abc123', image: 'localhost/builder', owner: '4242:123456@build-host',
 *   transport: 'socket' as const, agentBinary: '/usr/lib/execenv/agent', runtimeDir: '/tmp/execenv-podman-x' };
 * const run = AttachedRun.start(new PodmanCli(), createArgs(plan, true));
 * // ... connect to /tmp/execenv-podman-x/agent.sock, use the environment ...
 * const removed = await run.end(); // true: podman removed the container itself
 * ```
 */
export class AttachedRun {
  readonly #proc: RunningProcess;
  #stderr = '';
  /** Set once podman exits. */
  #exit: AttachedExit | undefined;
  /** Resolves when podman exits. */
  readonly exited: Promise<AttachedExit>;

  private constructor(proc: RunningProcess) {
    this.#proc = proc;
    proc.stdout?.resume();
    proc.stderr?.on('data', (c: Buffer) => {
      this.#stderr = (this.#stderr + c.toString()).slice(-STDERR_KEPT);
    });
    // stdin errors (EPIPE once podman is gone) say nothing `exited` does not.
    proc.stdin?.on('error', () => {});
    // What podman wrote last can arrive after its exit is known: wait for the end of stderr, briefly.
    const stderrEnded = new Promise<void>((resolve) => {
      if (!proc.stderr) return resolve();
      proc.stderr.once('end', resolve).once('close', resolve);
    });
    this.exited = proc.exited
      .then(
        (r) => r,
        (err: unknown) => ({ exitCode: null, signal: String(err) }),
      )
      .then(async (r) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([stderrEnded, new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
        clearTimeout(timer);
        this.#exit = { exitCode: r.exitCode, signal: r.signal, stderr: this.#stderr.trim() };
        return this.#exit;
      });
  }

  /**
   * Starts `podman ARGS...` with its standard input, output and error piped
   * here, in a process group of its own: a terminal's Ctrl-C reaches this
   * process (which may close the environment), not the container.
   */
  static start(cli: PodmanCli, args: readonly string[]): AttachedRun {
    return new AttachedRun(cli.spawn(args, { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', detached: true }));
  }

  /** How podman ended, once it has; undefined while it runs. */
  get exit(): AttachedExit | undefined {
    return this.#exit;
  }

  /**
   * Closes the container's standard input, so its agent shuts down, and
   * waits for podman to exit (SIGKILL after `timeoutMs`). Returns whether
   * podman removed the container: it exited 0 and reported no error.
   */
  async end(timeoutMs = 30_000): Promise<boolean> {
    this.#proc.stdin?.end();
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return removedByPodman(exit);
  }

  /** Waits for podman to exit after the container was removed by other means (SIGKILL after `timeoutMs`). */
  async reap(timeoutMs = 10_000): Promise<void> {
    this.#proc.stdin?.end();
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** How much of stderr is kept for errors. */
const STDERR_KEPT = 8192;

/**
 * Whether an attached `podman run --rm` removed its container: podman reports
 * a failed removal only as a logged error, never in its exit status, which is
 * the container's.
 */
export function removedByPodman(exit: AttachedExit): boolean {
  return exit.exitCode === 0 && !/level=(error|fatal)|^Error:/m.test(exit.stderr);
}

/**
 * Waits until the conmon whose pid podman wrote to `pidFile`
 * (`--conmon-pidfile`) has exited, at most `timeoutMs`. The pid counts only
 * while it is a conmon of container `name`: the file lies in a directory the
 * container can write.
 */
export async function waitForConmon(pidFile: string, name: string, timeoutMs: number): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  const deadline = Date.now() + timeoutMs;
  while (isConmonOf(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''), name) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
}

/** Whether a /proc cmdline is that of a conmon monitoring container `name`. */
export function isConmonOf(cmdline: string, name: string): boolean {
  const argv = cmdline.split('\0');
  if (!argv[0]?.endsWith('conmon')) return false;
  const n = argv.indexOf('-n');
  return n >= 0 && argv[n + 1] === name;
}
