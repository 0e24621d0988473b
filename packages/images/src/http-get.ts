import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type ExecenvEvent, ImageNotFoundError } from '@execenv/core';
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  PERMANENT_STATUSES,
  type RetryPolicy,
  TransientFetchError,
  withRetries,
} from './retry.js';

/** Most redirects followed. */
const MAX_REDIRECTS = 5;

/** How get() sends a request. */
export interface GetOptions {
  signal?: AbortSignal;
  method?: 'GET' | 'HEAD';
  /**
   * Milliseconds to wait for the connection, the answer, and then each
   * chunk of the body; past it the request and its response are destroyed
   * with an error saying so. @default DEFAULT_REQUEST_TIMEOUT_MS
   */
  timeoutMs?: number;
}

/**
 * Sends a GET (or HEAD) for `url` with node's own HTTP client (its streams
 * are far cheaper than fetch's web streams for large bodies), following
 * redirects. Resolves with the final response, whatever its status; rejects
 * on network errors and when the server goes quiet for `timeoutMs` before
 * answering; a body that stalls as long errors its stream.
 */
export function get(url: string, opts: GetOptions = {}, redirects = 0): Promise<IncomingMessage> {
  const { signal, method = 'GET', timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS } = opts;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    let response: IncomingMessage | undefined;
    // `timeout` arms the socket's idle timer before it connects: it covers the connect, the wait
    // for the headers and every pause in the body.
    const req = request(url, { method, signal, timeout: timeoutMs }, (res) => {
      const location = res.headers.location;
      if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new Error(`${url}: more than ${MAX_REDIRECTS} redirects`));
        return resolve(get(new URL(location, url).href, opts, redirects + 1));
      }
      response = res;
      resolve(res);
    });
    req.on('timeout', () => {
      const err = new Error(`no data from the server for ${timeoutMs} ms`);
      if (response) response.destroy(err);
      req.destroy(err);
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

async function sendOnce(url: string, method: 'GET' | 'HEAD', opts: DocumentFetchOptions): Promise<IncomingMessage> {
  try {
    return await get(url, { method, signal: opts.signal, timeoutMs: opts.timeoutMs });
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new TransientFetchError(`${url}: ${(err as Error).message}`, { cause: err });
  }
}

async function fetchOnce(url: string, opts: DocumentFetchOptions): Promise<string | undefined> {
  const res = await sendOnce(url, 'GET', opts);
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
  return withRetries(`fetching ${url}`, 'resolve', () => fetchOnce(url, opts), opts);
}

/** Whether the server has `url` (a HEAD answered 2xx), with the same retries as getDocument. */
export function exists(url: string, opts: DocumentFetchOptions = {}): Promise<boolean> {
  return withRetries(
    `checking ${url}`,
    'resolve',
    async () => {
      const res = await sendOnce(url, 'HEAD', opts);
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) return true;
      if (PERMANENT_STATUSES.has(status)) return false;
      throw new TransientFetchError(`${url}: ${statusText(res)}`);
    },
    opts,
  );
}
