import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CleanupError } from '../errors.js';
import { type Owner, ownerOf } from './owner.js';

/**
 * LeaseResource is one thing an environment created on the host, recorded so
 * that close() or a later gc() can undo it. Core knows `dir`, `mount` and
 * `process`; drivers add kinds of their own.
 *
 * @example
 * ```ts
 * import type { LeaseResource } from '@execenv/core';
 * const path = `/var/lib/foo/${id}`;
 * await mkdir(path, { recursive: true });
 * const dir: LeaseResource = { kind: 'dir', path }; // removed by hostUndo on release
 * await lease.add(dir);
 * await lease.add({ kind: 'foo-container', name: id }); // a kind of the driver's own, undone by its Undo
 * ```
 */
export interface LeaseResource {
  /** `dir` (removed), `mount` (unmounted with everything below), `process` (killed), or a driver's own kind. */
  kind: string;
  /** Host path, for `dir` and `mount`. */
  path?: string;
  /** Process id, for `process`. */
  pid?: number;
  /** Process start time, for `process`: a recycled pid is never killed. */
  startTime?: string;
  /** Fields of drivers' own kinds. */
  [field: string]: unknown;
}

/**
 * LeaseRecord is the file kept under `<stateDir>/leases/<id>.json`.
 *
 * @example
 * ```ts
 * import { defaultStateDir, type LeaseRecord, readLeases } from '@execenv/core';
 * const records: LeaseRecord[] = await readLeases(defaultStateDir(), 'chroot');
 * const nightly = records.filter((r) => r.labels?.job === 'nightly');
 * console.log(nightly.map((r) => `${r.id} since ${r.createdAt} by pid ${r.owner.pid}`).join('\n'));
 * ```
 */
export interface LeaseRecord {
  /** Environment id. */
  id: string;
  /** Driver name. */
  driver: string;
  /** The process that opened the environment. */
  owner: Owner;
  /** ISO time of creation. */
  createdAt: string;
  /** The environment's labels. */
  labels?: Record<string, string>;
  /** What was created, in creation order. */
  resources: LeaseResource[];
}

/**
 * describeResource says in a few words what one lease resource holds on the host: `dir /path`, `process 42`.
 *
 * @example
 * ```ts
 * import { defaultStateDir, describeResource, readLeases } from '@execenv/core';
 * for (const lease of await readLeases(defaultStateDir()))
 *   console.log(lease.id, lease.resources.map(describeResource).join(', ')); // e.g. 'dir /var/lib/...', 'process 42'
 * ```
 */
export function describeResource(r: LeaseResource): string {
  if (r.kind === 'process') return `process ${r.pid}`;
  return r.path === undefined ? r.kind : `${r.kind} ${String(r.path)}`;
}

/**
 * Undoes one resource; must succeed when the resource is already gone.
 *
 * @example
 * ```ts
 * import type { Undo } from '@execenv/core';
 * const undo: Undo = async (r) => {
 *   if (r.kind !== 'foo-container') throw new Error(`no undo for ${r.kind}`);
 *   await runner.run(['foo', 'rm', '--force', String(r.name)], { check: false }); // fine when already gone
 * };
 * ```
 */
export type Undo = (resource: LeaseResource) => Promise<void>;

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A fresh environment id: `execenv-` and 12 random lower-case letters and digits.
 *
 * @example
 * ```ts
 * import { Lease, newEnvironmentId } from '@execenv/core';
 * const id = newEnvironmentId(); // 'execenv-' and 12 random lower-case letters and digits
 * const lease = await Lease.create(stateDir, id, 'foo', spec.labels);
 * ```
 */
export function newEnvironmentId(): string {
  const bytes = randomBytes(12);
  let s = '';
  for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
  return `execenv-${s}`;
}

function leasesDir(stateDir: string): string {
  return join(stateDir, 'leases');
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await rename(tmp, path);
}

/**
 * Lease is the ordered record of what one environment created. Drivers add a
 * resource right after creating it; release() undoes them in reverse order,
 * persisting progress so an interrupted release can be finished by gc().
 *
 * @example
 * ```ts
 * import { defaultStateDir, hostRunner, hostUndo, Lease, newEnvironmentId } from '@execenv/core';
 * const lease = await Lease.create(defaultStateDir(), newEnvironmentId(), 'foo');
 * await mkdir(`/var/lib/foo/${lease.id}`);
 * await lease.add({ kind: 'dir', path: `/var/lib/foo/${lease.id}` }); // right after creating it
 * // in close(), or in gc() after this process died:
 * await lease.release(hostUndo(hostRunner())); // CleanupError lists what could not be undone
 * ```
 */
export class Lease {
  readonly #path: string;
  readonly #record: LeaseRecord;
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string, record: LeaseRecord) {
    this.#path = path;
    this.#record = record;
  }

  /** Creates and persists an empty lease for a new environment owned by this process. */
  static async create(stateDir: string, id: string, driver: string, labels?: Record<string, string>): Promise<Lease> {
    const dir = leasesDir(stateDir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const record: LeaseRecord = {
      id,
      driver,
      owner: await ownerOf(),
      createdAt: new Date().toISOString(),
      ...(labels ? { labels } : {}),
      resources: [],
    };
    const lease = new Lease(join(dir, `${id}.json`), record);
    await lease.#persist();
    return lease;
  }

  /** Wraps an existing record (from readLeases) so it can be released. */
  static from(stateDir: string, record: LeaseRecord): Lease {
    return new Lease(join(leasesDir(stateDir), `${record.id}.json`), structuredClone(record));
  }

  /** The environment id. */
  get id(): string {
    return this.#record.id;
  }

  /** A copy of the resources still held, in creation order. */
  get resources(): LeaseResource[] {
    return structuredClone(this.#record.resources);
  }

  /** Records a resource that was just created. */
  async add(resource: LeaseResource): Promise<void> {
    this.#record.resources.push(resource);
    await this.#persist();
  }

  /**
   * Undoes every resource in reverse order with `undo` and deletes the lease
   * file. It goes on after a failure and throws a CleanupError of all
   * failures at the end; failed resources stay in the lease for gc().
   */
  async release(undo: Undo): Promise<void> {
    const failures: unknown[] = [];
    const left: string[] = [];
    for (const resource of [...this.#record.resources].reverse()) {
      try {
        await undo(resource);
        this.#record.resources.splice(this.#record.resources.lastIndexOf(resource), 1);
      } catch (err) {
        failures.push(err);
        left.push(describeResource(resource));
      }
    }
    if (failures.length > 0) {
      await this.#persist();
      throw new CleanupError(this.id, left, failures, { driver: this.#record.driver });
    }
    await this.#writing;
    await rm(this.#path, { force: true });
  }

  #persist(): Promise<void> {
    const snapshot = JSON.stringify(this.#record, null, 2);
    this.#writing = this.#writing.then(() => writeAtomic(this.#path, snapshot));
    return this.#writing;
  }
}

/**
 * Reads every lease under `stateDir`, optionally only those of one driver. Unreadable files are skipped.
 *
 * @example
 * ```ts
 * import { defaultStateDir, isAlive, readLeases } from '@execenv/core';
 * for (const record of await readLeases(defaultStateDir(), 'chroot'))
 *   console.log(record.id, (await isAlive(record.owner)) ? 'in use' : 'left behind');
 * ```
 */
export async function readLeases(stateDir: string, driver?: string): Promise<LeaseRecord[]> {
  let names: string[];
  try {
    names = await readdir(leasesDir(stateDir));
  } catch {
    return [];
  }
  const records: LeaseRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    try {
      const record = JSON.parse(await readFile(join(leasesDir(stateDir), name), 'utf8')) as LeaseRecord;
      if (!driver || record.driver === driver) records.push(record);
    } catch {
      // a lease being written right now, or garbage: not ours to judge here
    }
  }
  return records;
}
