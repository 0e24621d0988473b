import type { Driver, Environment, OpenOptions } from './contract.js';
import { InvalidSpecError, UnknownDriverError } from './errors.js';
import type { EnvSpec } from './spec.js';

/** Imports a module by specifier; injectable so tests need no real packages. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const DRIVER_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** Package names tried, in order, for a driver that is not registered yet. */
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
 * Registry maps driver names to drivers, like Go's database/sql. Most code
 * uses the process-wide functions `register`, `drivers` and `open`.
 */
export class Registry {
  readonly #drivers = new Map<string, Driver>();
  readonly #importer: ModuleImporter;

  constructor(importer: ModuleImporter = (s) => import(s)) {
    this.#importer = importer;
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
    if (this.#drivers.has(name)) throw new TypeError(`execenv: register called twice for driver "${name}"`);
    this.#drivers.set(name, driver);
  }

  /** Sorted names of the registered drivers. */
  drivers(): string[] {
    return [...this.#drivers.keys()].sort();
  }

  /**
   * Returns the driver registered as `name`, importing `@execenv/<name>` and
   * then `execenv-driver-<name>` (each registers itself on import) when it is
   * not registered yet. Throws UnknownDriverError when neither provides it.
   */
  async driver(name: string): Promise<Driver> {
    const known = this.#drivers.get(name);
    if (known) return known;
    if (typeof name !== 'string' || !DRIVER_NAME.test(name)) throw new UnknownDriverError(String(name));
    let lastError: unknown;
    for (const specifier of driverPackages(name)) {
      try {
        await this.#importer(specifier);
      } catch (err) {
        if (!isModuleNotFound(err, specifier)) throw err;
        lastError = err;
        continue;
      }
      const loaded = this.#drivers.get(name);
      if (loaded) return loaded;
    }
    throw new UnknownDriverError(name, lastError);
  }

  /** Opens an environment with the driver named `name`. */
  async open(name: string, spec: EnvSpec, opts?: OpenOptions): Promise<Environment> {
    if (spec === null || typeof spec !== 'object') throw new InvalidSpecError('spec', 'must be an object');
    const driver = await this.driver(name);
    return driver.open(spec, opts);
  }
}

const defaultRegistry = new Registry();

/** Makes `driver` available to `open` under `name`. Throws on an empty or duplicate name. */
export function register(name: string, driver: Driver): void {
  defaultRegistry.register(name, driver);
}

/** Sorted names of the registered drivers. */
export function drivers(): string[] {
  return defaultRegistry.drivers();
}

/** Returns the driver named `name`, importing its package when needed. */
export function getDriver(name: string): Promise<Driver> {
  return defaultRegistry.driver(name);
}

/**
 * Opens a started, ready environment with the driver named `name`. An
 * unregistered name is imported from `@execenv/<name>`, then
 * `execenv-driver-<name>`; failing both, UnknownDriverError.
 */
export function open(name: string, spec: EnvSpec, opts?: OpenOptions): Promise<Environment> {
  return defaultRegistry.open(name, spec, opts);
}
