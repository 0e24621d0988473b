import type { MountSpec } from '@execenv/core';

/** Where a sandbox's root, agent and bind sources sit inside bubblewrap's own (tmpfs) root. */
export const SANDBOX = {
  /** The environment's root; the agent pivots into it. */
  root: '/newroot',
  /** The agent binary, read-only. */
  agent: '/execenv-agent',
  /** Sources of `spec.mounts`, one directory each, numbered. */
  binds: '/execenv-binds',
} as const;

/** What one sandbox is made of. */
export interface SandboxPlan {
  /** The `bwrap` binary. */
  bwrap: string;
  /** The agent binary on the host. */
  agent: string;
  /** The environment's root directory on the host (a private copy of the image). */
  root: string;
  /** `none` gives the sandbox a network namespace of its own with only loopback. */
  network: 'none' | 'host';
  /** Host directories attached inside the environment. */
  mounts: readonly MountSpec[];
}

/**
 * The argv that starts one sandbox: bubblewrap makes private mount, network,
 * IPC and UTS namespaces whose root is a tmpfs holding a minimal /dev, the
 * agent and the environment's root, and dies with this process; the agent then becomes
 * the init of new mount and pid namespaces rooted in the environment's root
 * (mounting /proc, /sys and /dev there itself, at paths it resolves inside
 * the root) and serves one session on its stdin and stdout.
 */
export function sandboxArgv(plan: SandboxPlan): string[] {
  const argv = [
    plan.bwrap,
    '--die-with-parent',
    '--unshare-ipc',
    '--unshare-uts',
    ...(plan.network === 'none' ? ['--unshare-net'] : []),
    // The agent needs CAP_SYS_ADMIN to make its namespaces and CAP_SETUID to run commands as other users.
    '--cap-add',
    'ALL',
    // The device nodes the agent binds into the root's minimal /dev.
    '--dev',
    '/dev',
    '--ro-bind',
    plan.agent,
    SANDBOX.agent,
    '--bind',
    plan.root,
    SANDBOX.root,
  ];
  const agentBinds: string[] = [];
  plan.mounts.forEach((m, i) => {
    const staged = `${SANDBOX.binds}/${i}`;
    argv.push(m.readOnly ? '--ro-bind' : '--bind', m.source, staged);
    agentBinds.push(m.readOnly ? '--bind-ro' : '--bind', staged, m.target);
  });
  argv.push('--', SANDBOX.agent, '--root', SANDBOX.root, ...agentBinds, '--stdio');
  return argv;
}
