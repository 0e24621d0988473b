import type { Driver, Environment, OpenOptions } from './contract.js';
import { InvalidSpecError, UnknownDriverError } from './errors.js';
import type { EnvSpec } from './spec.js';

/**
 * Imports a module by specifier; injectable so tests need no real packages.
 *
 * @example
 * ```ts
 * import { type ModuleImporter, Registry } from '@execenv/core';
 * // stands in for `import('@execenv/foo')`, which registers the driver as a side effect
 * const importer: ModuleImporter = async () => {
 *   registry.register('foo', new FooDriver());
 * };
 * const registry = new Registry(importer);
 * const driver = await registry.driver('foo'); // imported on first use
 * ```
 */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const DRIVER_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * Package names tried, in order, for a driver that is not registered yet.
 *
 * @example
 * ```ts
 * import { driverPackages } from '@execenv/core';
 * driverPackages('bwrap'); // ['@execenv/bwrap', 'execenv-driver-bwrap']: what open('bwrap', ...) imports
 * ```
 */
export function driverPackages(name: string): string[] {
  return [`@execenv/${name}`, `execenv-driver-${name}`];
}

function isModuleNotFound(err: unknown, specifier: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(`'${specifier}'`)
  );
}

/**
 * The key of the process-wide registry on `globalThis`. Every copy of
 * `@execenv/core` loaded in one process (a driver installed with its own
 * copy, a `file:` dependency, two versions side by side) finds the same
 * registry under it, so a driver registered through one copy is opened
 * through any other.
 *
 * @example
 * ```ts
 * import { REGISTRY_KEY } from '@execenv/core';
 * // every copy of @execenv/core in the process keeps its drivers under this one key
 * console.log(REGISTRY_KEY === Symbol.for('@execenv/core/registry')); // true
 * console.log(REGISTRY_KEY in globalThis); // true once core is loaded
 * ```
 */
export const REGISTRY_KEY: unique symbol = Symbol.for('@execenv/core/registry');

/** Version of the shape kept under REGISTRY_KEY; a copy that finds another shape keeps a registry of its own. */
const REGISTRY_SHAPE = 1;

/** What every copy of core shares under REGISTRY_KEY. */
interface SharedRegistry {
  readonly shape: number;
  /** Registered drivers by name. */
  readonly drivers: Map<string, Driver>;
  /** Where each loaded copy of core lives (the URL of its registry module), in load order. */
  readonly copies: Set<string>;
}

/** The shared registry on `holder`, created by the first copy of core that loads; `copy` is recorded in it. */
function sharedRegistry(copy: string, holder: { [REGISTRY_KEY]?: SharedRegistry }): SharedRegistry {
  let shared = holder[REGISTRY_KEY];
  if (shared === undefined) {
    shared = { shape: REGISTRY_SHAPE, drivers: new Map(), copies: new Set() };
    Object.defineProperty(holder, REGISTRY_KEY, { value: shared, enumerable: false });
  } else if (shared.shape !== REGISTRY_SHAPE) {
    process.emitWarning(
      `execenv: another version of @execenv/core keeps an incompatible driver registry; the copy at ${copy} keeps its own, so drivers registered through the other are not seen here`,
      { code: 'EXECENV_CORE_COPIES' },
    );
    return { shape: REGISTRY_SHAPE, drivers: new Map(), copies: new Set([copy]) };
  }
  if (!shared.copies.has(copy)) {
    shared.copies.add(copy);
    if (shared.copies.size > 1)
      process.emitWarning(
        `execenv: ${shared.copies.size} copies of @execenv/core are loaded (${[...shared.copies].join(', ')}). ` +
          "They share one driver registry, but errors thrown by one copy are not instances of the other copy's classes (match them with hasCode(err, code) or err.code). " +
          'Drivers should list @execenv/core in peerDependencies; "npm ls @execenv/core" shows where the copies come from.',
        { code: 'EXECENV_CORE_COPIES' },
      );
  }
  return shared;
}

/** Explains an unknown driver: what was tried, and where two copies of core could be the cause. */
function unknownDriverDetail(name: string, tried: readonly string[], imported: readonly string[], copies: number) {
  const packages = driverPackages(name);
  const parts: string[] = [];
  if (imported.length === 0)
    parts.push(
      `neither ${packages.join(' nor ')} can be imported from @execenv/core's location; ` +
        `install the package that provides it (a third-party driver is published as ${packages[1]}) ` +
        'next to @execenv/core, or import a module that registers it',
    );
  else
    parts.push(
      `${imported.join(' and ')} imported but registered no driver "${name}": it registers another name, ` +
        'or registers through a copy of @execenv/core that keeps a registry of its own',
    );
  if (tried.length === 0) parts.push('the name is not a driver name, so nothing was imported');
  if (copies > 1) parts.push(`${copies} copies of @execenv/core are loaded in this process`);
  return parts.join('; ');
}

/**
 * Registry maps driver names to drivers, like Go's database/sql. Most code
 * uses the process-wide functions `register`, `drivers` and `open`, whose
 * registry lives on `globalThis` under REGISTRY_KEY and is shared by every
 * copy of `@execenv/core` in the process. A `new Registry()` is private to
 * its creator (tests, embedding).
 *
 * @example
 * ```ts
 * import { Registry } from '@execenv/core';
 * import { FakeDriver } from '@execenv/core/testing';
 * const registry = new Registry(); // private: the process-wide open() does not see it
 * registry.register('fake', new FakeDriver());
 * const env = await registry.open('fake', {});
 * ```
 */
export class Registry {
  readonly #drivers: Map<string, Driver>;
  readonly #importer: ModuleImporter;
  #copies: () => number;

  /**
   * @param importer imports a driver package by name.
   * @param drivers the map to keep drivers in. @default a new, private map
   */
  constructor(importer: ModuleImporter = (s) => import(s), drivers: Map<string, Driver> = new Map()) {
    this.#importer = importer;
    this.#drivers = drivers;
    this.#copies = () => 1;
  }

  /**
   * The registry every copy of core in this process shares: the one
   * `register`, `drivers` and `open` use. A second copy of core seen here is
   * reported once as a process warning (code `EXECENV_CORE_COPIES`).
   *
   * @param copy names this copy of core in that warning. @default the URL of this module
   * @param holder where the registry is kept. @default globalThis
   */
  static shared(copy: string = import.meta.url, holder: object = globalThis): Registry {
    const shared = sharedRegistry(copy, holder);
    const registry = new Registry(undefined, shared.drivers);
    registry.#copies = () => shared.copies.size;
    return registry;
  }

  /** Makes `driver` available under `name`. Throws on an empty, malformed or duplicate name. */
  register(name: string, driver: Driver): void {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('execenv: register: driver name is empty');
    if (!DRIVER_NAME.test(name))
      throw new TypeError(
        `execenv: register: driver name "${name}" must be lower-case letters, digits, ".", "_" or "-"`,
      );
    if (driver === null || typeof driver !== 'object' || typeof driver.open !== 'function')
      throw new TypeError(`execenv: register: driver "${name}" is not a Driver`);
    if (this.#drivers.has(name)) {
      const copies = this.#copies();
      throw new TypeError(
        `execenv: register called twice for driver "${name}"` +
          (copies > 1
            ? ` (${copies} copies of @execenv/core are loaded: is the driver's package installed twice?)`
            : ''),
      );
    }
    this.#drivers.set(name, driver);
  }

  /** Sorted names of the registered drivers. */
  drivers(): string[] {
    return [...this.#drivers.keys()].sort();
  }

  /**
   * Returns the driver registered as `name`, importing `@execenv/<name>` and
   * then `execenv-driver-<name>` (each registers itself on import) when it is
   * not registered yet. Throws UnknownDriverError when neither provides it,
   * saying which packages were tried and whether they imported.
   */
  async driver(name: string): Promise<Driver> {
    const known = this.#drivers.get(name);
    if (known) return known;
    if (typeof name !== 'string' || !DRIVER_NAME.test(name))
      throw new UnknownDriverError(String(name), undefined, unknownDriverDetail(String(name), [], [], this.#copies()));
    let lastError: unknown;
    const tried: string[] = [];
    const imported: string[] = [];
    for (const specifier of driverPackages(name)) {
      tried.push(specifier);
      try {
        await this.#importer(specifier);
      } catch (err) {
        if (!isModuleNotFound(err, specifier)) throw err;
        lastError = err;
        continue;
      }
      imported.push(specifier);
      const loaded = this.#drivers.get(name);
      if (loaded) return loaded;
    }
    throw new UnknownDriverError(name, lastError, unknownDriverDetail(name, tried, imported, this.#copies()));
  }

  /** Opens an environment with the driver named `name`. */
  async open(name: string, spec: EnvSpec, opts?: OpenOptions): Promise<Environment> {
    if (spec === null || typeof spec !== 'object') throw new InvalidSpecError('spec', 'must be an object');
    const driver = await this.driver(name);
    return driver.open(spec, opts);
  }
}

const defaultRegistry = Registry.shared();

/**
 * Makes `driver` available to `open` under `name`, in the registry every
 * copy of `@execenv/core` in this process shares. Throws on an empty or
 * duplicate name.
 *
 * @example
 * ```ts
 * import { register } from '@execenv/core';
 * register('foo', new FooDriver()); // in the driver package's index.ts
 * ```
 */
export function register(name: string, driver: Driver): void {
  defaultRegistry.register(name, driver);
}

/**
 * Sorted names of the registered drivers.
 *
 * @example
 * ```ts
 * import { drivers } from '@execenv/core';
 * import '@execenv/chroot';
 * drivers(); // ['chroot']
 * ```
 */
export function drivers(): string[] {
  return defaultRegistry.drivers();
}

/**
 * Returns the driver named `name`, importing its package when needed.
 *
 * @example
 * ```ts
 * import { getDriver } from '@execenv/core';
 * const availability = await (await getDriver('chroot')).probe();
 * if (!availability.available) console.error(availability.reason);
 * ```
 */
export function getDriver(name: string): Promise<Driver> {
  return defaultRegistry.driver(name);
}

/**
 * Opens a started, ready environment with the driver named `name`. An
 * unregistered name is imported from `@execenv/<name>`, then
 * `execenv-driver-<name>`; failing both, UnknownDriverError.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 *
 * const env = await open('chroot', { image: './bookworm.tar.zst' });
 * try {
 *   const r = await env.exec(['cat', '/etc/debian_version']);
 *   console.log(r.stdout);
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export function open(name: string, spec: EnvSpec, opts?: OpenOptions): Promise<Environment> {
  return defaultRegistry.open(name, spec, opts);
}
