import { readdir, readFile } from 'node:fs/promises';
import { hostRunner, hostUndo, type LeaseResource, type ProcessRunner, removeTree, type Undo } from '@execenv/core';
import { isConmonOf } from './attached-run.js';
import { isGone, type PodmanCli } from './podman-cli.js';

/**
 * Lease kind of a container; `name` is the environment id.
 *
 * @example
 * ```ts
 * import { defaultStateDir, readLeases } from '@execenv/core';
 * import { CONTAINER } from '@execenv/podman';
 * for (const lease of await readLeases(defaultStateDir(), 'podman'))
 *   console.log(lease.id, lease.resources.filter((r) => r.kind === CONTAINER).map((r) => r.name));
 * ```
 */
export const CONTAINER = 'podman-container';
/**
 * Lease kind of a network made for one environment.
 *
 * @example
 * ```ts
 * import { defaultStateDir, readLeases } from '@execenv/core';
 * import { NETWORK } from '@execenv/podman';
 * const leases = await readLeases(defaultStateDir(), 'podman');
 * const networks = leases.flatMap((l) => l.resources.filter((r) => r.kind === NETWORK).map((r) => r.name));
 * ```
 */
export const NETWORK = 'podman-network';

/**
 * The lease record of a container.
 *
 * @example
 * ```ts
 * import { defaultStateDir, Lease } from '@execenv/core';
 * import { containerResource } from '@execenv/podman';
 * const lease = await Lease.create(defaultStateDir(), 'execenv-abc123', 'podman');
 * await lease.add(containerResource('execenv-abc123')); // { kind: 'podman-container', path: ..., name: ... }
 * // Then `podman create --name execenv-abc123`: a crash in between leaves a record gc() finishes.
 * ```
 */
export function containerResource(name: string): LeaseResource {
  return { kind: CONTAINER, path: name, name };
}

/**
 * The lease record of a network.
 *
 * @example
 * ```ts
 * import { defaultStateDir, Lease, newEnvironmentId } from '@execenv/core';
 * import { ID_LABEL, networkResource, PodmanCli } from '@execenv/podman';
 * const id = newEnvironmentId();
 * const lease = await Lease.create(defaultStateDir(), id, 'podman');
 * await lease.add(networkResource(id)); // recorded first: a crash in between leaves a record gc() finishes
 * await new PodmanCli().run(['network', 'create', '--label', `${ID_LABEL}=${id}`, id]);
 * ```
 */
export function networkResource(name: string): LeaseResource {
  return { kind: NETWORK, path: name, name };
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function nameOf(r: LeaseResource): string {
  // gc() replays records from disk: only a plain podman name, never an option.
  if (typeof r.name !== 'string' || !NAME.test(r.name))
    throw new Error(`execenv: malformed ${r.kind} lease record: ${JSON.stringify(r.name)}`);
  return r.name;
}

/** Removes a container with everything it holds; nothing to do when it is gone. */
export async function removeContainer(cli: PodmanCli, name: string): Promise<void> {
  await cli.run(['rm', '--force', '--ignore', '--volumes', '--time', '0', name]);
  // podman (a service above all) can answer before the container's conmon has exited: when it runs
  // on this host, close() returns only once nothing of the container is left here.
  await waitForMonitorsGone(name, 5000);
}

/** Pids of the conmon processes on this host that monitor the container `name`. */
export async function containerMonitors(name: string): Promise<number[]> {
  const entries = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  // Read at once: one after the other, a host's few hundred processes take a tenth of a second.
  const cmdlines = await Promise.all(entries.map((e) => readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')));
  return entries.filter((_, i) => isConmonOf(cmdlines[i]!, name)).map(Number);
}

async function waitForMonitorsGone(name: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await containerMonitors(name)).length > 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
}

/** Removes a network; nothing to do when it is gone. */
export async function removeNetwork(cli: PodmanCli, name: string): Promise<void> {
  await cli.run(['network', 'rm', '--force', name]).catch((err: unknown) => {
    if (!isGone(err)) throw err;
  });
}

/**
 * The podman driver's undo: containers and networks through podman, core's
 * kinds (dir) by hostUndo through `runner`, or, without one, directories in
 * this process (no `rm` process to start).
 *
 * @example
 * ```ts
 * import { defaultStateDir, hostRunner, Lease, newEnvironmentId } from '@execenv/core';
 * import { containerResource, createArgs, PodmanCli, podmanUndo } from '@execenv/podman';
 * const cli = new PodmanCli();
 * const id = newEnvironmentId();
 * const lease = await Lease.create(defaultStateDir(), id, 'podman');
 * await lease.add(containerResource(id));
 * await cli.run(createArgs({ name: id, image: 'localhost/builder', owner: '4242:1234@host', transport: 'exec' }));
 * await lease.release(podmanUndo(cli, hostRunner())); // podman rm --force, then the lease file goes
 * ```
 */
export function podmanUndo(cli: PodmanCli, runner?: ProcessRunner): Undo {
  const host = hostUndo(runner ?? hostRunner());
  return async (r) => {
    if (r.kind === CONTAINER) return removeContainer(cli, nameOf(r));
    if (r.kind === NETWORK) return removeNetwork(cli, nameOf(r));
    if (r.kind === 'dir' && !runner && typeof r.path === 'string') return removeTree(r.path);
    return host(r);
  };
}
