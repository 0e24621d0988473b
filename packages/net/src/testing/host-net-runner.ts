import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { HostCommandError, type ProcessRunner, type RunOptions, type RunResult } from '@execenv/core';

/**
 * HostNetRunner is a ProcessRunner playing a host with no routes,
 * forwarding on and no execenv links or rules, for unit tests of drivers
 * that put environments on networks: it records every command and its
 * stdin and runs none, except dnsmasq, played by a process that ignores
 * SIGHUP (its reload) and whose pid goes in the pid file, so @execenv/net
 * can stop it again. Call `stop()` when the test ends.
 *
 * @example
 * ```ts
 * import { Networks } from '@execenv/net';
 * import { HostNetRunner } from '@execenv/net/testing';
 * const runner = new HostNetRunner();
 * const networks = new Networks({ stateDir, runner, runDir });
 * try {
 *   await networks.attachNamespace({ network: 'nat', holder: 'env-1', netns: { path: '/run/netns/env-1' } });
 *   console.log(runner.commands); // the ip, nft and dnsmasq command lines a driver test asserts on; none ran
 * } finally {
 *   runner.stop();
 * }
 * ```
 */
export class HostNetRunner implements ProcessRunner {
  readonly ran: { argv: readonly string[]; input: string | undefined }[] = [];
  readonly #children: ChildProcess[] = [];

  /** The argv of every command run, joined with spaces. */
  get commands(): string[] {
    return this.ran.map((r) => r.argv.join(' '));
  }

  /** Records the command; answers as the played host would. */
  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.ran.push({ argv, input: opts?.input === undefined ? undefined : String(opts.input) });
    const cmd = argv.join(' ');
    const answer = (stdout: string, exitCode = 0, stderr = ''): RunResult => {
      const result = { argv, exitCode, signal: null, stdout, stderr };
      if (exitCode !== 0 && opts?.check !== false) throw new HostCommandError(result);
      return result;
    };
    // Nothing of execenv's exists yet: no exv* link, no nftables table.
    if (cmd.startsWith('ip -j link')) return answer('', 1, 'Device does not exist.\n');
    if (cmd === 'nft -j -a list table inet execenv') return answer('', 1, 'Error: No such file or directory\n');
    if (cmd === 'ip -j -4 route show table all' || cmd === 'ip -j -4 addr show') return answer('[]');
    if (cmd === 'cat /proc/sys/net/ipv4/ip_forward') return answer('1\n');
    if (argv[0] === 'dnsmasq') {
      const pidFile = argv.find((a) => a.startsWith('--pid-file='))!.slice('--pid-file='.length);
      const child = spawn('sh', ['-c', 'trap "" HUP; exec sleep 600'], { stdio: 'ignore' });
      this.#children.push(child);
      await writeFile(pidFile, `${child.pid}\n`);
    }
    return answer('');
  }

  /** Not played: @execenv/net only runs commands to completion. */
  spawn(): never {
    throw new Error('HostNetRunner: spawn is not expected');
  }

  /** Kills what is left of the played dnsmasqs. */
  stop(): void {
    for (const child of this.#children) child.kill('SIGKILL');
  }
}
