import type { IncomingMessage } from 'node:http';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';

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
