import { InvalidSpecError } from './errors.js';

/**
 * Resources an environment may use. Drivers that cannot enforce them say so through capabilities.
 *
 * @example
 * ```ts
 * import { open, type ResourceSpec } from '@execenv/core';
 * const resources: ResourceSpec = { cpu: 2, memory: '2G', disk: '20G' };
 * const env = await open('qemu', { image: './bookworm.tar.zst', resources });
 * ```
 */
export interface ResourceSpec {
  /** Number of CPUs. */
  cpu?: number;
  /** Memory, in bytes or with a unit suffix: `512M`, `2G`. */
  memory?: number | string;
  /** Root disk size, in bytes or with a unit suffix. */
  disk?: number | string;
}

/**
 * A host directory made visible inside the environment.
 *
 * @example
 * ```ts
 * import { type MountSpec, open } from '@execenv/core';
 * const mounts: MountSpec[] = [
 *   { source: '/home/me/src', target: '/src', readOnly: true },
 *   { source: '/var/cache/apt', target: '/var/cache/apt' },
 * ];
 * const env = await open('nspawn', { image: './bookworm.tar.zst', mounts });
 * ```
 */
export interface MountSpec {
  /** Absolute host path. */
  source: string;
  /** Absolute path inside the environment. */
  target: string;
  /** @default false */
  readOnly?: boolean;
}

/**
 * Architecture names accepted in EnvSpec.arch (Debian spelling).
 *
 * @example
 * ```ts
 * import { type Arch, open } from '@execenv/core';
 * const arch: Arch = 'i386'; // Debian's spelling
 * const env = await open('chroot', { image: './bookworm-i386.tar.zst', arch }); // i386 on an amd64 host
 * ```
 */
export type Arch = 'amd64' | 'arm64' | 'armhf' | 'i386' | 'ppc64el' | 's390x' | 'riscv64';

/**
 * All accepted EnvSpec.arch values.
 *
 * @example
 * ```ts
 * import { ARCHES, type Arch } from '@execenv/core';
 * const wanted = process.env.ARCH ?? 'amd64';
 * if (!(ARCHES as readonly string[]).includes(wanted)) throw new Error(`ARCH must be one of ${ARCHES.join(', ')}`);
 * const arch = wanted as Arch;
 * ```
 */
export const ARCHES: readonly Arch[] = ['amd64', 'arm64', 'armhf', 'i386', 'ppc64el', 's390x', 'riscv64'];

/**
 * EnvSpec says what environment to open. It is plain data: it can be
 * serialised, compared and logged.
 *
 * @example
 * ```ts
 * import { type EnvSpec, open } from '@execenv/core';
 * const spec: EnvSpec = {
 *   image: '/srv/images/bookworm-minbase.tar.zst',
 *   env: { LANG: 'C.UTF-8' },
 *   network: 'nat',
 *   labels: { job: 'nightly' },
 * };
 * const env = await open('podman', spec);
 * ```
 */
export interface EnvSpec<DriverOptions = Record<string, unknown>> {
  /** An image reference the driver understands (a rootfs tarball, a directory, an alias, ...). */
  image?: string;
  /** Architecture personality for commands (Debian name). @default the host's */
  arch?: Arch;
  /** Default environment variables for every exec. */
  env?: Record<string, string>;
  /** Resource limits. */
  resources?: ResourceSpec;
  /** `none`, `nat`, or the name of a network the driver knows. @default 'none' */
  network?: string;
  /** Host directories to mount. */
  mounts?: MountSpec[];
  /** Destroy everything on close. @default true */
  ephemeral?: boolean;
  /** Free-form labels recorded with the environment. */
  labels?: Record<string, string>;
  /** Options only the named driver understands. */
  driverOptions?: DriverOptions;
}

const SIZE = /^(\d+)([KMGT]i?B?)?$/i;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses a size such as `512M`, `2GiB` or a number of bytes; returns undefined when it is not one.
 *
 * @example
 * ```ts
 * import { parseSize } from '@execenv/core';
 * parseSize('512M'); // 536870912
 * parseSize('2GiB'); // 2147483648
 * parseSize('lots'); // undefined
 * ```
 */
export function parseSize(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const m = SIZE.exec(value.trim());
  if (!m) return undefined;
  const power = m[2] ? 'KMGT'.indexOf(m[2][0]!.toUpperCase()) + 1 : 0;
  const bytes = Number(m[1]) * 1024 ** power;
  return bytes > 0 ? bytes : undefined;
}

/**
 * Says what is wrong with a set of environment variables, or undefined when
 * nothing is: names must be valid shell names, values strings without NUL
 * bytes (which no process environment can hold). The field is `env` or
 * `env.NAME`, as InvalidSpecError names it.
 *
 * @example
 * ```ts
 * import { envProblem, InvalidSpecError } from '@execenv/core';
 * const problem = envProblem({ 'MAKE-FLAGS': '-j4' });
 * // { field: 'env.MAKE-FLAGS', problem: 'is not a valid variable name' }
 * if (problem) throw new InvalidSpecError(problem.field, problem.problem);
 * ```
 */
export function envProblem(env: unknown): { field: string; problem: string } | undefined {
  if (!isRecordOfStrings(env)) return { field: 'env', problem: 'must map names to strings' };
  for (const [name, value] of Object.entries(env)) {
    if (!NAME.test(name)) return { field: `env.${name}`, problem: 'is not a valid variable name' };
    if (value.includes('\0')) return { field: `env.${name}`, problem: 'must not contain NUL bytes' };
  }
  return undefined;
}

function isRecordOfStrings(v: unknown): v is Record<string, string> {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string')
  );
}

/**
 * Checks an EnvSpec before anything is created and returns a frozen copy.
 * Throws InvalidSpecError naming the first bad field.
 *
 * @example
 * ```ts
 * import { type EnvSpec, type OpenOptions, validateSpec } from '@execenv/core';
 * // first in FooDriver.open: a bad field fails before anything is created
 * async open(spec: EnvSpec<FooOptions>, opts: OpenOptions = {}) {
 *   const checked = validateSpec(spec, 'foo'); // a frozen copy
 *   return createFoo(checked, opts); // your backend
 * }
 * ```
 */
export function validateSpec<T extends EnvSpec<unknown>>(spec: T, driver?: string): Readonly<T> {
  const ctx = { driver, op: 'open' };
  const bad = (field: string, problem: string) => new InvalidSpecError(field, problem, ctx);
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw bad('spec', 'must be an object');
  if (spec.image !== undefined && (typeof spec.image !== 'string' || spec.image.length === 0))
    throw bad('image', 'must be a non-empty string');
  if (spec.arch !== undefined && !ARCHES.includes(spec.arch))
    throw bad('arch', `must be one of ${ARCHES.join(', ')}, got ${JSON.stringify(spec.arch)}`);
  if (spec.env !== undefined) {
    const problem = envProblem(spec.env);
    if (problem) throw bad(problem.field, problem.problem);
  }
  if (spec.resources !== undefined) {
    const r = spec.resources;
    if (typeof r !== 'object' || r === null) throw bad('resources', 'must be an object');
    if (r.cpu !== undefined && !(Number.isInteger(r.cpu) && r.cpu > 0))
      throw bad('resources.cpu', 'must be a positive integer');
    if (r.memory !== undefined && parseSize(r.memory) === undefined)
      throw bad('resources.memory', `must be bytes or a size like "512M", got ${JSON.stringify(r.memory)}`);
    if (r.disk !== undefined && parseSize(r.disk) === undefined)
      throw bad('resources.disk', `must be bytes or a size like "10G", got ${JSON.stringify(r.disk)}`);
  }
  if (spec.network !== undefined && (typeof spec.network !== 'string' || spec.network.length === 0))
    throw bad('network', "must be 'none', 'nat' or a network name");
  if (spec.mounts !== undefined) {
    if (!Array.isArray(spec.mounts)) throw bad('mounts', 'must be an array');
    spec.mounts.forEach((m, i) => {
      if (typeof m?.source !== 'string' || !m.source.startsWith('/'))
        throw bad(`mounts[${i}].source`, 'must be an absolute host path');
      if (typeof m.target !== 'string' || !m.target.startsWith('/'))
        throw bad(`mounts[${i}].target`, 'must be an absolute path inside the environment');
    });
  }
  if (spec.ephemeral !== undefined && typeof spec.ephemeral !== 'boolean') throw bad('ephemeral', 'must be a boolean');
  if (spec.labels !== undefined && !isRecordOfStrings(spec.labels)) throw bad('labels', 'must map names to strings');
  if (
    spec.driverOptions !== undefined &&
    (typeof spec.driverOptions !== 'object' || spec.driverOptions === null || Array.isArray(spec.driverOptions))
  )
    throw bad('driverOptions', 'must be an object');
  return Object.freeze(structuredClone(spec));
}
