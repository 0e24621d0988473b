import type { MountSpec } from '@execenv/core';
import type { NspawnMode } from './nspawn-options.js';

/** Where the agent binary is bind-mounted (read-only) inside the container. */
export const AGENT_IN_CONTAINER = '/run/execenv-agent';

/** Where the environment's runtime directory, holding the agent's socket, is bind-mounted inside the container. */
export const RUNTIME_IN_CONTAINER = '/run/execenv';

/** The agent's socket, inside the runtime directory. */
export const SOCKET_NAME = 'agent.sock';

/**
 * Everything that decides one container's systemd-nspawn command line.
 *
 * @example
 * ```ts
 * import { type NspawnArgs, nspawnArgv } from '@execenv/nspawn';
 * const args: NspawnArgs = {
 *   nspawn: '/usr/bin/systemd-nspawn', machine: 'execenv-demo', mode: 'plain', network: 'none',
 *   directory: '/var/cache/execenv/rootfs/bookworm', upper: '/var/lib/execenv/demo/upper',
 *   runtimeDir: '/var/lib/execenv/demo/run', agentBinary: '/usr/lib/execenv/agent',
 *   binds: [{ source: '/srv/src', target: '/src', readOnly: true }],
 *   linux32: false, scope: false, properties: [], killInit: true,
 * };
 * const argv = nspawnArgv(args);
 * ```
 */
export interface NspawnArgs {
  /** The systemd-nspawn binary. */
  nspawn: string;
  /** Machine name: the container's hostname and nspawn's name for it. */
  machine: string;
  /** The root directory: the cached image (read-only lower layer) when `upper` is set, else the machine's own. */
  directory: string;
  /** Upper layer of an overlay over `directory` (ephemeral environments); nspawn puts its work directory beside it. */
  upper?: string;
  /** `plain`: the agent is the init; `boot`: the image's init boots. */
  mode: NspawnMode;
  /**
   * `none`: a private network namespace with only loopback; `host`: the
   * host's; `{ namespacePath }`: the prepared namespace kept at that path
   * (one on an @execenv/net network).
   */
  network: 'none' | 'host' | { namespacePath: string };
  /** Host directory bind-mounted at RUNTIME_IN_CONTAINER. */
  runtimeDir: string;
  /** Host path of the agent binary, bind-mounted read-only at AGENT_IN_CONTAINER. */
  agentBinary: string;
  /** The spec's host directories; nspawn resolves their targets inside the root. */
  binds: readonly MountSpec[];
  /** The 32-bit personality (i386 on amd64). */
  linux32: boolean;
  /**
   * Whether a systemd PID 1 on the host can give the container a scope of its
   * own (`--keep-unit` off), to which `properties` apply.
   */
  scope: boolean;
  /** Unit properties of the scope (MemoryMax=..., CPUQuota=...); only with `scope`. */
  properties: readonly string[];
  /** In boot mode, stop the init with SIGKILL instead of an orderly poweroff (ephemeral machines). */
  killInit: boolean;
  /**
   * setpriv (util-linux), in boot mode: nspawn runs under it with a parent
   * death signal, so a booted container stops when the process that opened
   * it dies (a plain one stops anyway: its init's stdin closes).
   */
  setpriv?: string;
}

/**
 * Escapes a path for nspawn's colon-separated --bind and --overlay values,
 * where backslash escapes are interpreted.
 *
 * @example
 * ```ts
 * import { escapeNspawnPath } from '@execenv/nspawn';
 * const bind = `--bind=${escapeNspawnPath('/srv/a:b')}:/src`; // --bind=/srv/a\:b:/src
 * ```
 */
export function escapeNspawnPath(path: string): string {
  return path.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/**
 * The agent's argv inside the container (PROTOCOL.md, "Command line"): no --root, it serves where it runs.
 *
 * @example
 * ```ts
 * import { agentListenArgv } from '@execenv/nspawn';
 * agentListenArgv(); // ['/run/execenv-agent', '--listen', '/run/execenv/agent.sock']
 * ```
 */
export function agentListenArgv(): string[] {
  return [AGENT_IN_CONTAINER, '--listen', `${RUNTIME_IN_CONTAINER}/${SOCKET_NAME}`];
}

/**
 * The systemd-nspawn argv of one container. Settings files, journal links
 * and machined registration are off, so nothing outside the environment's
 * own directories is read or written.
 *
 * @example
 * ```ts
 * import { type NspawnArgs, nspawnArgv } from '@execenv/nspawn';
 * import { hostRunner } from '@execenv/core';
 * declare const args: NspawnArgs; // see NspawnArgs
 * const argv = nspawnArgv({ ...args, mode: 'boot', setpriv: '/usr/bin/setpriv' });
 * // ['/usr/bin/setpriv', '--pdeathsig', 'SIGTERM', '--', '/usr/bin/systemd-nspawn', '--quiet', ..., '--boot', ...]
 * const nspawn = hostRunner().spawn(argv, { stdin: 'ignore' });
 * ```
 */
export function nspawnArgv(a: NspawnArgs): string[] {
  const esc = escapeNspawnPath;
  const argv = [
    ...(a.mode === 'boot' && a.setpriv ? [a.setpriv, '--pdeathsig', 'SIGTERM', '--'] : []),
    a.nspawn,
    '--quiet',
    '--register=no',
    ...(a.scope ? a.properties.map((p) => `--property=${p}`) : ['--keep-unit']),
    '--settings=no',
    '--link-journal=no',
    `--machine=${a.machine}`,
    `--directory=${a.directory}`,
  ];
  if (a.upper !== undefined) argv.push(`--overlay=${esc(a.directory)}:${esc(a.upper)}:/`);
  if (a.network === 'none') argv.push('--private-network');
  else if (a.network !== 'host') {
    // The network's resolv.conf is written through the agent: nspawn must not bind-mount the host's over it.
    argv.push(`--network-namespace-path=${a.network.namespacePath}`, '--resolv-conf=off');
  }
  if (a.linux32) argv.push('--personality=x86');
  argv.push(
    `--bind=${esc(a.runtimeDir)}:${RUNTIME_IN_CONTAINER}`,
    `--bind-ro=${esc(a.agentBinary)}:${AGENT_IN_CONTAINER}`,
  );
  for (const m of a.binds) argv.push(`--${m.readOnly ? 'bind-ro' : 'bind'}=${esc(m.source)}:${esc(m.target)}`);
  if (a.mode === 'plain') {
    // The agent is PID 1 with the container's stdio: it prints "ready" when listening and exits when stdin closes.
    // The container is a pid namespace already, its init the agent: a further one per command (and its /proc
    // mount) would make every exec about 2.5 times slower, so commands run under a subreaper supervisor.
    argv.push('--setenv=EXECENV_AGENT_TREE=subreaper', '--console=pipe', '--', ...agentListenArgv());
    return argv;
  }
  // A pty whose output (the guest's console) nspawn copies to its stdout; nothing goes in.
  argv.push('--console=read-only');
  if (a.killInit) argv.push('--kill-signal=SIGKILL');
  argv.push('--boot', '--', '--show-status=yes', '--log-target=console');
  return argv;
}
