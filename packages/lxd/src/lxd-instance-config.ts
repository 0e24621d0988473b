import { type EnvSpec, InvalidSpecError, parseSize } from '@execenv/core';
import { checkImageSettings } from '@execenv/images';
import { AGENT_DEVICE, agentDevice, DEV_TMPFS_BYTES } from './lxd-agent.js';
import type { LxdImageSource } from './lxd-images.js';
import type { LxdEnvOptions } from './lxd-options.js';

/**
 * Config key prefix of everything this driver creates; gc finds its things by it.
 *
 * @example
 * ```ts
 * import { CONFIG_PREFIX, LxdClient } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * const instances = await client.get<{ name: string; config?: Record<string, string> }[]>('/1.0/instances', {
 *   recursion: '1',
 * });
 * for (const i of instances)
 *   if (i.config?.[`${CONFIG_PREFIX}id`]) console.log(i.name, 'owned by', i.config[`${CONFIG_PREFIX}owner`]);
 * ```
 */
export const CONFIG_PREFIX = 'user.execenv.';

/** Who created an instance or profile: the environment id and the owner process on its host. */
export interface LxdOwner {
  id: string;
  /** `pid:starttime` of the owning process. */
  owner: string;
  /** Host name of the owning process; its liveness is judged only there. */
  host: string;
}

/** The `user.execenv.*` keys recording an owner. */
export function ownerConfig(owner: LxdOwner): Record<string, string> {
  return {
    [`${CONFIG_PREFIX}id`]: owner.id,
    [`${CONFIG_PREFIX}owner`]: owner.owner,
    [`${CONFIG_PREFIX}host`]: owner.host,
  };
}

/** What the instance needs that is not its image: network device, init, limits. */
export interface InstancePlan {
  /** Name of the LXD network the instance's eth0 joins, or undefined for none. */
  network?: string;
  /** Command line of an init to run when the image has none (containers). */
  init?: readonly string[];
  /** Host path of the agent binary to mount read-only into the container (see canMountAgent); else it is written in. */
  agentBinary?: string;
}

/** LXD's reading of a boolean config value. */
const isTrue = (v: string | undefined) => /^(true|1|yes|on)$/i.test(v ?? '');

/**
 * Whether the host's agent binary can be mounted into the instance instead
 * of written into it: only for a container of a daemon on this host (its
 * unix socket: the daemon sees the host's files) that is unprivileged,
 * where the mount's read-only flag is locked. Root of a privileged
 * container could make the mount writable and change the host's binary,
 * so such a container, a VM and a daemon reached over HTTPS get a copy.
 */
export function canMountAgent(spec: Readonly<EnvSpec<LxdEnvOptions>>, localDaemon: boolean): boolean {
  const o = (spec.driverOptions ?? {}) as LxdEnvOptions;
  if (!localDaemon || o.type === 'virtual-machine') return false;
  return !isTrue(o.config?.['security.privileged'] ?? String(o.privileged ?? false));
}

/** Checks the LXD part of a spec (driverOptions and what LXD cannot do) before anything is created. */
export function checkLxdSpec(spec: Readonly<EnvSpec<LxdEnvOptions>>): LxdEnvOptions {
  const o = (spec.driverOptions ?? {}) as LxdEnvOptions;
  const bad = (field: string, problem: string) =>
    new InvalidSpecError(`driverOptions.${field}`, problem, { driver: 'lxd', op: 'open' });
  if (o.type !== undefined && o.type !== 'container' && o.type !== 'virtual-machine')
    throw bad('type', `must be "container" or "virtual-machine", got ${JSON.stringify(o.type)}`);
  if (o.privileged !== undefined && typeof o.privileged !== 'boolean') throw bad('privileged', 'must be a boolean');
  if (
    o.rawLxc !== undefined &&
    (!Array.isArray(o.rawLxc) || o.rawLxc.some((l) => typeof l !== 'string' || l.includes('\n')))
  )
    throw bad('rawLxc', 'must be an array of single lines');
  if (o.rawLxc?.length && o.type === 'virtual-machine') throw bad('rawLxc', 'applies to containers only');
  if (o.vendorData !== undefined && typeof o.vendorData !== 'string') throw bad('vendorData', 'must be a string');
  if (o.storagePool !== undefined && (typeof o.storagePool !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(o.storagePool)))
    throw bad('storagePool', 'must be a storage pool name');
  if (
    o.init !== undefined &&
    o.init !== 'auto' &&
    o.init !== 'image' &&
    !(Array.isArray(o.init) && o.init.length > 0 && o.init.every((a) => typeof a === 'string' && !/[\s\n]/.test(a)))
  )
    throw bad('init', '"auto", "image", or an argv without whitespace in its words');
  if (o.readyTimeoutMs !== undefined && !(Number.isInteger(o.readyTimeoutMs) && o.readyTimeoutMs > 0))
    throw bad('readyTimeoutMs', 'must be a positive integer');
  if (o.config !== undefined) {
    if (typeof o.config !== 'object' || o.config === null) throw bad('config', 'must map keys to strings');
    for (const [k, v] of Object.entries(o.config)) {
      if (typeof v !== 'string') throw bad(`config.${k}`, 'must be a string');
      if (k.startsWith(CONFIG_PREFIX)) throw bad(`config.${k}`, `${CONFIG_PREFIX}* keys belong to the driver`);
    }
  }
  for (const [i, m] of (spec.mounts ?? []).entries())
    if (m.source.includes('\0') || m.target.includes('\0'))
      throw new InvalidSpecError(`mounts[${i}]`, 'must not contain NUL bytes', { driver: 'lxd', op: 'open' });
  const images = checkImageSettings(o.images, 'driverOptions.images', { driver: 'lxd', op: 'open' });
  return images === undefined ? o : { ...o, images };
}

/** The profile holding an environment's limits, security, devices and cloud-init: created with it, removed with it. */
export function profileRequest(owner: LxdOwner, spec: Readonly<EnvSpec<LxdEnvOptions>>, plan: InstancePlan) {
  const o = (spec.driverOptions ?? {}) as LxdEnvOptions;
  const vm = o.type === 'virtual-machine';
  const config: Record<string, string> = { ...ownerConfig(owner) };
  if (spec.resources?.cpu) config['limits.cpu'] = String(spec.resources.cpu);
  if (spec.resources?.memory !== undefined) config['limits.memory'] = `${parseSize(spec.resources.memory)}B`;
  if (!vm) config['security.privileged'] = o.privileged ? 'true' : 'false';
  // A written agent binary goes into the container's /dev tmpfs, which LXC's default size does not hold.
  const raw = [...(vm || plan.agentBinary ? [] : [`lxc.autodev.tmpfs.size = ${DEV_TMPFS_BYTES}`]), ...(o.rawLxc ?? [])];
  if (!vm && plan.init) raw.push(`lxc.init.cmd = ${plan.init.join(' ')}`, 'lxc.signal.halt = SIGKILL');
  if (raw.length > 0) config['raw.lxc'] = raw.join('\n');
  if (o.vendorData !== undefined) config['cloud-init.vendor-data'] = o.vendorData;
  Object.assign(config, o.config);
  const devices: Record<string, Record<string, string>> = {};
  if (plan.agentBinary && !vm) devices[AGENT_DEVICE] = agentDevice(plan.agentBinary);
  if (plan.network) devices.eth0 = { type: 'nic', name: 'eth0', network: plan.network };
  if (o.storagePool || spec.resources?.disk !== undefined) {
    devices.root = { type: 'disk', path: '/', pool: o.storagePool ?? 'default' };
    if (spec.resources?.disk !== undefined) devices.root.size = `${parseSize(spec.resources.disk)}B`;
  }
  (spec.mounts ?? []).forEach((m, i) => {
    devices[`execenv-mount${i}`] = {
      type: 'disk',
      source: m.source,
      path: m.target,
      ...(m.readOnly ? { readonly: 'true' } : {}),
    };
  });
  return {
    name: owner.id,
    description: `execenv environment ${owner.id}`,
    config,
    devices,
  };
}

/** The body of `POST /1.0/instances` for an environment. */
export function instanceRequest(
  owner: LxdOwner,
  spec: Readonly<EnvSpec<LxdEnvOptions>>,
  source: LxdImageSource,
  profiles: readonly string[],
) {
  const o = (spec.driverOptions ?? {}) as LxdEnvOptions;
  return {
    name: owner.id,
    type: o.type ?? 'container',
    ephemeral: spec.ephemeral ?? true,
    profiles,
    config: { ...ownerConfig(owner) },
    devices: {},
    source,
    start: false,
  };
}
