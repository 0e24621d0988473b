import type { IncomingMessage } from 'node:http';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { TransportError } from '@execenv/core';

/** Most redirects followed. */
const MAX_REDIRECTS = 5;

/**
 * GETs `url` with node's own HTTP client (its streams are far cheaper than
 * fetch's web streams for large bodies), following redirects. Resolves with
 * the final response, whatever its status; rejects on network errors.
 */
export function get(url: string, signal?: AbortSignal, redirects = 0): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? httpsGet : httpGet;
    const req = client(url, { signal }, (res) => {
      const location = res.headers.location;
      if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new Error(`${url}: more than ${MAX_REDIRECTS} redirects`));
        return resolve(get(new URL(location, url).href, signal, redirects + 1));
      }
      resolve(res);
    });
    req.on('error', reject);
  });
}

/**
 * Fetches a small text document (an index, a signature): undefined when the
 * server says 404, TransportError naming the URL on network errors and other
 * failures.
 */
export async function getDocument(url: string, signal?: AbortSignal): Promise<string | undefined> {
  let res: IncomingMessage;
  try {
    res = await get(url, signal);
  } catch (err) {
    throw new TransportError(`execenv: cannot reach ${url}: ${(err as Error).message}`, { op: 'resolve', cause: err });
  }
  const status = res.statusCode ?? 0;
  if (status === 404) {
    res.resume();
    return undefined;
  }
  if (status < 200 || status >= 300) {
    res.resume();
    throw new TransportError(`execenv: ${url}: the server answered ${status} ${res.statusMessage ?? ''}`.trim(), {
      op: 'resolve',
    });
  }
  res.setEncoding('utf8');
  let text = '';
  for await (const chunk of res) text += chunk;
  return text;
}
