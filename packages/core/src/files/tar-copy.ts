import { hostEnv } from '../driver/host.js';
import { HostCommandError, type ProcessRunner } from '../runner.js';

const HOST_ENV = hostEnv();

/**
 * Copies the contents of the host directory `from` into the existing
 * directory `to` with GNU tar on both ends: `tar -C from -cf - . | tar -C to
 * -xf -`, numeric owners kept when running as root. Only for trees whose
 * names tar itself produced and a `to` no one else writes to: it is the fast
 * path of RootedFiles, not a way to unpack untrusted archives. Returns the
 * bytes tar wrote.
 *
 * @deprecated The fast path of the deprecated RootedFiles: its paths are
 * resolved on the host, which a process inside the environment can race with
 * symlinks. Run file operations through the in-environment agent instead:
 * `AgentEnvironment` from `@execenv/core/driver` (see
 * docs/third-party-drivers.md).
 *
 * @example
 * ```ts
 * import { hostRunner, tarCopy } from '@execenv/core';
 * // into a fresh, empty staging directory that nothing else writes to
 * const bytes = await tarCopy(hostRunner(), '/home/me/project', '/var/lib/foo/e1/stage');
 * ```
 */
export async function tarCopy(runner: ProcessRunner, from: string, to: string): Promise<number> {
  const owners = process.getuid?.() === 0 ? ['--same-owner'] : ['--no-same-owner'];
  const create = ['tar', '--numeric-owner', '--totals', '-C', from, '-cf', '-', '.'];
  const extract = ['tar', '--numeric-owner', '--same-permissions', ...owners, '-C', to, '-xf', '-'];
  const c = runner.spawn(create, { env: HOST_ENV, stdin: 'ignore' });
  const x = runner.spawn(extract, { env: HOST_ENV, stdout: 'ignore' });
  let createErr = '';
  let extractErr = '';
  c.stderr?.on('data', (b: Buffer) => (createErr += b.toString()));
  x.stderr?.on('data', (b: Buffer) => (extractErr += b.toString()));
  x.stdin?.on('error', () => {});
  c.stdout?.pipe(x.stdin!);
  const [ce, xe] = await Promise.all([c.exited, x.exited]);
  if (xe.exitCode !== 0) throw new HostCommandError({ argv: extract, ...xe, stdout: '', stderr: extractErr });
  if (ce.exitCode !== 0) throw new HostCommandError({ argv: create, ...ce, stdout: '', stderr: createErr });
  return Number(/Total bytes written: (\d+)/.exec(createErr)?.[1] ?? 0);
}
