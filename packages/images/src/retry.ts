import { type ExecenvEvent, emit, TransportError } from '@execenv/core';

/**
 * How often and how patiently a fetch is tried again after a transient failure.
 *
 * @example
 * ```ts
 * import { download, ImageCache, type RetryPolicy } from '@execenv/images';
 * const patient: RetryPolicy = { attempts: 8, backoffMs: 1000 }; // waits 1 s, 2 s, 4 s, ... between attempts
 * const entry = await download('https://example.org/rootfs.tar.xz', { ...patient, cache: new ImageCache() });
 * ```
 */
export interface RetryPolicy {
  /** Attempts for transient failures (network errors, 5xx, 429, truncation). @default 4 */
  attempts?: number;
  /** First delay between attempts, doubled each time. @default 250 ms */
  backoffMs?: number;
  /**
   * Milliseconds one attempt may wait for the connection, for the answer,
   * or for the next bytes of a body; past it the attempt fails as a
   * transient error (retried, then TransportError); 0 waits for ever.
   * @default DEFAULT_REQUEST_TIMEOUT_MS (30 s)
   */
  timeoutMs?: number;
}

/**
 * How long a request waits for the connection, the answer or the next bytes of a body: 30 seconds.
 *
 * @example
 * ```ts
 * import { DEFAULT_REQUEST_TIMEOUT_MS, download, ImageCache } from '@execenv/images';
 * // A slow mirror: wait twice as long for each chunk before trying again.
 * await download('https://example.org/rootfs.tar.xz', {
 *   cache: new ImageCache(),
 *   timeoutMs: 2 * DEFAULT_REQUEST_TIMEOUT_MS,
 * });
 * ```
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** A failure worth another attempt: a network error, a 5xx or 429 answer, a body cut short. */
export class TransientFetchError extends Error {}

/** Statuses that say the thing is not there (or not for us): never retried. */
export const PERMANENT_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404, 410]);

/**
 * Runs `fn` until it succeeds, retrying TransientFetchError with exponential
 * backoff and a `warning` event per retry; any other error leaves at once.
 * When every attempt failed, throws TransportError naming `what`.
 */
export async function withRetries<T>(
  what: string,
  op: string,
  fn: () => Promise<T>,
  opts: RetryPolicy & { onEvent?: (e: ExecenvEvent) => void; signal?: AbortSignal } = {},
): Promise<T> {
  const attempts = opts.attempts ?? 4;
  let delay = opts.backoffMs ?? 250;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof TransientFetchError) || opts.signal?.aborted) throw err;
      if (i >= attempts)
        throw new TransportError(`execenv: ${what} failed ${attempts} times: ${err.message}`, { op, cause: err });
      emit(opts.onEvent, { type: 'warning', message: `${err.message}; retrying in ${delay} ms` });
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
}
