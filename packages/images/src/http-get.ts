import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type ExecenvEvent, ImageNotFoundError } from '@execenv/core';
import { PERMANENT_STATUSES, type RetryPolicy, TransientFetchError, withRetries } from './retry.js';

/** Most redirects followed. */
const MAX_REDIRECTS = 5;

/**
 * Sends a GET (or HEAD) for `url` with node's own HTTP client (its streams
 * are far cheaper than fetch's web streams for large bodies), following
 * redirects. Resolves with the final response, whatever its status; rejects
 * on network errors.
 */
export function get(url: string, signal?: AbortSignal, method: 'GET' | 'HEAD' = 'GET', redirects = 0) {
  return new Promise<IncomingMessage>((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { method, signal }, (res) => {
      const location = res.headers.location;
      if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new Error(`${url}: more than ${MAX_REDIRECTS} redirects`));
        return resolve(get(new URL(location, url).href, signal, method, redirects + 1));
      }
      resolve(res);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Options of getDocument and exists. */
export interface DocumentFetchOptions extends RetryPolicy {
  signal?: AbortSignal;
  /** Receives a `warning` per retry. */
  onEvent?: (e: ExecenvEvent) => void;
}

const statusText = (res: IncomingMessage) => `the server answered ${res.statusCode} ${res.statusMessage ?? ''}`.trim();

async function sendOnce(url: string, method: 'GET' | 'HEAD', signal?: AbortSignal): Promise<IncomingMessage> {
  try {
    return await get(url, signal, method);
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new TransientFetchError(`${url}: ${(err as Error).message}`, { cause: err });
  }
}

async function fetchOnce(url: string, signal?: AbortSignal): Promise<string | undefined> {
  const res = await sendOnce(url, 'GET', signal);
  const status = res.statusCode ?? 0;
  if (PERMANENT_STATUSES.has(status)) {
    res.resume();
    if (status === 404 || status === 410) return undefined;
    throw new ImageNotFoundError(url, statusText(res), { op: 'resolve' });
  }
  if (status < 200 || status >= 300) {
    res.resume();
    throw new TransientFetchError(`${url}: ${statusText(res)}`);
  }
  const total = Number(res.headers['content-length']) || undefined;
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch (err) {
    throw new TransientFetchError(`${url}: ${(err as Error).message}`, { cause: err });
  }
  const body = Buffer.concat(chunks);
  if (total !== undefined && body.length !== total)
    throw new TransientFetchError(`${url}: truncated at ${body.length} of ${total} bytes`);
  return body.toString('utf8');
}

/**
 * Fetches a small text document (an index, a signature), with the retry and
 * backoff policy of downloads: undefined when the server says 404 or 410,
 * ImageNotFoundError naming the URL on 400, 401 and 403, TransportError
 * naming it once network errors, 5xx, 429 or truncated bodies used up every
 * attempt.
 */
export function getDocument(url: string, opts: DocumentFetchOptions = {}): Promise<string | undefined> {
  return withRetries(`fetching ${url}`, 'resolve', () => fetchOnce(url, opts.signal), opts);
}

/** Whether the server has `url` (a HEAD answered 2xx), with the same retries as getDocument. */
export function exists(url: string, opts: DocumentFetchOptions = {}): Promise<boolean> {
  return withRetries(
    `checking ${url}`,
    'resolve',
    async () => {
      const res = await sendOnce(url, 'HEAD', opts.signal);
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) return true;
      if (PERMANENT_STATUSES.has(status)) return false;
      throw new TransientFetchError(`${url}: ${statusText(res)}`);
    },
    opts,
  );
}
