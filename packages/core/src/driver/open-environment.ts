import type { Environment, EnvironmentInfo, GcReport, OpenOptions } from '../contract.js';
import { AbortedError } from '../errors.js';
import { emit } from '../events.js';
import { collectDeadLeases } from '../lifecycle/gc.js';
import { describeResource, Lease, newEnvironmentId, readLeases, type Undo } from '../lifecycle/lease.js';
import { isAlive } from '../lifecycle/owner.js';
import { defaultStateDir } from '../lifecycle/state-dir.js';
import { type EnvSpec, validateSpec } from '../spec.js';

/**
 * What a driver's `create` gets from openWithLease.
 *
 * @example
 * ```ts
 * import type { Undo } from '@execenv/core';
 * import type { OpenContext } from '@execenv/core/driver';
 * async function startFoo(ctx: OpenContext, undo: Undo): Promise<FooEnvironment> {
 *   const dir = join(ctx.stateDir, 'envs', ctx.id);
 *   await ctx.lease.add({ kind: 'dir', path: dir }); // recorded before it exists: gc removes it either way
 *   await mkdir(dir);
 *   ctx.throwIfAborted(); // between slow steps
 *   return startAgentIn(dir, ctx.spec, () => ctx.lease.release(undo));
 * }
 * ```
 */
export interface OpenContext<S extends EnvSpec<unknown> = EnvSpec> {
  /** The new environment's id. */
  id: string;
  /** The lease to record every host resource in, right after creating it. */
  lease: Lease;
  /** The validated, frozen spec. */
  spec: Readonly<S>;
  /** The state directory the lease lives in. */
  stateDir: string;
  /** The open's options (onEvent, signal, closeOnSignal). */
  opts: OpenOptions;
  /** Throws AbortedError (op `open`) when the open's signal has fired; call it between slow steps. */
  throwIfAborted(): void;
}

/**
 * What openWithLease needs from a driver.
 *
 * @example
 * ```ts
 * import type { EnvSpec } from '@execenv/core';
 * import { openWithLease, type OpenWithLeaseOptions } from '@execenv/core/driver';
 * const options: OpenWithLeaseOptions<EnvSpec, FooEnvironment> = {
 *   driver: 'foo', spec, opts, undo,
 *   stateDir: '/var/lib/foo/execenv', // else opts.stateDir, else defaultStateDir()
 *   create: (ctx) => startFoo(ctx, undo), // resolves to the started, ready environment
 * };
 * const env = await openWithLease(options);
 * ```
 */
export interface OpenWithLeaseOptions<S extends EnvSpec<unknown>, E extends Environment> {
  /** The driver name, for errors, events and the lease. */
  driver: string;
  /** The spec as the caller gave it; validated here. */
  spec: S;
  /** The caller's open options. */
  opts?: OpenOptions;
  /** Where leases live. @default opts.stateDir, else defaultStateDir() */
  stateDir?: string;
  /** Undoes one resource of the lease on rollback. */
  undo: Undo;
  /**
   * Creates, starts and readies the environment, recording what it creates
   * in `ctx.lease`. The environment's close must release the lease.
   */
  create: (ctx: OpenContext<S>) => Promise<E>;
}

/**
 * openWithLease is the open every lease-based driver shares: it validates the
 * spec, checks the abort signal before and after, makes the id and the lease,
 * emits `create` and `ready`, and calls `create`. When `create` fails, or the
 * signal fires while it runs, everything the lease holds is undone before the
 * promise rejects; an abort rejects with AbortedError whose op is `open`.
 * A failure of that rollback never replaces the error: it is listed in the
 * error's `suppressed` array (and reported as a `warning` event), and what
 * could not be undone stays in the lease for gc().
 *
 * @example
 * ```ts
 * import { type EnvSpec, hostRunner, hostUndo, type OpenOptions } from '@execenv/core';
 * import { openWithLease } from '@execenv/core/driver';
 * async open(spec: EnvSpec, opts: OpenOptions = {}): Promise<FooEnvironment> {
 *   const undo = hostUndo(hostRunner());
 *   // When `create` throws or opts.signal fires, what the lease holds is undone before open rejects.
 *   return openWithLease({ driver: 'foo', spec, opts, undo, create: (ctx) => startFoo(ctx, undo) });
 * }
 * ```
 */
export async function openWithLease<S extends EnvSpec<unknown>, E extends Environment>(
  options: OpenWithLeaseOptions<S, E>,
): Promise<E> {
  const { driver, undo, create } = options;
  const opts = options.opts ?? {};
  const checked = validateSpec(options.spec, driver);
  const aborted = (cause?: unknown) =>
    new AbortedError(`execenv: opening a ${driver} environment was aborted`, {
      driver,
      op: 'open',
      cause: cause ?? opts.signal?.reason,
    });
  const throwIfAborted = () => {
    if (opts.signal?.aborted) throw aborted();
  };
  throwIfAborted();
  const started = performance.now();
  const stateDir = options.stateDir ?? opts.stateDir ?? defaultStateDir();
  const id = newEnvironmentId();
  const lease = await Lease.create(stateDir, id, driver, checked.labels);
  emit(opts.onEvent, { type: 'create', envId: id, driver });
  let env: E | undefined;
  try {
    env = await create({ id, lease, spec: checked, stateDir, opts, throwIfAborted });
    throwIfAborted();
  } catch (err) {
    const error = opts.signal?.aborted && !isOpenAbort(err) ? aborted(err) : err;
    const problems: unknown[] = [];
    if (env) await env.close().catch((e: unknown) => problems.push(e));
    await lease.release(undo).catch((e: unknown) => problems.push(e));
    for (const p of problems)
      emit(opts.onEvent, {
        type: 'warning',
        envId: id,
        message: `execenv: could not undo everything ${id} created: ${(p as Error)?.message ?? String(p)}`,
      });
    throw withSuppressed(error, problems);
  }
  emit(opts.onEvent, { type: 'ready', envId: id, driver, durationMs: Math.round(performance.now() - started) });
  return env;
}

function isOpenAbort(err: unknown): boolean {
  return err instanceof AbortedError && err.op === 'open';
}

/** Lists rollback failures on the error in `suppressed`, so they are never lost. */
function withSuppressed(err: unknown, problems: unknown[]): unknown {
  if (problems.length === 0) return err;
  const error = err instanceof Error ? err : new Error(String(err), { cause: err });
  const previous = (error as { suppressed?: unknown[] }).suppressed ?? [];
  Object.assign(error, { suppressed: [...previous, ...problems] });
  return error;
}

/**
 * leaseList lists the environments of `driver` whose leases are under `stateDir`, live owners or dead.
 *
 * @example
 * ```ts
 * import { defaultStateDir } from '@execenv/core';
 * import { leaseList } from '@execenv/core/driver';
 * // FooDriver.list(): what `execenv ps` and the conformance leak checks see.
 * list(opts: { stateDir?: string } = {}) {
 *   return leaseList(opts.stateDir ?? defaultStateDir(), 'foo');
 * }
 * ```
 */
export async function leaseList(stateDir: string, driver: string): Promise<EnvironmentInfo[]> {
  const records = await readLeases(stateDir, driver);
  return Promise.all(
    records.map(async (r) => ({
      id: r.id,
      driver: r.driver,
      ownerAlive: await isAlive(r.owner),
      resources: r.resources.map(describeResource),
    })),
  );
}

/**
 * leaseGc undoes, with `undo`, what environments of `driver` with dead owners left behind.
 *
 * @example
 * ```ts
 * import { defaultStateDir, hostRunner, hostUndo } from '@execenv/core';
 * import { leaseGc } from '@execenv/core/driver';
 * // FooDriver.gc(): leases of live owners are left alone.
 * gc(opts: { stateDir?: string } = {}) {
 *   return leaseGc(opts.stateDir ?? defaultStateDir(), 'foo', hostUndo(hostRunner()));
 * }
 * ```
 */
export function leaseGc(stateDir: string, driver: string, undo: Undo): Promise<GcReport> {
  return collectDeadLeases(stateDir, driver, undo);
}
