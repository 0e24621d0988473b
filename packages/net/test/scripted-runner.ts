import type { ProcessRunner, RunningProcess, RunOptions, RunResult } from '@execenv/core';
import { HostCommandError } from '@execenv/core';

/** What a scripted command answers. */
export type Answer = Partial<Pick<RunResult, 'exitCode' | 'stdout' | 'stderr'>>;

/**
 * ScriptedRunner records the argv (and stdin) of every host command and
 * answers each with what `respond` returns for it (exit 0 and no output by
 * default), failing like the real runner on a non-zero exit.
 */
export class ScriptedRunner implements ProcessRunner {
  readonly ran: { argv: readonly string[]; input: string | undefined }[] = [];
  /** The environment each command was given, in order. */
  readonly envs: (Record<string, string> | undefined)[] = [];
  readonly #respond: (argv: readonly string[]) => Answer | undefined;

  constructor(respond: (argv: readonly string[]) => Answer | undefined = () => undefined) {
    this.#respond = respond;
  }

  /** The argv of every command run, joined with spaces. */
  get commands(): string[] {
    return this.ran.map((r) => r.argv.join(' '));
  }

  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.ran.push({ argv, input: opts?.input === undefined ? undefined : String(opts.input) });
    this.envs.push(opts?.env);
    const a = this.#respond(argv) ?? {};
    const result: RunResult = {
      argv,
      exitCode: a.exitCode ?? 0,
      signal: null,
      stdout: a.stdout ?? '',
      stderr: a.stderr ?? '',
    };
    if (opts?.check !== false && result.exitCode !== 0) throw new HostCommandError(result);
    return result;
  }

  spawn(): RunningProcess {
    throw new Error('ScriptedRunner: spawn is not expected');
  }
}

/** Answers for a host with eth0 on 192.0.2.0/24 and, when given, more routes. */
export function hostWithRoutes(...extra: string[]) {
  return (argv: readonly string[]): Answer | undefined => {
    const cmd = argv.join(' ');
    if (cmd === 'ip -j -4 route show table all')
      return {
        stdout: JSON.stringify([
          { dst: 'default', gateway: '192.0.2.1', dev: 'eth0' },
          { dst: '192.0.2.0/24', dev: 'eth0' },
          ...extra.map((dst) => ({ dst, dev: 'other0' })),
        ]),
      };
    if (cmd === 'ip -j -4 addr show')
      return {
        stdout: JSON.stringify([
          { ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.0.2.2', prefixlen: 24 }] },
        ]),
      };
    if (cmd === 'cat /proc/sys/net/ipv4/ip_forward' || cmd === 'cat /proc/sys/net/ipv6/conf/all/forwarding')
      return { stdout: '1\n' };
    if (cmd === 'ip -j -6 route show table all')
      return {
        stdout: JSON.stringify([
          { dst: 'fd0e:78ec:e0e0::/64', dev: 'other0' },
          { dst: 'fe80::/64', dev: 'eth0' },
        ]),
      };
    if (argv[0] === 'ip' && argv[1] === '-j' && argv[2] === 'link')
      return { exitCode: 1, stderr: 'Device does not exist.\n' };
    if (cmd === 'nft -j -a list table inet execenv')
      return { exitCode: 1, stderr: 'Error: No such file or directory\n' };
    return undefined;
  };
}
