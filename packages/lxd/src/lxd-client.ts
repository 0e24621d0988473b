import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import WebSocket from 'ws';

/**
 * Where an LXD (or Incus) daemon listens: its local unix socket, or a remote
 * HTTPS endpoint that trusts a TLS client certificate.
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * import { type LxdEndpoint, LxdDriver } from '@execenv/lxd';
 * const local: LxdEndpoint = { socketPath: '/var/snap/lxd/common/lxd/unix.socket' };
 * const remote: LxdEndpoint = {
 *   url: 'https://lxd1.example:8443',
 *   cert: readFileSync('client.crt'), key: readFileSync('client.key'), ca: readFileSync('server.crt'),
 * };
 * const driver = new LxdDriver({ endpoint: process.env.CI ? remote : local });
 * ```
 */
export type LxdEndpoint =
  | { socketPath: string }
  | {
      /** `https://host:8443` */
      url: string;
      /** PEM client certificate the server trusts. */
      cert: string | Buffer;
      /** PEM private key of the client certificate. */
      key: string | Buffer;
      /** PEM certificate(s) the server's certificate must chain to; LXD's is usually self-signed, so pass it here. */
      ca?: string | Buffer;
      /** Name the server certificate is checked against. @default the URL's host */
      serverName?: string;
    };

/**
 * LxdApiError is an error answer of the LXD API: its HTTP status and message.
 *
 * @example
 * ```ts
 * import { LxdApiError, LxdClient } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * try {
 *   await client.get('/1.0/instances/builder');
 * } catch (err) {
 *   if (!(err instanceof LxdApiError && err.status === 404)) throw err; // 404: no such instance
 * }
 * ```
 */
export class LxdApiError extends Error {
  override readonly name = 'LxdApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly method: string,
    readonly path: string,
  ) {
    super(`${method} ${path}: ${status} ${message}`);
  }
}

/**
 * LxdConnectionError says the daemon could not be reached or the connection broke.
 *
 * @example
 * ```ts
 * import { LxdClient, LxdConnectionError } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * try {
 *   await client.get('/1.0');
 * } catch (err) {
 *   if (err instanceof LxdConnectionError) console.error(`is LXD running? ${err.message}`);
 *   else throw err;
 * }
 * ```
 */
export class LxdConnectionError extends Error {
  override readonly name = 'LxdConnectionError';
}

/**
 * An LXD operation as `GET /1.0/operations/<id>` describes it.
 *
 * @example
 * ```ts
 * import { LxdClient, type LxdOperation } from '@execenv/lxd';
 * const client = new LxdClient({ socketPath: '/var/lib/lxd/unix.socket' });
 * const stop = { method: 'PUT', path: '/1.0/instances/builder/state', body: { action: 'stop', force: true } };
 * const op: LxdOperation = await client.run(stop); // waits for the operation; a failed one throws LxdApiError
 * console.log(op.id, op.status); // '…', 'Success'
 * ```
 */
export interface LxdOperation {
  id: string;
  class: string;
  status: string;
  status_code: number;
  err: string;
  metadata: Record<string, unknown> | null;
  resources?: Record<string, string[]> | null;
}

/** The body and headers of one raw response. */
export interface LxdResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One request to the API. */
export interface LxdRequest {
  method: string;
  /** Path under the API root, e.g. `/1.0/instances`. */
  path: string;
  /** Query parameters; `project` is added by the client. */
  query?: Record<string, string | undefined>;
  headers?: Record<string, string>;
  /** JSON body (object), raw bytes, or a stream. */
  body?: unknown;
  signal?: AbortSignal;
}

/** Longest wait for a websocket handshake: the daemon gives up on an operation's sockets well before. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

interface Envelope {
  type: 'sync' | 'async' | 'error';
  status_code?: number;
  error_code?: number;
  error?: string;
  metadata?: unknown;
  operation?: string;
}

/**
 * LxdClient speaks the LXD REST API over node's http/https and the `ws`
 * websocket library: requests, operations, websockets and the files API. It
 * knows nothing of execenv; the driver builds on it.
 *
 * @example
 * ```ts
 * import { findLocalSocket, LxdClient } from '@execenv/lxd';
 * const socketPath = await findLocalSocket();
 * if (socketPath === undefined) throw new Error('no LXD daemon on this host');
 * const client = new LxdClient({ socketPath }, { project: 'ci' });
 * try {
 *   const server = await client.get<{ environment: { server_version: string } }>('/1.0');
 *   console.log(server.environment.server_version);
 * } finally {
 *   client.close();
 * }
 * ```
 */
export class LxdClient {
  readonly endpoint: LxdEndpoint;
  /** The LXD project every request is made in. */
  readonly project: string | undefined;
  readonly #agent: HttpAgent;

  constructor(endpoint: LxdEndpoint, opts: { project?: string } = {}) {
    this.endpoint = endpoint;
    this.project = opts.project;
    this.#agent =
      'socketPath' in endpoint
        ? new HttpAgent({ keepAlive: true })
        : new HttpsAgent({
            keepAlive: true,
            cert: endpoint.cert,
            key: endpoint.key,
            ca: endpoint.ca,
            servername: endpoint.serverName,
          });
  }

  /** Where requests go, in words: the socket path or the URL. */
  get address(): string {
    return 'socketPath' in this.endpoint ? this.endpoint.socketPath : this.endpoint.url;
  }

  #pathWithQuery(path: string, query: LxdRequest['query']): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, v);
    if (this.project && !params.has('project')) params.set('project', this.project);
    const qs = params.toString();
    return qs ? `${path}?${qs}` : path;
  }

  /** Sends a request and returns the response stream without reading it. */
  stream(req: LxdRequest): Promise<IncomingMessage> {
    const path = this.#pathWithQuery(req.path, req.query);
    const headers: Record<string, string> = { ...req.headers };
    let payload: Buffer | Readable | undefined;
    if (req.body instanceof Readable) payload = req.body;
    else if (req.body instanceof Uint8Array) payload = Buffer.from(req.body);
    else if (req.body !== undefined) {
      payload = Buffer.from(JSON.stringify(req.body));
      headers['Content-Type'] ??= 'application/json';
    }
    if (Buffer.isBuffer(payload)) headers['Content-Length'] = String(payload.length);
    return new Promise((resolve, reject) => {
      const common = { method: req.method, path, headers, agent: this.#agent, signal: req.signal };
      const onResponse = (res: IncomingMessage) => resolve(res);
      const r =
        'socketPath' in this.endpoint
          ? httpRequest({ ...common, socketPath: this.endpoint.socketPath, host: 'lxd' }, onResponse)
          : (() => {
              const url = new URL(this.endpoint.url);
              return httpsRequest(
                { ...common, host: url.hostname, port: url.port || 8443, servername: this.endpoint.serverName },
                onResponse,
              );
            })();
      r.once('error', (err) => {
        if (err.name === 'AbortError') reject(err);
        else reject(new LxdConnectionError(`${req.method} ${path} on ${this.address}: ${err.message}`, { cause: err }));
      });
      if (payload instanceof Readable) {
        payload.once('error', (err) => r.destroy(err));
        payload.pipe(r);
      } else r.end(payload);
    });
  }

  /** Sends a request and reads the whole response. */
  async raw(req: LxdRequest): Promise<LxdResponse> {
    const res = await this.stream(req);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
  }

  /**
   * Sends a request and returns the `metadata` of a sync answer, or, for an
   * async answer, the operation it started. Error answers throw LxdApiError.
   */
  async call<T = unknown>(req: LxdRequest): Promise<T> {
    const res = await this.raw(req);
    return this.#unwrap<T>(req, res);
  }

  #unwrap<T>(req: LxdRequest, res: LxdResponse): T {
    let env: Envelope;
    try {
      env = JSON.parse(res.body.toString('utf8')) as Envelope;
    } catch {
      throw new LxdApiError(
        res.status,
        `unexpected answer: ${res.body.toString('utf8').slice(0, 200)}`,
        req.method,
        req.path,
      );
    }
    if (env.type === 'error' || res.status >= 400)
      throw new LxdApiError(env.error_code ?? res.status, env.error ?? 'error', req.method, req.path);
    return env.metadata as T;
  }

  /** GET of a JSON resource. */
  get<T = unknown>(path: string, query?: LxdRequest['query']): Promise<T> {
    return this.call<T>({ method: 'GET', path, query });
  }

  /**
   * Starts an async request and waits for its operation to finish; a failed
   * operation throws LxdApiError with its error text.
   */
  async run(req: LxdRequest, timeoutSec = -1): Promise<LxdOperation> {
    const op = await this.call<LxdOperation>(req);
    return this.wait(op.id, timeoutSec, req);
  }

  /** Waits for an operation to finish (or `timeoutSec` to pass) and throws when it failed. */
  async wait(id: string, timeoutSec = -1, origin?: LxdRequest): Promise<LxdOperation> {
    const op = await this.call<LxdOperation>({
      method: 'GET',
      path: `/1.0/operations/${encodeURIComponent(id)}/wait`,
      query: { timeout: String(timeoutSec) },
      signal: origin?.signal,
    });
    if (op.status_code >= 400)
      throw new LxdApiError(op.status_code, op.err || op.status, origin?.method ?? 'GET', origin?.path ?? id);
    return op;
  }

  /**
   * Opens the websocket of an operation for one of its secrets. `attach` is
   * called with the socket before it connects, so no message sent right
   * after the handshake is missed.
   */
  websocket(operationId: string, secret: string, attach?: (ws: WebSocket) => void): Promise<WebSocket> {
    const path = this.#pathWithQuery(`/1.0/operations/${encodeURIComponent(operationId)}/websocket`, { secret });
    let ws: WebSocket;
    if ('socketPath' in this.endpoint) {
      ws = new WebSocket(`ws+unix://${this.endpoint.socketPath}:${path}`, {
        perMessageDeflate: false,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
    } else {
      const url = new URL(this.endpoint.url);
      url.protocol = 'wss:';
      ws = new WebSocket(new URL(path, url).href, {
        perMessageDeflate: false,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        // Through the client's agent: its cached TLS sessions make each websocket's handshake a resumption.
        agent: this.#agent,
        cert: this.endpoint.cert,
        key: this.endpoint.key,
        ca: this.endpoint.ca,
        ...(this.endpoint.serverName ? { servername: this.endpoint.serverName } : {}),
      } as WebSocket.ClientOptions);
    }
    attach?.(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.off('error', reject);
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => {
          let text = Buffer.concat(chunks).toString('utf8');
          try {
            text = (JSON.parse(text) as { error?: string }).error ?? text;
          } catch {
            // not JSON: keep the text
          }
          reject(
            new LxdApiError(res.statusCode ?? 0, text.slice(0, 300), 'GET', `/1.0/operations/${operationId}/websocket`),
          );
          ws.terminate();
        });
      });
      ws.once('error', (err) =>
        reject(new LxdConnectionError(`websocket of operation ${operationId} on ${this.address}: ${err.message}`)),
      );
    });
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}
