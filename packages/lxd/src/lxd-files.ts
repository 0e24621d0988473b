import type { Readable } from 'node:stream';
import { LxdApiError, type LxdClient } from './lxd-client.js';

/** Owner and mode of a file written through the files API. */
export interface LxdWriteOptions {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * LxdFiles writes files of one instance through the daemon's files API,
 * which resolves every path inside the instance, so a symlink there never
 * leads outside it. Everything else about files goes through the execenv
 * agent inside the instance.
 */
export class LxdFiles {
  readonly #client: LxdClient;
  readonly #path: string;

  constructor(client: LxdClient, instance: string) {
    this.#client = client;
    this.#path = `/1.0/instances/${encodeURIComponent(instance)}/files`;
  }

  /** Writes a regular file (replacing one that exists) with owner and permission bits. */
  async write(path: string, content: Readable | Buffer, opts: LxdWriteOptions): Promise<void> {
    const res = await this.#client.raw({
      method: 'POST',
      path: this.#path,
      query: { path },
      headers: {
        'X-LXD-uid': String(opts.uid),
        'X-LXD-gid': String(opts.gid),
        'X-LXD-mode': `0${(opts.mode & 0o7777).toString(8)}`,
        'X-LXD-type': 'file',
        'X-LXD-write': 'overwrite',
      },
      body: content,
    });
    if (res.status >= 400) throw apiError(res.status, res.body, 'POST', path);
  }
}

function apiError(status: number, body: Buffer, method: string, path: string): LxdApiError {
  let message = body.toString('utf8');
  try {
    message = (JSON.parse(message) as { error?: string }).error ?? message;
  } catch {
    // not JSON: keep the text
  }
  return new LxdApiError(status, message.slice(0, 300), method, path);
}
