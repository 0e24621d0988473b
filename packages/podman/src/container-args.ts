import { InvalidSpecError, type MountSpec, parseSize, type ResourceSpec } from '@execenv/core';
import { ID_LABEL, OWNER_LABEL } from './labels.js';
import type { AgentTransport } from './podman-options.js';

/**
 * Where the agent binary is inside a container.
 *
 * @example
 * ```ts
 * import { AGENT_PATH, PodmanCli } from '@execenv/podman';
 * // A second agent serving a session on its stdin and stdout, as connectExec starts it.
 * const proc = new PodmanCli().spawn(['exec', '-i', 'execenv-abc123', AGENT_PATH, '--stdio'], { stdin: 'pipe' });
 * ```
 */
export const AGENT_PATH = '/.execenv/agent';
/**
 * The directory of the agent's socket inside a container.
 *
 * @example
 * ```ts
 * import { join } from 'node:path';
 * import { AGENT_SOCKET, RUN_DIR } from '@execenv/podman';
 * const runtimeDir = '/tmp/execenv-podman-x'; // the host directory mounted at RUN_DIR
 * const hostSocket = join(runtimeDir, AGENT_SOCKET.slice(RUN_DIR.length)); // /tmp/execenv-podman-x/agent.sock
 * ```
 */
export const RUN_DIR = '/.execenv/run';
/**
 * The agent's socket inside a container.
 *
 * @example
 * ```ts
 * import { AGENT_PATH, AGENT_SOCKET } from '@execenv/podman';
 * const entrypoint = JSON.stringify([AGENT_PATH, '--listen', AGENT_SOCKET]); // as createArgs sets it
 * ```
 */
export const AGENT_SOCKET = `${RUN_DIR}/agent.sock`;

/**
 * Everything `podman create` is told about one environment's container.
 *
 * @example
 * ```ts
 * import { type ContainerPlan, createArgs, PodmanCli } from '@execenv/podman';
 * const plan: ContainerPlan = {
 *   name: 'execenv-abc123', image: 'docker.io/library/debian:bookworm', owner: '4242:123456@build-host',
 *   transport: 'exec', network: 'none', resources: { cpu: 2, memory: '2G' }, pids: 512,
 * };
 * await new PodmanCli().run(createArgs(plan)); // podman create --name execenv-abc123 -i ...
 * ```
 */
export interface ContainerPlan {
  /** Container name: the environment id. */
  name: string;
  /** Image name or id to create from. */
  image: string;
  /** Value of the owner label. */
  owner: string;
  transport: AgentTransport;
  /** With the socket transport: the agent binary on the podman host, mounted read-only. */
  agentBinary?: string;
  /** With the socket transport: the host directory mounted at RUN_DIR. */
  runtimeDir?: string;
  /** `none`, `host`, or a podman network name; undefined leaves podman's default (NAT). */
  network?: string;
  resources?: ResourceSpec;
  pids?: number;
  mounts?: readonly MountSpec[];
  /** Where `podman run` writes the pid of the container's conmon (`--conmon-pidfile`). */
  conmonPidFile?: string;
}

/**
 * The arguments of `podman create` for an environment, or, when `run`, of
 * the `podman run --rm` that creates, starts and, once its agent exits,
 * removes it in one podman process that stays attached (AttachedRun): the
 * agent as the entrypoint (PID 1), listening on RUN_DIR's socket with stdin
 * kept open (`-i`: it exits, killing everything, when stdin closes), root
 * user, the id and owner labels, network, limits and mounts.
 *
 * @example
 * ```ts
 * import { createArgs, PodmanCli } from '@execenv/podman';
 * const args = createArgs(
 *   { name: 'execenv-abc123', image: 'localhost/builder', owner: '4242:123456@build-host', transport: 'socket',
 *     agentBinary: '/usr/lib/execenv/agent', runtimeDir: '/tmp/execenv-podman-x' },
 *   true, // podman run --rm: created, started and, when its stdin closes, removed by one podman process
 * );
 * const run = new PodmanCli().spawn(args, { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
 * ```
 */
export function createArgs(plan: ContainerPlan, run = false): string[] {
  const args = [...(run ? ['run', '--rm'] : ['create']), '--name', plan.name, '-i', '--user', '0:0', '--workdir', '/'];
  if (run && plan.conmonPidFile) args.push('--conmon-pidfile', plan.conmonPidFile);
  args.push('--label', `${ID_LABEL}=${plan.name}`, '--label', `${OWNER_LABEL}=${plan.owner}`);
  if (plan.network !== undefined) args.push('--network', plan.network);
  if (plan.transport === 'socket') {
    if (!plan.agentBinary || !plan.runtimeDir) throw new Error('the socket transport needs agentBinary and runtimeDir');
    args.push('--mount', bindMount(plan.agentBinary, AGENT_PATH, true, 'agent binary'));
    args.push('--mount', bindMount(plan.runtimeDir, RUN_DIR, false, 'runtime directory'));
  } else {
    args.push('--tmpfs', `${RUN_DIR}:mode=0700`);
  }
  const r = plan.resources;
  if (r?.cpu !== undefined) args.push('--cpus', String(r.cpu));
  if (r?.memory !== undefined) args.push('--memory', String(parseSize(r.memory)));
  if (plan.pids !== undefined) args.push('--pids-limit', String(plan.pids));
  plan.mounts?.forEach((m, i) => {
    args.push('--mount', bindMount(m.source, m.target, m.readOnly === true, `mounts[${i}]`));
  });
  args.push('--entrypoint', JSON.stringify([AGENT_PATH, '--listen', AGENT_SOCKET]), plan.image);
  return args;
}

/** A `--mount type=bind` value; its fields are comma-separated, so a path holding a comma is refused. */
function bindMount(source: string, target: string, readOnly: boolean, field: string): string {
  for (const p of [source, target])
    if (p.includes(',') || p.includes('\n'))
      throw new InvalidSpecError(
        field,
        `podman cannot bind a path containing a comma or newline: ${JSON.stringify(p)}`,
        {
          driver: 'podman',
          op: 'open',
        },
      );
  return `type=bind,source=${source},destination=${target}${readOnly ? ',ro=true' : ''}`;
}
