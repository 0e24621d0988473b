import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { agentBinaryPath } from '@execenv/agent';
import { type WebSocket, WebSocketServer } from 'ws';
import { AGENT_PATH } from '../src/lxd-agent.js';

/** One request the fake daemon received. */
export interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingMessage['headers'];
  body: Buffer;
  json?: unknown;
}

/** What a faked command does: its output and exit status as LXD reports it (128+n for a signal). */
export interface FakeRun {
  stdout?: string;
  stderr?: string;
  status: number;
  /** Fail the operation as LXD does for 126/127, with this error text. */
  failure?: string;
}

/** Answers an exec: the command as sent, and the stdin the client streamed. */
export type ExecHandler = (
  command: string[],
  stdin: Buffer,
  body: Record<string, unknown>,
) => FakeRun | Promise<FakeRun>;

interface FakeOp {
  id: string;
  status_code: number;
  status: string;
  err: string;
  metadata: Record<string, unknown>;
  done: Promise<void>;
  finish: (code: number, err?: string) => void;
}

interface FakeFile {
  content: Buffer;
  uid: number;
  gid: number;
  mode: number;
}

/**
 * FakeLxd is a small LXD API server on a unix socket, for unit tests: it
 * records every request, keeps instances, profiles, files and operations in
 * memory, and runs exec operations over real websockets with a handler the
 * test gives.
 */
export class FakeLxd {
  readonly requests: Recorded[] = [];
  readonly controlMessages: unknown[] = [];
  readonly instances = new Map<string, Record<string, unknown>>();
  readonly profiles = new Map<string, Record<string, unknown>>();
  readonly aliases = new Map<string, string>();
  /** Images by fingerprint, as `GET /1.0/images?recursion=1` lists them. */
  readonly images = new Map<string, Record<string, unknown>>();
  readonly files = new Map<string, FakeFile>();
  /** When set, every files API request fails with this status and error text. */
  filesError: { status: number; error: string } | undefined;
  /** The `architecture` every new instance reports. */
  instancesArchitecture = 'x86_64';
  /** Agents started by an exec of AGENT_PATH: the real binary on this host, behind the exec's websockets. */
  readonly #agents = new Set<ChildProcess>();
  /** Answers for `POST .../exec`; the default runs `true` as 0 and everything else as 0 with no output. */
  exec: ExecHandler = () => ({ status: 0 });
  /** How long creating an instance takes; it exists once its operation is done. */
  createMs = 0;
  /** When set, `POST .../exec` fails with this error text (a VM whose agent is not up yet) this many more times. */
  execUnavailable: { times: number; error: string } | undefined;
  readonly #ops = new Map<string, FakeOp>();
  readonly #server: Server;
  readonly #wss = new WebSocketServer({ noServer: true });
  #dir = '';
  socketPath = '';

  private constructor() {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => this.#error(res, 500, String((err as Error).message)));
    });
    this.#server.on('upgrade', (req, socket, head) => {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebsocket(req, ws));
    });
  }

  /** Starts a fake daemon on a fresh socket. */
  static async start(): Promise<FakeLxd> {
    const fake = new FakeLxd();
    fake.#dir = await mkdtemp(join(tmpdir(), 'execenv-fake-lxd-'));
    fake.socketPath = join(fake.#dir, 'unix.socket');
    await new Promise<void>((resolve) => fake.#server.listen(fake.socketPath, resolve));
    return fake;
  }

  async stop(): Promise<void> {
    for (const agent of this.#agents) agent.kill('SIGKILL');
    for (const c of this.#wss.clients) c.terminate();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.#dir, { recursive: true, force: true });
  }

  /** The recorded requests as `METHOD path`, without operations polling. */
  calls(): string[] {
    return this.requests.filter((r) => !r.path.startsWith('/1.0/operations/')).map((r) => `${r.method} ${r.path}`);
  }

  #send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }
  #sync(res: ServerResponse, metadata: unknown = {}) {
    this.#send(res, 200, { type: 'sync', status: 'Success', status_code: 200, metadata });
  }
  #error(res: ServerResponse, code: number, error: string) {
    this.#send(res, code, { type: 'error', error, error_code: code });
  }
  #async(res: ServerResponse, op: FakeOp) {
    this.#send(res, 202, {
      type: 'async',
      status: 'Operation created',
      status_code: 100,
      operation: `/1.0/operations/${op.id}`,
      metadata: this.#opView(op),
    });
  }
  #opView(op: FakeOp) {
    return {
      id: op.id,
      class: 'task',
      status: op.status,
      status_code: op.status_code,
      err: op.err,
      metadata: op.metadata,
    };
  }

  #newOp(metadata: Record<string, unknown> = {}): FakeOp {
    let finish!: FakeOp['finish'];
    const done = new Promise<void>((resolve) => {
      finish = (code, err = '') => {
        op.status_code = code;
        op.status = code < 400 ? 'Success' : 'Failure';
        op.err = err;
        resolve();
      };
    });
    const op: FakeOp = { id: randomUUID(), status_code: 103, status: 'Running', err: '', metadata, done, finish };
    this.#ops.set(op.id, op);
    return op;
  }

  /** An operation that is already finished. */
  #doneOp(metadata: Record<string, unknown> = {}, failure?: string): FakeOp {
    const op = this.#newOp(metadata);
    op.finish(failure ? 400 : 200, failure);
    return op;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://lxd');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    let json: unknown;
    if (String(req.headers['content-type'] ?? '').includes('json') && body.length > 0)
      json = JSON.parse(body.toString());
    const rec: Recorded = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body,
      json,
    };
    this.requests.push(rec);
    const p = url.pathname;
    const m = req.method;
    const j = (json ?? {}) as Record<string, unknown>;
    let g: RegExpExecArray | null;
    if (p === '/1.0' && m === 'GET')
      return this.#sync(res, {
        auth: 'trusted',
        environment: { server_version: '5.0.2', server: 'lxd', driver: 'lxc' },
      });
    if ((g = /^\/1\.0\/operations\/([^/]+)\/wait$/.exec(p))) {
      const op = this.#ops.get(g[1]!);
      if (!op) return this.#error(res, 404, 'Operation not found');
      await op.done;
      return this.#sync(res, this.#opView(op));
    }
    if ((g = /^\/1\.0\/operations\/([^/]+)$/.exec(p))) {
      const op = this.#ops.get(g[1]!);
      return op ? this.#sync(res, this.#opView(op)) : this.#error(res, 404, 'Operation not found');
    }
    if (p === '/1.0/profiles' && m === 'POST') {
      if (this.profiles.has(String(j.name))) return this.#error(res, 409, 'Profile already exists');
      this.profiles.set(String(j.name), j);
      return this.#sync(res);
    }
    if (p === '/1.0/profiles' && m === 'GET')
      return this.#sync(
        res,
        url.searchParams.get('recursion') === '1'
          ? [...this.profiles.values()]
          : [...this.profiles.keys()].map((n) => `/1.0/profiles/${n}`),
      );
    if ((g = /^\/1\.0\/profiles\/([^/]+)$/.exec(p)) && m === 'DELETE') {
      const name = decodeURIComponent(g[1]!);
      if (!this.profiles.delete(name)) return this.#error(res, 404, 'Profile not found');
      return this.#sync(res);
    }
    if (p === '/1.0/instances' && m === 'POST') {
      const create = () =>
        this.instances.set(String(j.name), { ...j, architecture: this.instancesArchitecture, status: 'Stopped' });
      if (this.createMs === 0) {
        create();
        return this.#async(res, this.#doneOp());
      }
      const op = this.#newOp();
      setTimeout(() => {
        create();
        op.finish(200);
      }, this.createMs);
      return this.#async(res, op);
    }
    if (p === '/1.0/instances' && m === 'GET')
      return this.#sync(
        res,
        url.searchParams.get('recursion') === '1'
          ? [...this.instances.values()]
          : [...this.instances.keys()].map((n) => `/1.0/instances/${n}`),
      );
    if ((g = /^\/1\.0\/instances\/([^/]+)$/.exec(p))) {
      const name = decodeURIComponent(g[1]!);
      const inst = this.instances.get(name);
      if (!inst) return this.#error(res, 404, 'Instance not found');
      if (m === 'GET') return this.#sync(res, inst);
      if (m === 'DELETE') {
        this.instances.delete(name);
        return this.#async(res, this.#doneOp());
      }
    }
    if ((g = /^\/1\.0\/instances\/([^/]+)\/state$/.exec(p))) {
      const name = decodeURIComponent(g[1]!);
      const inst = this.instances.get(name);
      if (!inst) return this.#error(res, 404, 'Instance not found');
      if (m === 'GET') return this.#sync(res, { status: inst.status });
      if (j.action === 'start') inst.status = 'Running';
      if (j.action === 'stop' && inst.status === 'Stopped')
        return this.#async(res, this.#doneOp({}, 'The instance is already stopped'));
      if (j.action === 'stop') {
        inst.status = 'Stopped';
        if (inst.ephemeral) this.instances.delete(name);
      }
      return this.#async(res, this.#doneOp());
    }
    if ((g = /^\/1\.0\/instances\/([^/]+)\/exec$/.exec(p)) && m === 'POST') {
      if (this.execUnavailable && this.execUnavailable.times > 0) {
        this.execUnavailable.times--;
        return this.#error(res, 400, this.execUnavailable.error);
      }
      const fds = { '0': randomUUID(), '1': randomUUID(), '2': randomUUID(), control: randomUUID() };
      const op = this.#newOp({ fds });
      (op as FakeOp & { exec: unknown }).exec = { body: j, sockets: new Map<string, WebSocket>() };
      return this.#async(res, op);
    }
    if ((g = /^\/1\.0\/instances\/([^/]+)\/files$/.exec(p))) return this.#filesApi(m ?? 'GET', url, rec, res);
    if ((g = /^\/1\.0\/instances\/([^/]+)\/snapshots$/.exec(p)) && m === 'POST')
      return this.#async(res, this.#doneOp());
    if (/^\/1\.0\/instances\/([^/]+)\/snapshots\/[^/]+$/.test(p) && m === 'DELETE')
      return this.#async(res, this.#doneOp());
    if (p === '/1.0/images' && m === 'GET') return this.#sync(res, [...this.images.values()]);
    if ((g = /^\/1\.0\/images\/([0-9a-f]+)$/.exec(p)) && m === 'DELETE') {
      if (!this.images.delete(g[1]!)) return this.#error(res, 404, 'Image not found');
      return this.#async(res, this.#doneOp());
    }
    if (p === '/1.0/images' && m === 'POST') return this.#importImage(rec, res);
    if ((g = /^\/1\.0\/images\/aliases\/([^/]+)$/.exec(p)) && m === 'GET') {
      const target = this.aliases.get(decodeURIComponent(g[1]!));
      return target ? this.#sync(res, { name: g[1], target }) : this.#error(res, 404, 'not found');
    }
    if (p === '/1.0/images/aliases' && m === 'POST') {
      this.aliases.set(String(j.name), String(j.target));
      return this.#sync(res);
    }
    if (p === '/1.0/networks' && m === 'GET') return this.#sync(res, []);
    if (/^\/1\.0\/networks\/[^/]+$/.test(p) && m === 'GET') return this.#error(res, 404, 'Network not found');
    if (p === '/1.0/networks' && m === 'POST') return this.#sync(res);
    return this.#error(res, 404, `not faked: ${m} ${p}`);
  }

  /**
   * An image upload as LXD takes it: the fingerprint is the sha256 of the
   * unified tarball, or of a split image's metadata and rootfs one after the
   * other; an image the daemon already holds is refused.
   */
  #importImage(rec: Recorded, res: ServerResponse) {
    const type = String(rec.headers['content-type'] ?? '');
    const boundary = /boundary=(\S+)/.exec(type)?.[1];
    const parts = boundary ? multipartContents(rec.body, boundary) : [rec.body];
    const hash = createHash('sha256');
    for (const part of parts) hash.update(part);
    const fingerprint = hash.digest('hex');
    if (this.images.has(fingerprint))
      return this.#async(res, this.#doneOp({}, 'Image with same fingerprint already exists'));
    const properties = Object.fromEntries(
      String(rec.headers['x-lxd-properties'] ?? '')
        .split('&')
        .filter(Boolean)
        .map((kv) => kv.split('=').map(decodeURIComponent) as [string, string]),
    );
    this.images.set(fingerprint, { fingerprint, properties, uploaded_at: new Date().toISOString() });
    return this.#async(res, this.#doneOp({ fingerprint }));
  }

  /** The files API as the driver uses it: a POST writes a file. */
  #filesApi(method: string, url: URL, rec: Recorded, res: ServerResponse) {
    if (this.filesError) return this.#error(res, this.filesError.status, this.filesError.error);
    if (method !== 'POST') return this.#error(res, 501, `the fake files API does not do ${method}`);
    this.files.set(url.searchParams.get('path') ?? '', {
      content: rec.body,
      uid: Number(rec.headers['x-lxd-uid'] ?? 0),
      gid: Number(rec.headers['x-lxd-gid'] ?? 0),
      mode: Number.parseInt(String(rec.headers['x-lxd-mode'] ?? '0644'), 8),
    });
    return this.#sync(res);
  }

  #onWebsocket(req: IncomingMessage, ws: WebSocket) {
    const url = new URL(req.url ?? '/', 'http://lxd');
    const g = /^\/1\.0\/operations\/([^/]+)\/websocket$/.exec(url.pathname);
    const op = g ? this.#ops.get(g[1]!) : undefined;
    const secret = url.searchParams.get('secret') ?? '';
    const exec = (
      op as (FakeOp & { exec?: { body: Record<string, unknown>; sockets: Map<string, WebSocket> } }) | undefined
    )?.exec;
    const fds = (op?.metadata.fds ?? {}) as Record<string, string>;
    const fd = Object.entries(fds).find(([, s]) => s === secret)?.[0];
    if (!op || !exec || !fd) {
      ws.close(1008);
      return;
    }
    exec.sockets.set(fd, ws);
    if (fd === 'control') ws.on('message', (d) => this.controlMessages.push(JSON.parse(d.toString())));
    if (exec.sockets.size === 4)
      void ((exec.body.command as string[])[0] === AGENT_PATH
        ? this.#runAgent(op, exec.sockets)
        : this.#runExec(op, exec.body, exec.sockets));
  }

  /**
   * Runs the real agent binary of this host with `--stdio` behind the exec's
   * websockets, streaming both ways as LXD does; its commands run on this host.
   */
  async #runAgent(op: FakeOp, sockets: Map<string, WebSocket>) {
    const stdinWs = sockets.get('0')!;
    const out = sockets.get('1')!;
    const err = sockets.get('2')!;
    // What the client sends while the binary is looked up is kept for the agent's stdin.
    const early = new PassThrough();
    stdinWs.on('message', (d: Buffer, binary) => {
      if (binary) early.write(d);
    });
    stdinWs.once('close', () => early.end());
    const child = spawn(await agentBinaryPath(), ['--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#agents.add(child);
    early.pipe(child.stdin!);
    child.stdin!.on('error', () => {});
    child.stdout!.on('data', (c: Buffer) => out.send(c));
    child.stderr!.on('data', (c: Buffer) => err.send(c));
    child.once('exit', (code, signal) => {
      this.#agents.delete(child);
      out.close();
      err.close();
      op.metadata = { ...op.metadata, return: code ?? 128 + (signal ? (constants.signals[signal] ?? 9) : 9) };
      op.finish(200);
      sockets.get('control')!.close();
    });
  }

  async #runExec(op: FakeOp, body: Record<string, unknown>, sockets: Map<string, WebSocket>) {
    const stdinWs = sockets.get('0')!;
    const command = body.command as string[];
    const out = sockets.get('1')!;
    const err = sockets.get('2')!;
    // The supervisor prints the command's pid first on stderr, as the real one does.
    if (command[0] === 'sh' && command[1] === '-c' && String(command[2]).includes('setsid'))
      err.send(Buffer.from('4242\n'));
    const stdin: Buffer[] = [];
    await new Promise<void>((resolve) => {
      stdinWs.on('message', (d: Buffer, binary) => {
        if (binary) stdin.push(d);
      });
      stdinWs.once('close', () => resolve());
    });
    const run = await this.exec(command, Buffer.concat(stdin), body);
    if (run.stdout) out.send(Buffer.from(run.stdout));
    if (run.stderr) err.send(Buffer.from(run.stderr));
    out.close();
    err.close();
    op.metadata = { ...op.metadata, return: run.status };
    op.finish(run.failure ? 400 : 200, run.failure);
    sockets.get('control')!.close();
  }
}

/** The contents of a multipart/form-data body's parts, in order. */
function multipartContents(body: Buffer, boundary: string): Buffer[] {
  const parts: Buffer[] = [];
  const delimiter = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const next = body.indexOf(delimiter, at + delimiter.length);
    if (next < 0) break;
    const part = body.subarray(at + delimiter.length, next);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd >= 0) parts.push(part.subarray(headerEnd + 4, part.length - 2));
    at = next;
  }
  return parts;
}
