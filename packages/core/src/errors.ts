/**
 * Stable error codes. Callers match on these (or on the error classes), never
 * on message text.
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

/** Context every error may carry: which environment and which operation. */
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

/** DriverUnavailableError says a backend binary or daemon is missing and how to install it. */
export class DriverUnavailableError extends ExecenvError {
  constructor(driver: string, reason: string, context: ErrorContext = {}) {
    super('DRIVER_UNAVAILABLE', `execenv: driver "${driver}" is unavailable: ${reason}`, {
      ...context,
      driver,
    });
  }
}

/** InvalidSpecError names the field of an EnvSpec (or option) that is wrong. */
export class InvalidSpecError extends ExecenvError {
  /** Dotted path of the bad field, e.g. `resources.memory`. */
  readonly field: string;
  constructor(field: string, problem: string, context: ErrorContext = {}) {
    super('INVALID_SPEC', `execenv: invalid ${field}: ${problem}`, context);
    this.field = field;
  }
}

/** ImageNotFoundError says an image reference resolved to nothing. */
export class ImageNotFoundError extends ExecenvError {
  /** The reference that could not be found. */
  readonly reference: string;
  constructor(reference: string, detail: string, context: ErrorContext = {}) {
    super('IMAGE_NOT_FOUND', `execenv: image "${reference}" not found: ${detail}`, context);
    this.reference = reference;
  }
}

/** ImageVerifyFailedError says an image failed its checksum or signature check. */
export class ImageVerifyFailedError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('IMAGE_VERIFY_FAILED', message, context);
  }
}

/** TimeoutError says an operation ran past its timeout and was stopped. */
export class TimeoutError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('TIMEOUT', message, context);
  }
}

/** AbortedError says an operation was cancelled through its AbortSignal. */
export class AbortedError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('ABORTED', message, context);
  }
}

/** TransportError says the connection to the backend (agent, daemon, helper) failed. */
export class TransportError extends ExecenvError {
  constructor(message: string, context: ErrorContext = {}) {
    super('TRANSPORT', message, context);
  }
}

/** UnsupportedError says the driver lacks a capability that was asked for. */
export class UnsupportedError extends ExecenvError {
  /** The capability that is missing. */
  readonly capability: string;
  constructor(driver: string, capability: string, context: ErrorContext = {}) {
    super('UNSUPPORTED', `execenv: ${capability} is not supported by the "${driver}" driver`, { ...context, driver });
    this.capability = capability;
  }
}

/** UnsafePathError refuses a path or archive entry that would leave its root. */
export class UnsafePathError extends ExecenvError {
  /** The offending path or archive entry name. */
  readonly path: string;
  constructor(path: string, reason: string, context: ErrorContext = {}) {
    super('UNSAFE_PATH', `execenv: refusing unsafe path "${path}": ${reason}`, context);
    this.path = path;
  }
}

/** NotFoundError says a path inside an environment does not exist. */
export class NotFoundError extends ExecenvError {
  /** The missing path. */
  readonly path: string;
  constructor(path: string, context: ErrorContext = {}) {
    const where = context.envId ? ` in ${context.envId}` : '';
    super('NOT_FOUND', `execenv: ${context.op ?? 'access'}: no such file or directory "${path}"${where}`, context);
    this.path = path;
  }
}

/** ClosedError says an operation was attempted on an environment after close(). */
export class ClosedError extends ExecenvError {
  constructor(envId: string, op: string) {
    super('CLOSED', `execenv: ${op}: environment ${envId} is closed`, { envId, op });
  }
}

/**
 * CleanupError says closing an environment (or collecting a dead one) left
 * resources behind; they stay recorded in the environment's lease, so gc()
 * removes them once this process has exited.
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

/** Fills the envId, driver and op an ExecenvError lacks from `context`; any other value is returned as it is. */
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
