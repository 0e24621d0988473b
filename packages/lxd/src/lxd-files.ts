import type { IncomingMessage } from 'node:http';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { LxdApiError, type LxdClient } from './lxd-client.js';

/** A path inside an instance as the files API describes it. */
export interface LxdFileInfo {
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time (LXD reports whole seconds). */
  mtime: Date;
}

/** Owner and mode of a file written through the files API. */
export interface LxdWriteOptions {
  uid: number;
  gid: number;
  mode: number;
}

/** Most symlinks followed while resolving one path, as the kernel allows. */
const MAX_HOPS = 40;

/**
 * LxdFiles is the files API of one instance. The daemon resolves every path
 * inside the instance, so a symlink there never leads outside it; a final
 * symlink is described as a link (never followed) unless a method says so.
 */
export class LxdFiles {
  readonly #client: LxdClient;
  readonly #path: string;

  constructor(client: LxdClient, instance: string) {
    this.#client = client;
    this.#path = `/1.0/instances/${encodeURIComponent(instance)}/files`;
  }

  #req(method: string, path: string, extra: { headers?: Record<string, string>; body?: unknown } = {}) {
    return { method, path: this.#path, query: { path }, ...extra };
  }

  /** Describes `path` without following a final symlink; null when it does not exist. */
  async info(path: string): Promise<LxdFileInfo | null> {
    const res = await this.#client.raw(this.#req('HEAD', path));
    if (res.status === 404) return null;
    if (res.status >= 400) throw new LxdApiError(res.status, 'HEAD failed', 'HEAD', `${this.#path}?path=${path}`);
    return infoOf(res.headers);
  }

  /** The size of a regular file, asked for with a one-byte range. */
  async size(path: string): Promise<number> {
    const res = await this.#client.stream({ ...this.#req('GET', path), headers: { Range: 'bytes=0-0' } });
    res.resume();
    const range = String(res.headers['content-range'] ?? '');
    const total = /\/(\d+)$/.exec(range);
    if (total) return Number(total[1]);
    if (res.statusCode === 200) return Number(res.headers['content-length'] ?? 0);
    throw new LxdApiError(res.statusCode ?? 0, `no size for ${path}`, 'GET', this.#path);
  }

  /** The target of a symlink. */
  async readLink(path: string): Promise<string> {
    const res = await this.#client.raw(this.#req('GET', path));
    if (res.status >= 400) throw apiError(res.status, res.body, 'GET', path);
    return res.body.toString('utf8');
  }

  /** Names in a directory, sorted; rejects with a 404 LxdApiError when missing, NotADirectory otherwise. */
  async list(path: string): Promise<string[] | undefined> {
    const res = await this.#client.raw(this.#req('GET', path));
    if (res.status >= 400) throw apiError(res.status, res.body, 'GET', path);
    if (res.headers['x-lxd-type'] !== 'directory') return undefined;
    const names = (JSON.parse(res.body.toString('utf8')) as { metadata?: string[] }).metadata ?? [];
    return names.sort();
  }

  /**
   * Follows symlinks at the end of `path`, reading each target inside the
   * instance, until a path that is not a symlink; returns it with its info
   * (null info when it does not exist).
   */
  async resolve(path: string): Promise<{ path: string; info: LxdFileInfo | null }> {
    let current = posix.normalize(path);
    for (let hop = 0; hop <= MAX_HOPS; hop++) {
      const info = await this.info(current);
      if (info?.type !== 'symlink') return { path: current, info };
      const target = await this.readLink(current);
      current = posix.normalize(target.startsWith('/') ? target : posix.join(posix.dirname(current), target));
    }
    throw new LxdApiError(400, `too many levels of symbolic links at ${path}`, 'GET', this.#path);
  }

  /** Streams the content of a regular file. */
  async read(path: string): Promise<IncomingMessage> {
    const res = await this.#client.stream(this.#req('GET', path));
    if ((res.statusCode ?? 0) >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw apiError(res.statusCode ?? 0, Buffer.concat(chunks), 'GET', path);
    }
    return res;
  }

  /** Writes a regular file (replacing one that exists) with owner and mode. */
  async write(path: string, content: Readable | Buffer, opts: LxdWriteOptions): Promise<void> {
    const res = await this.#client.raw(
      this.#req('POST', path, {
        headers: { ...ownerHeaders(opts), 'X-LXD-type': 'file', 'X-LXD-write': 'overwrite' },
        body: content,
      }),
    );
    if (res.status >= 400) throw apiError(res.status, res.body, 'POST', path);
  }

  /** Creates a directory with owner and mode. */
  async mkdir(path: string, opts: LxdWriteOptions): Promise<void> {
    const res = await this.#client.raw(
      this.#req('POST', path, { headers: { ...ownerHeaders(opts), 'X-LXD-type': 'directory' }, body: Buffer.alloc(0) }),
    );
    if (res.status >= 400) throw apiError(res.status, res.body, 'POST', path);
  }

  /** Creates a symlink to `target`. */
  async symlink(path: string, target: string, opts: Omit<LxdWriteOptions, 'mode'>): Promise<void> {
    const res = await this.#client.raw(
      this.#req('POST', path, {
        headers: { ...ownerHeaders({ ...opts, mode: 0o777 }), 'X-LXD-type': 'symlink' },
        body: Buffer.from(target),
      }),
    );
    if (res.status >= 400) throw apiError(res.status, res.body, 'POST', path);
  }

  /** Removes a file, a symlink or an empty directory. */
  async remove(path: string): Promise<void> {
    const res = await this.#client.raw(this.#req('DELETE', path));
    if (res.status >= 400 && res.status !== 404) throw apiError(res.status, res.body, 'DELETE', path);
  }
}

function ownerHeaders(opts: LxdWriteOptions): Record<string, string> {
  return {
    'X-LXD-uid': String(opts.uid),
    'X-LXD-gid': String(opts.gid),
    'X-LXD-mode': `0${(opts.mode & 0o7777).toString(8)}`,
  };
}

/** Reads the X-LXD-* headers of a files API answer. */
export function infoOf(headers: IncomingMessage['headers']): LxdFileInfo {
  const type = String(headers['x-lxd-type'] ?? '');
  const modified = Date.parse(
    String(headers['x-lxd-modified'] ?? '')
      .replace(/ UTC$/, '')
      .replace(' +0000', 'Z')
      .replace(' ', 'T'),
  );
  return {
    type: type === 'file' || type === 'directory' || type === 'symlink' ? type : 'other',
    mode: Number.parseInt(String(headers['x-lxd-mode'] ?? '0'), 8),
    uid: Number(headers['x-lxd-uid'] ?? 0),
    gid: Number(headers['x-lxd-gid'] ?? 0),
    mtime: new Date(Number.isNaN(modified) ? 0 : modified),
  };
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
