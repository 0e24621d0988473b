import { hostname } from 'node:os';
import {
  type Availability,
  type Capability,
  type Driver,
  DriverUnavailableError,
  defaultStateDir,
  type EnvironmentInfo,
  type EnvSpec,
  ExecenvError,
  type GcReport,
  hostRunner,
  InvalidSpecError,
  isAlive,
  type LeaseResource,
  type OpenOptions,
  ownerOf,
  TimeoutError,
  TransportError,
  validateSpec,
} from '@execenv/core';
import { DEFAULT_PATH, leaseGc, leaseList, openWithLease } from '@execenv/core/driver';
import { driverImages, type ImageSettings, sweepImageCache } from '@execenv/images';
import { type AgentDelivery, hostAgentBinary, startLxdAgent } from './lxd-agent.js';
import { LxdApiError, LxdClient, LxdConnectionError, type LxdEndpoint } from './lxd-client.js';
import { findLocalSocket } from './lxd-endpoint.js';
import { LxdEnvironment } from './lxd-environment.js';
import { startExec } from './lxd-exec.js';
import { IMAGE_PROPERTY, lxdImageSource } from './lxd-images.js';
import {
  CONFIG_PREFIX,
  canMountAgent,
  checkLxdSpec,
  instanceRequest,
  type LxdOwner,
  profileRequest,
} from './lxd-instance-config.js';
import { ensureNatNetwork } from './lxd-network.js';
import type { LxdDriverOptions, LxdEnvOptions } from './lxd-options.js';

/**
 * The registry name of this driver.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { DRIVER_NAME } from '@execenv/lxd'; // importing the package registers the driver
 * const env = await open(DRIVER_NAME, { image: '/srv/images/bookworm-minbase.tar.zst' });
 * await env.close();
 * ```
 */
export const DRIVER_NAME = 'lxd';

/** Init of containers whose image is a plain root filesystem (no boot promised): it only keeps the container up. */
const KEEP_ALIVE_INIT = ['/bin/sleep', 'infinity'] as const;

/** How long an imported image may stay unused before gc() removes it. */
const DEFAULT_IMAGE_IDLE_MS = 7 * 24 * 3600 * 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * LxdDriver opens LXD containers and virtual machines over the REST API, on
 * the local unix socket or a remote HTTPS endpoint. Every instance and
 * profile it creates carries `user.execenv.*` keys naming its environment and
 * owner process, so gc() finds what dead owners left.
 *
 * @example
 * ```ts
 * import { LxdDriver } from '@execenv/lxd';
 * const driver = new LxdDriver({ project: 'ci' });
 * const image = '/srv/images/bookworm-minbase.tar.zst'; // converted and imported once, then reused
 * const env = await driver.open({ image, resources: { cpu: 2, memory: '2G' } });
 * try {
 *   await env.exec(['sh', '-c', 'nproc; free -m'], { check: true });
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export class LxdDriver implements Driver {
  readonly name = DRIVER_NAME;
  readonly #options: Readonly<LxdDriverOptions>;
  #client: Promise<LxdClient> | undefined;

  constructor(options: LxdDriverOptions = {}) {
    this.#options = Object.freeze({ ...options });
  }

  /** The API client, made on first use (the local socket is looked for then). */
  client(): Promise<LxdClient> {
    this.#client ??= (async () => {
      const endpoint: LxdEndpoint | undefined =
        this.#options.endpoint ?? (await findLocalSocket().then((s) => (s ? { socketPath: s } : undefined)));
      if (!endpoint)
        throw new DriverUnavailableError(
          DRIVER_NAME,
          'no LXD socket found (looked at $LXD_SOCKET, $LXD_DIR, /var/lib/lxd, the snap and Incus paths): install LXD (apt-get install lxd) and start it, or pass an HTTPS endpoint',
        );
      return new LxdClient(endpoint, { project: this.#options.project });
    })();
    this.#client.catch(() => {
      this.#client = undefined;
    });
    return this.#client;
  }

  async probe(): Promise<Availability> {
    const capabilities: Capability[] = [
      'isolation-container',
      'isolation-machine',
      'root',
      'network',
      'publish',
      'resource-limits',
    ];
    try {
      const client = await this.client();
      const server = await client.get<{
        environment?: { server_version?: string; server?: string; driver?: string };
        auth?: string;
      }>('/1.0');
      if (server.auth !== undefined && server.auth !== 'trusted')
        return {
          available: false,
          reason: `${client.address} does not trust this client (auth: ${server.auth})`,
          capabilities,
        };
      return {
        available: true,
        version: server.environment?.server_version,
        capabilities,
        details: {
          endpoint: client.address,
          server: server.environment?.server ?? 'lxd',
          drivers: server.environment?.driver ?? '',
        },
      };
    } catch (err) {
      return { available: false, reason: (err as Error).message, capabilities };
    }
  }

  #owner(id: string, owner: { pid: number; startTime: string }): LxdOwner {
    return { id, owner: `${owner.pid}:${owner.startTime}`, host: hostname() };
  }

  async open(spec: EnvSpec<LxdEnvOptions>, opts: OpenOptions = {}): Promise<LxdEnvironment> {
    const checked = validateSpec(spec, DRIVER_NAME);
    const envOptions = checkLxdSpec(checked);
    if (!checked.image)
      throw new InvalidSpecError(
        'image',
        'the lxd driver needs an image: a rootfs tarball, an LXD image file, lxd:ALIAS or index:...',
        {
          driver: DRIVER_NAME,
          op: 'open',
        },
      );
    if (checked.arch !== undefined && envOptions.type === 'virtual-machine')
      throw new InvalidSpecError('arch', "a virtual machine runs its image's own architecture", {
        driver: DRIVER_NAME,
        op: 'open',
      });
    const network = checked.network ?? 'none';
    if (network === 'host')
      throw new InvalidSpecError(
        'network',
        'an LXD instance cannot share the host\'s network: use "nat", "none" or the name of an LXD network',
        { driver: DRIVER_NAME, op: 'open' },
      );
    const client = await this.client();
    const undo = this.#undo(client);
    const leaseStateDir = this.#options.stateDir ?? opts.stateDir ?? defaultStateDir();
    return openWithLease({
      driver: DRIVER_NAME,
      spec: checked,
      opts,
      stateDir: leaseStateDir,
      undo,
      create: async ({ id, lease, throwIfAborted }) => {
        const owner = this.#owner(id, await ownerOf());
        const delivery: AgentDelivery = canMountAgent(
          checked,
          'socketPath' in client.endpoint && this.#options.agentMount !== false,
        )
          ? { kind: 'mount', binary: await hostAgentBinary() }
          : { kind: 'write' };
        // The image is resolved (and imported the first time) while the profile is made.
        const sourceReady = (async () => {
          const { images, cache } = await this.#images(envOptions.images);
          return lxdImageSource(checked.image!, { client, images, cache, onEvent: opts.onEvent, signal: opts.signal });
        })().catch((err: unknown) => {
          throw apiToExecenv(err, id, 'open');
        });
        sourceReady.catch(() => {});
        const natChoice = 'socketPath' in client.endpoint ? { local: { stateDir: leaseStateDir, holder: id } } : {};
        const netName =
          network === 'none' ? undefined : network === 'nat' ? await ensureNatNetwork(client, natChoice) : network;
        const plainRootfs =
          !checked.image!.startsWith('lxd:') &&
          !checked.image!.startsWith('simplestreams:') &&
          !checked.image!.startsWith('index:');
        const init =
          envOptions.type === 'virtual-machine' || envOptions.init === 'image'
            ? undefined
            : Array.isArray(envOptions.init)
              ? envOptions.init
              : plainRootfs
                ? KEEP_ALIVE_INIT
                : undefined;
        const profile = profileRequest(owner, checked, {
          network: netName,
          init,
          agentBinary: delivery.kind === 'mount' ? delivery.binary : undefined,
        });
        await lease.add({ kind: 'lxd-profile', name: id });
        await client.call({ method: 'POST', path: '/1.0/profiles', body: profile }).catch((err: unknown) => {
          throw apiToExecenv(err, id, 'open');
        });
        const source = await sourceReady;
        throwIfAborted();
        await lease.add({ kind: 'lxd-instance', name: id });
        // Not cut short by the signal: the daemon goes on creating an instance whose request was sent, and
        // only a finished creation is sure to be undone. The signal is looked at once it is done.
        await client
          .run({
            method: 'POST',
            path: '/1.0/instances',
            body: instanceRequest(owner, checked, source, ['default', id]),
          })
          .catch((err: unknown) => {
            throw apiToExecenv(err, id, 'open', checked.image);
          });
        throwIfAborted();
        emitBoot(opts, id);
        await client
          .run({ method: 'PUT', path: `/1.0/instances/${id}/state`, body: { action: 'start', timeout: 30 } })
          .catch((err: unknown) => {
            throw apiToExecenv(err, id, 'open');
          });
        // A started container runs commands at once, and an agent that answers is the readiness proof:
        // only where that fails (and always for a VM, whose own agent comes up late) is readiness awaited.
        const startAgent = async () => {
          if (envOptions.type !== 'virtual-machine') {
            const agent = await startLxdAgent(client, id, delivery).catch(() => undefined);
            if (agent) return agent;
          }
          await waitReady(client, id, envOptions, opts.signal);
          throwIfAborted();
          return startLxdAgent(client, id, delivery);
        };
        const agent = await startAgent().catch((err: unknown) => {
          throw apiToExecenv(err, id, 'open');
        });
        return new LxdEnvironment({
          id,
          driver: DRIVER_NAME,
          capabilities: [
            envOptions.type === 'virtual-machine' ? 'isolation-machine' : 'isolation-container',
            'root',
            ...(netName ? (['network'] as const) : []),
            ...(checked.resources ? (['resource-limits'] as const) : []),
            'publish',
          ],
          onEvent: opts.onEvent,
          closeOnSignal: opts.closeOnSignal,
          session: agent.session,
          hostRunner: hostRunner(),
          client,
          instance: id,
          env: checked.env,
          destroy: async () => {
            await agent.close();
            await lease.release(undo);
          },
          publish: (alias) => publishInstance(client, id, alias),
        });
      },
    });
  }

  /** Undoes one lease resource: the instance (stopped, deleted) or the profile. Gone already is done. */
  #undo(client: LxdClient) {
    return async (r: LeaseResource): Promise<void> => {
      const name = String(r.name);
      if (r.kind === 'lxd-instance') return deleteInstance(client, name);
      if (r.kind === 'lxd-profile') return deleteProfile(client, name);
      throw new Error(`execenv: no undo for resource kind "${r.kind}"`);
    };
  }

  async list(opts: { stateDir?: string } = {}): Promise<EnvironmentInfo[]> {
    return leaseList(opts.stateDir ?? this.#options.stateDir ?? defaultStateDir(), DRIVER_NAME);
  }

  /**
   * Removes what dead owners left: first by leases, then every instance and
   * profile whose `user.execenv.owner` names a process of this host that is
   * gone (left by an owner whose lease was lost too), then imported images
   * idle longer than `imageMaxIdleMs` (see pruneImages), and what killed
   * processes left in the image cache (partial downloads, half-made
   * conversions).
   */
  async gc(opts: { stateDir?: string } = {}): Promise<GcReport> {
    const client = await this.client();
    const report = await leaseGc(
      opts.stateDir ?? this.#options.stateDir ?? defaultStateDir(),
      DRIVER_NAME,
      this.#undo(client),
    );
    const here = hostname();
    const dead = async (config: Record<string, string> | undefined): Promise<string | undefined> => {
      const id = config?.[`${CONFIG_PREFIX}id`];
      const owner = config?.[`${CONFIG_PREFIX}owner`];
      if (!id || !owner || config?.[`${CONFIG_PREFIX}host`] !== here) return undefined;
      const [pid, startTime] = owner.split(':');
      return (await isAlive({ pid: Number(pid), startTime: startTime ?? '' })) ? undefined : id;
    };
    const instances = await client.get<{ name: string; config?: Record<string, string> }[]>('/1.0/instances', {
      recursion: '1',
    });
    for (const inst of instances) {
      const id = await dead(inst.config);
      if (!id) continue;
      try {
        await deleteInstance(client, inst.name);
        if (!report.removed.includes(id)) report.removed.push(id);
      } catch (err) {
        report.errors.push(`${id}: instance ${inst.name}: ${(err as Error).message}`);
      }
    }
    const profiles = await client.get<{ name: string; config?: Record<string, string> }[]>('/1.0/profiles', {
      recursion: '1',
    });
    await this.pruneImages().catch((err: unknown) => report.errors.push(`images: ${(err as Error).message}`));
    for (const p of profiles) {
      const id = await dead(p.config);
      if (!id) continue;
      try {
        await deleteProfile(client, p.name);
        if (!report.removed.includes(id)) report.removed.push(id);
      } catch (err) {
        report.errors.push(`${id}: profile ${p.name}: ${(err as Error).message}`);
      }
    }
    return sweepImageCache(report, this.#images());
  }

  /** Image settings (the user's configuration and EXECENV_* variables, then the driver's, then the spec's) and their cache. */
  #images(forEnvironment?: ImageSettings) {
    return driverImages(
      this.#options.cacheDir,
      this.#options.imageServers ? { servers: this.#options.imageServers } : undefined,
      this.#options.images,
      forEnvironment,
    );
  }

  /**
   * Removes the images this driver imported (property `execenv.imported`)
   * that no instance was made from and that were last used more than
   * `maxIdleMs` ago; returns their aliases. Published images are never
   * touched: their names belong to whoever published them.
   */
  async pruneImages(opts: { maxIdleMs?: number } = {}): Promise<string[]> {
    const client = await this.client();
    const cutoff = Date.now() - (opts.maxIdleMs ?? this.#options.imageMaxIdleMs ?? DEFAULT_IMAGE_IDLE_MS);
    const instances = await client.get<{ config?: Record<string, string> }[]>('/1.0/instances', { recursion: '1' });
    const inUse = new Set(instances.map((i) => i.config?.['volatile.base_image']).filter(Boolean));
    const images = await client.get<
      { fingerprint: string; properties?: Record<string, string>; last_used_at?: string; uploaded_at?: string }[]
    >('/1.0/images', { recursion: '1' });
    const removed: string[] = [];
    for (const img of images) {
      const alias = img.properties?.[IMAGE_PROPERTY];
      if (!alias || inUse.has(img.fingerprint)) continue;
      const used = Math.max(Date.parse(img.last_used_at ?? '') || 0, Date.parse(img.uploaded_at ?? '') || 0);
      if (used > cutoff) continue;
      try {
        await client.run({ method: 'DELETE', path: `/1.0/images/${img.fingerprint}` });
        removed.push(alias);
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    }
    return removed;
  }

  /** What LXD still holds for an environment id: its instance and its profile, one line each. */
  async resources(id: string): Promise<string[]> {
    const client = await this.client();
    const left: string[] = [];
    const instances = await client.get<{ name: string; config?: Record<string, string> }[]>('/1.0/instances', {
      recursion: '1',
    });
    for (const i of instances)
      if (i.name === id || i.config?.[`${CONFIG_PREFIX}id`] === id) left.push(`instance ${i.name}`);
    const profiles = await client.get<{ name: string; config?: Record<string, string> }[]>('/1.0/profiles', {
      recursion: '1',
    });
    for (const p of profiles)
      if (p.name === id || p.config?.[`${CONFIG_PREFIX}id`] === id) left.push(`profile ${p.name}`);
    return left;
  }
}

function emitBoot(opts: OpenOptions, id: string): void {
  try {
    opts.onEvent?.({ type: 'boot', envId: id, driver: DRIVER_NAME });
  } catch {
    // listeners must not throw
  }
}

function isGone(err: unknown): boolean {
  return err instanceof LxdApiError && (err.status === 404 || /not found/i.test(err.message));
}

/**
 * Stops (forcibly) and deletes an instance; an ephemeral one deletes itself
 * as its stop finishes, so the DELETE after it finds it gone. Gone already is done.
 */
export async function deleteInstance(client: LxdClient, name: string): Promise<void> {
  const path = `/1.0/instances/${encodeURIComponent(name)}`;
  try {
    await client
      .run({ method: 'PUT', path: `${path}/state`, body: { action: 'stop', force: true } })
      .catch((err: unknown) => {
        if (!(err instanceof LxdApiError && /already stopped/i.test(err.message))) throw err;
      });
    await client.run({ method: 'DELETE', path }).catch(async (err: unknown) => {
      if (isGone(err)) return;
      // Busy for a moment (still being created, or deleting itself after a stop made elsewhere): tried again.
      for (let i = 0; i < 50; i++) {
        await sleep(100);
        const gone = await client.run({ method: 'DELETE', path }).then(
          () => true,
          (e: unknown) => isGone(e),
        );
        if (gone) return;
      }
      throw err;
    });
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
}

/** Deletes a profile; gone already is done. */
export async function deleteProfile(client: LxdClient, name: string): Promise<void> {
  try {
    await client.call({ method: 'DELETE', path: `/1.0/profiles/${encodeURIComponent(name)}` });
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
}

/**
 * Waits until the instance runs a command (`true` through the exec API):
 * a container at once, a VM once its lxd-agent answers. On timeout, the
 * error says the instance's state and the last failure.
 */
export async function waitReady(
  client: LxdClient,
  name: string,
  o: LxdEnvOptions,
  signal?: AbortSignal,
): Promise<void> {
  const timeoutMs = o.readyTimeoutMs ?? (o.type === 'virtual-machine' ? 300_000 : 60_000);
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt';
  while (Date.now() < deadline) {
    if (signal?.aborted) return;
    try {
      const proc = await startExec(client, name, {
        command: ['true'],
        environment: { PATH: DEFAULT_PATH },
        cwd: '/',
        user: 0,
        group: 0,
        stdin: false,
      });
      proc.stdout.resume();
      proc.stderr.resume();
      const exit = await proc.exited;
      if (exit.exitCode === 0) return;
      last = `true exited with ${exit.exitCode ?? exit.signal}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  const state = await client
    .get<{ status?: string }>(`/1.0/instances/${encodeURIComponent(name)}/state`)
    .then((s) => s.status ?? 'unknown')
    .catch((err: unknown) => `unknown (${(err as Error).message})`);
  throw new TimeoutError(
    `execenv: instance ${name} did not run commands within ${timeoutMs} ms (state: ${state}; last attempt: ${last})${
      o.type === 'virtual-machine' ? '; a VM needs KVM and vhost_vsock on the host, and lxd-agent in its image' : ''
    }`,
    { envId: name, driver: DRIVER_NAME, op: 'open' },
  );
}

/**
 * Publishes an instance as an image under `alias`: from a snapshot made for
 * it and deleted afterwards, so the instance (ephemeral, which a stop would
 * delete) keeps running. Returns `lxd:<alias>`.
 */
export async function publishInstance(client: LxdClient, name: string, alias: string): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(alias))
    throw new InvalidSpecError('alias', 'letters, digits, ".", "_", "+" and "-"', {
      envId: name,
      driver: DRIVER_NAME,
      op: 'publish',
    });
  const path = `/1.0/instances/${encodeURIComponent(name)}`;
  try {
    // An ephemeral instance would delete itself on stop: publish it from a snapshot instead.
    const snapshot = `execenv-publish-${Date.now().toString(36)}`;
    await client.run({ method: 'POST', path: `${path}/snapshots`, body: { name: snapshot, stateful: false } });
    try {
      await client.run({
        method: 'POST',
        path: '/1.0/images',
        body: {
          source: { type: 'snapshot', name: `${name}/${snapshot}` },
          aliases: [{ name: alias, description: `published by execenv from ${name}` }],
          properties: { 'execenv.published-from': name },
        },
      });
    } finally {
      await client.run({ method: 'DELETE', path: `${path}/snapshots/${snapshot}` }).catch(() => {});
    }
    return `lxd:${alias}`;
  } catch (err) {
    throw apiToExecenv(err, name, 'publish');
  }
}

/** Turns an LXD client failure into an ExecenvError for `op` on environment `id`. */
export function apiToExecenv(err: unknown, id: string, op: string, image?: string): unknown {
  if (err instanceof ExecenvError) return err;
  const ctx = { envId: id, driver: DRIVER_NAME, op, cause: err };
  if (err instanceof LxdConnectionError) return new TransportError(`execenv: ${op} ${id}: ${err.message}`, ctx);
  if (err instanceof LxdApiError) {
    if (image && /image not found|not found/i.test(err.message))
      return new ExecenvError('IMAGE_NOT_FOUND', `execenv: image "${image}" not found in LXD: ${err.message}`, ctx);
    return new ExecenvError('EXEC_FAILED', `execenv: ${op} ${id}: LXD said ${err.message}`, ctx);
  }
  if (err instanceof Error && err.name === 'AbortError') return err;
  return err;
}
