/**
 * Stable error codes. Callers match on these (or on the error classes), never
 * on message text.
 *
 * @example
 * ```ts
 * import { type ErrorCode, hasCode } from '@execenv/core';
 * const retryable: ErrorCode[] = ['TRANSPORT', 'TIMEOUT'];
 * function shouldRetry(err: unknown): boolean {
 *   return retryable.some((code) => hasCode(err, code));
 * }
 * ```
 */
export type ErrorCode =
  | 'UNKNOWN_DRIVER'
  | 'DRIVER_UNAVAILABLE'
  | 'INVALID_SPEC'
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_VERIFY_FAILED'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'EXEC_FAILED'
  | 'TRANSPORT'
  | 'UNSUPPORTED'
  | 'UNSAFE_PATH'
  | 'NOT_FOUND'
  | 'CLOSED'
  | 'CLEANUP_FAILED';

/**
 * Context every error may carry: which environment and which operation.
 *
 * @example
 * ```ts
 * import { type ErrorContext, TransportError } from '@execenv/core';
 * // in a driver, where the connection to its daemon broke during an exec:
 * const context: ErrorContext = { envId: this.id, driver: 'foo', op: 'exec', cause: err };
 * throw new TransportError('execenv: the foo daemon closed the connection', context);
 * ```
 */
export interface ErrorContext {
  /** The environment the operation ran against, when there was one. */
  envId?: string;
  /** The driver name. */
  driver?: string;
  /** The operation, e.g. `exec`, `push`, `open`. */
  op?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * ExecenvError is the base of every error the SDK throws on purpose; `code`
 * is stable across releases. `hasCode` matches it also where more than one
 * copy of `@execenv/core` is loaded, which `instanceof` does not.
 *
 * @example
 * ```ts
 * try {
 *   await env.exec(['make'], { check: true, timeout: 60_000 });
 * } catch (err) {
 *   if (err instanceof ExecenvError) console.error(err.code, err.envId, err.op, err.message);
 *   throw err;
 * }
 * ```
 */
export class ExecenvError extends Error {
  /** The stable code of this error. */
  readonly code: ErrorCode;
  /** The environment involved, if any. */
  readonly envId: string | undefined;
  /** The driver involved, if any. */
  readonly driver: string | undefined;
  /** The operation that failed, if known. */
  readonly op: string | undefined;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    this.code = code;
    this.envId = context.envId;
    this.driver = context.driver;
    this.op = context.op;
  }
}

/**
 * UnknownDriverError reports a driver name that is neither registered nor
 * importable. `detail` says what was tried; without it the message names the
 * two packages `open` looks for.
 *
 * @example
 * ```ts
 * import { open, UnknownDriverError } from '@execenv/core';
 * const env = await open(process.env.EXECENV_DRIVER ?? 'chroot', spec).catch((err: unknown) => {
 *   if (err instanceof UnknownDriverError) console.error(`no driver "${err.driverName}" is installed`);
 *   throw err;
 * });
 * ```
 */
export class UnknownDriverError extends ExecenvError {
  /** The name that was asked for. */
  readonly driverName: string;
  constructor(name: string, cause?: unknown, detail?: string) {
    super(
      'UNKNOWN_DRIVER',
      `execenv: unknown driver "${name}" (forgotten import or install?): ` +
        (detail ?? `install and import the package that registers it (@execenv/${name} or execenv-driver-${name})`),
      { cause },
    );
    this.driverName = name;
  }
}

/**
 * DriverUnavailableError says a backend binary or daemon is missing and how to install it.
 *
 * @example
 * ```ts
 * import { DriverUnavailableError, open } from '@execenv/core';
 * const env = await open('podman', spec).catch((err: unknown) => {
 *   if (!(err instanceof DriverUnavailableError)) throw err;
 *   console.error(err.message); // what is missing and how to install it
 *   return open('chroot', spec);
 * });
 * ```
 */
export class DriverUnavailableError extends ExecenvError {
  constructor(driver: string, reason: string, context: ErrorContext = {}) {
    super('DRIVER_UNAVAILABLE', `execenv: driver "${driver}" is unavailable: ${reason}`, {
      ...context,
      driver,
    });
  }
}

/**
 * InvalidSpecError names the field of an EnvSpec (or option) that is wrong.
 *
 * @example
 * ```ts
 * import { InvalidSpecError } from '@execenv/core';
 * try {
 *   await env.exec(['make'], { env: { 'MAKE-FLAGS': '-j4' } });
 * } catch (err) {
 *   if (!(err instanceof InvalidSpecError)) throw err;
 *   console.error(err.field); // 'env.MAKE-FLAGS': not a valid variable name
 * }
 * ```
 */
export class InvalidSpecError extends ExecenvError {
  /** Dotted path of the bad field, e.g. `resources.memory`. */
  readonly field: string;
  constructor(field: string, problem: string, context: ErrorContext = {}) {
    super('INVALID_SPEC', `execenv: invalid ${field}: ${problem}`, context);
    this.field = field;
  }
}

/**
 * ImageNotFoundError says an image reference resolved to nothing.
 *
 * @example
 * ```ts
 * import { ImageNotFoundError, open } from '@execenv/core';
 * const env = await open('lxd', { image: 'lxd:build-env' }).catch((err: unknown) => {
 *   if (!(err instanceof ImageNotFoundError)) throw err;
 *   console.error(`${err.reference} is gone; starting from the base image`);
 *   return open('lxd', { image: './bookworm.tar.zst' });
 * });
 * ```
 */
export class ImageNotFoundError extends ExecenvError {
  /** The reference that could not be found. */
  readonly reference: string;
  constructor(reference: string, detail: string, context: ErrorContext = {}) {
    super('IMAGE_NOT_FOUND', `execenv: image "${reference}" not found: ${detail}`, context);
    this.reference = reference;
  }
}

/**
 * ImageVerifyFailedError says an image failed its checksum or signature check.
 *
 * @example
 * ```ts
 * import { ImageVerifyFailedError, open } from '@execenv/core';
 * const env = await open('chroot', { image: 'index:debian/bookworm/amd64' }).catch((err: unknown) => {
 *   if (err instanceof ImageVerifyFailedError) console.error('the image failed its checksum or signature check');
 *   throw err;
 * });
 * ```
 */
export class ImageVerifyFailedError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('IMAGE_VERIFY_FAILED', message, context);
  }
}

/**
 * TimeoutError says an operation ran past its timeout and was stopped.
 *
 * @example
 * ```ts
 * import { TimeoutError } from '@execenv/core';
 * try {
 *   await env.exec(['make', 'check'], { timeout: 600_000, check: true });
 * } catch (err) {
 *   if (err instanceof TimeoutError) console.error(`${err.op} hung: ${err.message}`);
 *   throw err;
 * }
 * ```
 */
export class TimeoutError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('TIMEOUT', message, context);
  }
}

/**
 * AbortedError says an operation was cancelled through its AbortSignal.
 *
 * @example
 * ```ts
 * import { AbortedError } from '@execenv/core';
 * const stop = new AbortController();
 * process.once('SIGUSR1', () => stop.abort());
 * try {
 *   await env.exec(['make', 'check'], { signal: stop.signal });
 * } catch (err) {
 *   if (!(err instanceof AbortedError)) throw err; // the command's whole tree was killed
 * }
 * ```
 */
export class AbortedError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('ABORTED', message, context);
  }
}

/**
 * TransportError says the connection to the backend (agent, daemon, helper) failed.
 *
 * @example
 * ```ts
 * import { TransportError } from '@execenv/core';
 * try {
 *   await env.exec(['true']);
 * } catch (err) {
 *   if (err instanceof TransportError) console.error(`lost the ${err.driver} backend: ${err.message}`);
 *   throw err;
 * }
 * ```
 */
export class TransportError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('TRANSPORT', message, context);
  }
}

/**
 * UnsupportedError says the driver lacks a capability that was asked for.
 *
 * @example
 * ```ts
 * import { revert, UnsupportedError } from '@execenv/core';
 * try {
 *   await revert(env);
 * } catch (err) {
 *   if (!(err instanceof UnsupportedError)) throw err;
 *   console.warn(`the ${err.driver} driver has no ${err.capability}`);
 * }
 * ```
 */
export class UnsupportedError extends ExecenvError {
  /** The capability that is missing. */
  readonly capability: string;
  constructor(driver: string, capability: string, context: ErrorContext = {}) {
    super('UNSUPPORTED', `execenv: ${capability} is not supported by the "${driver}" driver`, { ...context, driver });
    this.capability = capability;
  }
}

/**
 * UnsafePathError refuses a path or archive entry that would leave its root.
 *
 * @example
 * ```ts
 * import { createReadStream } from 'node:fs';
 * import { UnsafePathError } from '@execenv/core';
 * try {
 *   await env.pushArchive(createReadStream('./upload.tar'), '/srv/upload');
 * } catch (err) {
 *   if (err instanceof UnsafePathError) console.error(`refused ${err.path}: ${err.message}`);
 *   throw err;
 * }
 * ```
 */
export class UnsafePathError extends ExecenvError {
  /** The offending path or archive entry name. */
  readonly path: string;
  constructor(path: string, reason: string, context: ErrorContext = {}) {
    super('UNSAFE_PATH', `execenv: refusing unsafe path "${path}": ${reason}`, context);
    this.path = path;
  }
}

/**
 * NotFoundError says a path inside an environment does not exist.
 *
 * @example
 * ```ts
 * import { NotFoundError } from '@execenv/core';
 * try {
 *   await env.pull('/build/report.xml', './report.xml');
 * } catch (err) {
 *   if (!(err instanceof NotFoundError)) throw err;
 *   console.warn(`no ${err.path}: the tests did not get that far`);
 * }
 * ```
 */
export class NotFoundError extends ExecenvError {
  /** The missing path. */
  readonly path: string;
  constructor(path: string, context: ErrorContext = {}) {
    const where = context.envId ? ` in ${context.envId}` : '';
    super('NOT_FOUND', `execenv: ${context.op ?? 'access'}: no such file or directory "${path}"${where}`, context);
    this.path = path;
  }
}

/**
 * ClosedError says an operation was attempted on an environment after close().
 *
 * @example
 * ```ts
 * import { ClosedError } from '@execenv/core';
 * await env.close();
 * await env.exec(['true']).catch((err: unknown) => {
 *   console.log(err instanceof ClosedError); // true: only close() still works after close
 * });
 * ```
 */
export class ClosedError extends ExecenvError {
  constructor(envId: string, op: string) {
    super('CLOSED', `execenv: ${op}: environment ${envId} is closed`, { envId, op });
  }
}

/**
 * CleanupError says closing an environment (or collecting a dead one) left
 * resources behind; they stay recorded in the environment's lease, so gc()
 * removes them once this process has exited.
 *
 * @example
 * ```ts
 * import { CleanupError } from '@execenv/core';
 * try {
 *   await env.close();
 * } catch (err) {
 *   if (!(err instanceof CleanupError)) throw err;
 *   console.error(`left on the host: ${err.left.join(', ')}; gc() removes it once this process has exited`);
 * }
 * ```
 */
export class CleanupError extends ExecenvError {
  /** What is left, one line per resource (`mount /path`, `dir /path`, `process 42`). */
  readonly left: readonly string[];
  /** Why each could not be removed, in the order tried. */
  readonly errors: readonly unknown[];
  constructor(envId: string, left: readonly string[], errors: readonly unknown[], context: ErrorContext = {}) {
    const reasons = errors.map((e) => (e as Error)?.message ?? String(e));
    super(
      'CLEANUP_FAILED',
      `execenv: could not remove everything ${envId} created; left: ${left.join(', ')} (${reasons.join('; ')}); gc() removes it once this process has exited`,
      { op: 'close', ...context, envId, cause: errors[0] },
    );
    this.left = left;
    this.errors = errors;
  }
}

/**
 * Fills the envId, driver and op an ExecenvError lacks from `context`; any other value is returned as it is.
 *
 * @example
 * ```ts
 * import { withContext } from '@execenv/core';
 * try {
 *   await this.box.copyIn(src, dest); // your backend, whose helpers throw ExecenvErrors without context
 * } catch (err) {
 *   throw withContext(err, { envId: this.id, driver: 'foo', op: 'push' });
 * }
 * ```
 */
export function withContext(err: unknown, context: ErrorContext | undefined): unknown {
  if (!(err instanceof ExecenvError) || !context) return err;
  Object.assign(err, {
    envId: err.envId ?? context.envId,
    driver: err.driver ?? context.driver,
    op: err.op ?? context.op,
  });
  return err;
}

/**
 * Returns true when `err` is an ExecenvError with the given code, also one
 * thrown by another copy of `@execenv/core` loaded in the same process.
 *
 * @example
 * ```ts
 * try {
 *   await env.pull('/build/out', './out');
 * } catch (err) {
 *   if (!hasCode(err, 'NOT_FOUND')) throw err;
 *   console.error('the build wrote nothing');
 * }
 * ```
 */
export function hasCode(err: unknown, code: ErrorCode): err is ExecenvError {
  if (err instanceof ExecenvError) return err.code === code;
  // An ExecenvError of another copy of @execenv/core: the same shape, another class.
  return err instanceof Error && (err as { code?: unknown }).code === code && 'envId' in err && 'op' in err;
}
