import { createConnection } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import type { AgentExecRequest, AgentFileStat, AgentSessionLike, AgentWriteOptions } from '@execenv/core/driver';
import { AgentChannel, type ChannelLink, type ChannelSpec, type WindowedOutput } from './agent-channel.js';
import { AgentCommand } from './agent-command.js';
import { AgentError, AgentTransportError } from './agent-errors.js';
import { type AgentOutcome, keyValues, outcomeError, parseOutcome } from './agent-outcome.js';
import type { AgentInfo, AgentProcess } from './agent-types.js';
import {
  decodeFields,
  encodeFields,
  encodeFrame,
  encodeWindow,
  type Frame,
  FrameDecoder,
  type FrameSink,
  FrameType,
  type FrameTypeCode,
  HELLO_GREETING,
  INITIAL_WINDOW,
  MAX_PAYLOAD,
  PROTOCOL_VERSION,
  StreamId,
} from './frames.js';

/**
 * Options of a session.
 *
 * @example
 * ```ts
 * import { AgentSession, type AgentSessionOptions } from '@execenv/agent';
 *
 * const opts: AgentSessionOptions = { handshakeTimeoutMs: 60_000 }; // an emulated VM's agent starts slowly
 * const session = await AgentSession.connect('/run/execenv/env-1/agent.sock', opts);
 * ```
 */
export interface AgentSessionOptions {
  /** Milliseconds the handshake may take before the session is given up. @default 10000 */
  handshakeTimeoutMs?: number;
}

const MAX_CHANNEL = 0xffffffff;
const SHUTDOWN_GRACE_MS = 5000;

/**
 * AgentSession is one connection to an execenv agent: every exec and file
 * operation of it runs on its own channel, with flow control per stream, so
 * any number may run at once. When the connection is lost or closed, every
 * pending operation and running command fails promptly with
 * AgentTransportError; the agent kills what the session still ran.
 *
 * @example
 * ```ts
 * import { AgentSession } from '@execenv/agent';
 *
 * const session = await AgentSession.connect('/run/execenv/env-1/agent.sock'); // an agent started with --listen
 * try {
 *   await session.mkdir('/work/out', 0o755);
 *   console.log((await session.stat('/work/out', true))?.type); // 'directory'
 * } finally {
 *   session.close();
 * }
 * ```
 */
export class AgentSession implements AgentSessionLike, AsyncDisposable {
  readonly #readable: Readable;
  readonly #writable: Writable;
  readonly #decoder = new FrameDecoder();
  readonly #channels = new Map<number, AgentChannel>();
  readonly #pings = new Map<string, { resolve: () => void; reject: (error: Error) => void }>();
  readonly #drainWaiters: (() => void)[] = [];
  readonly #link: ChannelLink;
  #info: AgentInfo | undefined;
  #hello: { resolve: (info: AgentInfo) => void; reject: (error: Error) => void } | undefined;
  #nextChannel = 1;
  #nextPing = 0;
  #failure: AgentTransportError | undefined;
  #shuttingDown = false;
  #corked = false;
  #resolveClosed!: () => void;

  /** Resolves once the session has ended, for whatever reason. */
  readonly closed: Promise<void>;

  private constructor(readable: Readable, writable: Writable) {
    this.#readable = readable;
    this.#writable = writable;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#link = {
      sendData: (channel, bytes) => this.#send(FrameType.DATA, channel, Uint8Array.of(StreamId.INPUT), bytes),
      sendEof: (channel) => void this.#send(FrameType.EOF, channel, Uint8Array.of(StreamId.INPUT)),
      sendWindow: (channel, stream, increment) => {
        if (this.#channels.has(channel)) this.#send(FrameType.WINDOW, channel, encodeWindow(stream, increment));
      },
      drained: () => this.#drained(),
    };
    readable.on('data', (chunk: Buffer) => this.#receive(chunk));
    readable.on('end', () => this.#lost());
    readable.on('close', () => this.#lost());
    readable.on('error', (err) =>
      this.#fail(new AgentTransportError(`connection failed: ${err.message}`, { cause: err })),
    );
    if ((writable as unknown) !== readable) {
      writable.on('error', (err) =>
        this.#fail(new AgentTransportError(`connection failed: ${err.message}`, { cause: err })),
      );
      writable.on('close', () => this.#lost());
    }
    writable.on('drain', () => this.#wakeDrainWaiters());
  }

  /**
   * connect opens a session on an agent's unix socket (`--listen`).
   * @throws AgentTransportError when the socket cannot be reached or the handshake fails.
   */
  static async connect(socketPath: string, opts: AgentSessionOptions = {}): Promise<AgentSession> {
    const socket = createConnection(socketPath);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new AgentTransportError(`cannot connect to ${socketPath}: ${err.message}`, { cause: err }));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve();
      });
    });
    return AgentSession.over(socket, socket, opts);
  }

  /**
   * over opens a session on any byte stream pair, e.g. an agent's stdout and
   * stdin (`--stdio`); the session owns both from then on.
   * @throws AgentTransportError when the handshake fails or times out.
   */
  static async over(readable: Readable, writable: Writable, opts: AgentSessionOptions = {}): Promise<AgentSession> {
    const session = new AgentSession(readable, writable);
    await session.#handshake(opts.handshakeTimeoutMs ?? 10000);
    return session;
  }

  /** What the agent said about itself in the handshake. */
  get info(): AgentInfo {
    return this.#info!;
  }

  /** Starts a command; `kill()` or `kill('SIGKILL')` kills its whole tree, another signal goes to the command. */
  exec(request: AgentExecRequest): AgentProcess {
    if (request.argv.length === 0) throw new AgentError('INVALID', 'argv is empty', 'exec');
    const env = Object.entries(request.env).map(([name, value]) => {
      if (name === '' || name.includes('=')) throw new AgentError('INVALID', `bad environment name ${name}`, 'exec');
      return `${name}=${value}`;
    });
    const channel = this.#open({ op: 'exec', path: request.cwd, outputs: [1, 2], input: true, outputsEndAtEof: true }, [
      request.cwd,
      String(request.uid),
      String(request.gid),
      request.groups.join(','),
      String(env.length),
      ...env,
      ...request.argv,
    ]);
    return new AgentCommand(channel, {
      kill: () => this.#kill(channel),
      signal: (signal) => {
        if (!channel.ended) this.#send(FrameType.SIGNAL, channel.id, Uint8Array.of(signal));
      },
    });
  }

  /** Writes a file atomically, creating missing parents; follows a final symlink inside the environment. */
  async writeFile(path: string, content: Readable, opts: AgentWriteOptions): Promise<void> {
    const channel = this.#open(fileSpec('write', path, { input: true }), [
      path,
      opts.mode.toString(8),
      String(opts.uid),
      String(opts.gid),
    ]);
    expectOk(await this.#feed(channel, content), channel);
  }

  /** Streams a file's content; `done` gives its mode and size once read whole. */
  readFile(path: string): { content: Readable; done: Promise<{ mode: number; size: number }> } {
    const channel = this.#open(fileSpec('read', path, { output: true }), [path]);
    const done = channel.outcome.then((outcome) => {
      const fields = expectOk(outcome, channel);
      return { mode: Number.parseInt(fields.mode ?? '0', 8), size: Number(fields.size ?? 0) };
    });
    done.catch(() => {});
    return { content: channel.output(), done };
  }

  /** Describes a path, following a final symlink when `follow`; null when it does not exist. */
  async stat(path: string, follow: boolean): Promise<AgentFileStat | null> {
    const channel = this.#open(fileSpec('stat', path, {}), [path, follow ? '1' : '0']);
    const outcome = await channel.outcome;
    if (outcome.kind === 'error' && outcome.code === 'NOT_FOUND') return null;
    const f = expectOk(outcome, channel);
    const type = f.type;
    if (type !== 'file' && type !== 'directory' && type !== 'symlink' && type !== 'other')
      throw new AgentTransportError(`protocol error: stat of ${path} gave type ${type}`);
    const stat: AgentFileStat = {
      type,
      mode: Number.parseInt(f.mode ?? '0', 8),
      uid: Number(f.uid),
      gid: Number(f.gid),
      size: Number(f.size),
      mtime: parseMtime(f.mtime ?? '0'),
    };
    if (f.target !== undefined) stat.target = f.target;
    return stat;
  }

  /** Names in a directory, `.` and `..` excepted, sorted. */
  async readDir(path: string): Promise<string[]> {
    const channel = this.#open(fileSpec('readdir', path, { output: true }), [path]);
    const bytes = await readAll(channel.output());
    expectOk(await channel.outcome, channel);
    return decodeFields(bytes).sort();
  }

  /** Creates a directory and its missing parents. */
  async mkdir(path: string, mode: number): Promise<void> {
    const channel = this.#open(fileSpec('mkdir', path, {}), [path, mode.toString(8)]);
    expectOk(await channel.outcome, channel);
  }

  /** Removes a file, symlink or whole tree; a missing path is not an error. */
  async remove(path: string): Promise<void> {
    const channel = this.#open(fileSpec('remove', path, {}), [path]);
    expectOk(await channel.outcome, channel);
  }

  /**
   * Streams a path as a tar archive (PROTOCOL.md, tar-out); the stream errors
   * with the AgentError when the agent fails, and ends only after it succeeded.
   * With `direct`, the agent reads large files with direct I/O, bypassing the
   * environment's page cache (faster in a guest under an emulated CPU).
   */
  tarOut(path: string, opts: { direct?: boolean } = {}): Readable {
    const args = opts.direct ? [path, 'direct'] : [path];
    return this.#open(fileSpec('tar-out', path, { output: true }), args).output();
  }

  /** Extracts a tar archive into destDir, refusing unsafe entries; on failure the agent removes what it created. */
  async tarIn(destDir: string, tar: Readable): Promise<{ entries: number; bytes: number }> {
    const channel = this.#open(fileSpec('tar-in', destDir, { input: true }), [destDir]);
    return archiveCounts(expectOk(await this.#feed(channel, tar), channel));
  }

  /**
   * Extracts the tar archive in the regular file `archive` (a path inside the
   * environment) into destDir, as tarIn does with a streamed one (PROTOCOL.md,
   * tar-in-file). Large files are written with direct I/O. The archive is
   * left in place.
   *
   * @example
   * ```ts
   * // The host wrote /srv/share/push.tar into a directory the guest mounts read-only at /run/stage.
   * const { entries, bytes } = await session.tarInFile('/work/src', '/run/stage/push.tar');
   * ```
   */
  async tarInFile(destDir: string, archive: string): Promise<{ entries: number; bytes: number }> {
    const channel = this.#open(fileSpec('tar-in-file', destDir, {}), [destDir, archive]);
    return archiveCounts(expectOk(await channel.outcome, channel));
  }

  /**
   * Writes the tar archive of a path (as tarOut streams it, large files read
   * with direct I/O) into the new file `archive`, a path inside the
   * environment that must not exist yet (PROTOCOL.md, tar-out-file).
   *
   * @example
   * ```ts
   * // /pull is a directory the host reads; the host then opens pull.tar without following symlinks.
   * const { entries, bytes } = await session.tarOutFile('/work/out', '/pull/pull.tar');
   * ```
   */
  async tarOutFile(path: string, archive: string): Promise<{ entries: number; bytes: number }> {
    const channel = this.#open(fileSpec('tar-out-file', path, {}), [path, archive]);
    return archiveCounts(expectOk(await channel.outcome, channel));
  }

  /**
   * Checks the agent answers; resolves with the round trip in milliseconds.
   * @throws AgentTransportError when no answer comes within timeoutMs or the session is lost.
   */
  async ping(timeoutMs = 5000): Promise<number> {
    if (this.#failure) throw this.#failure;
    const token = Buffer.alloc(8);
    token.writeBigUInt64BE(BigInt(++this.#nextPing));
    const key = token.toString('hex');
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.#pings.set(key, { resolve, reject });
        timer = setTimeout(
          () => reject(new AgentTransportError(`the agent did not answer a PING within ${timeoutMs} ms`)),
          timeoutMs,
        );
        this.#send(FrameType.PING, 0, token);
      });
    } finally {
      clearTimeout(timer);
      this.#pings.delete(key);
    }
    return performance.now() - started;
  }

  /** Asks the agent to kill everything and exit, and resolves once the session has ended. */
  async shutdown(): Promise<void> {
    if (this.#failure) return;
    this.#shuttingDown = true;
    this.#send(FrameType.SHUTDOWN, 0);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closed, new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
    clearTimeout(timer);
    this.close();
  }

  /** Closes the connection; pending operations fail, and the agent kills what this session still runs. */
  close(): void {
    this.#fail(new AgentTransportError('the session was closed'));
  }

  /** Closes the session and waits until it has ended. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  async #handshake(timeoutMs: number): Promise<void> {
    const hello = new Promise<AgentInfo>((resolve, reject) => (this.#hello = { resolve, reject }));
    const timer = setTimeout(
      () => this.#fail(new AgentTransportError(`the agent did not answer HELLO within ${timeoutMs} ms`)),
      timeoutMs,
    );
    this.#send(FrameType.HELLO, 0, Buffer.from(HELLO_GREETING));
    try {
      this.#info = await hello;
    } finally {
      clearTimeout(timer);
      this.#hello = undefined;
    }
  }

  #open(spec: ChannelSpec, args: readonly string[]): AgentChannel {
    const fields = [spec.op, ...args];
    if (fields.some((f) => f.includes('\0')))
      throw new AgentError('INVALID', 'an argument contains a NUL byte', spec.op, spec.path);
    const payload = encodeFields(fields);
    if (payload.length > MAX_PAYLOAD)
      throw new AgentError('INVALID', `arguments of ${payload.length} bytes exceed ${MAX_PAYLOAD}`, spec.op, spec.path);
    if (this.#failure) {
      const dead = new AgentChannel(0, spec, this.#link);
      dead.fail(this.#failure);
      return dead;
    }
    const channel = new AgentChannel(this.#allocateChannel(), spec, this.#link);
    this.#channels.set(channel.id, channel);
    this.#send(FrameType.OPEN, channel.id, payload);
    for (const output of channel.outputs.values()) output.widen();
    return channel;
  }

  #allocateChannel(): number {
    while (this.#channels.has(this.#nextChannel)) this.#nextChannel = (this.#nextChannel % MAX_CHANNEL) + 1;
    const id = this.#nextChannel;
    this.#nextChannel = (id % MAX_CHANNEL) + 1;
    return id;
  }

  /** Pipes `source` into the channel's input and waits for END; a failing source kills the operation. */
  async #feed(channel: AgentChannel, given: Readable): Promise<AgentOutcome> {
    const input = channel.input!;
    // Any async-iterable stream works (tar-stream's packs are streamx streams, without unpipe).
    const source = typeof given.unpipe === 'function' ? given : Readable.from(given);
    let sourceError: unknown;
    const onError = (err: unknown) => {
      sourceError ??= err;
      this.#kill(channel);
    };
    source.once('error', onError);
    source.pipe(input);
    try {
      const outcome = await channel.outcome;
      if (sourceError) throw sourceError;
      return outcome;
    } finally {
      source.off('error', onError);
      source.unpipe(input);
      // As stream.pipeline does: a source the operation no longer reads is released.
      if (!source.readableEnded) {
        source.destroy();
        if (source !== given) given.destroy();
      }
    }
  }

  #kill(channel: AgentChannel): void {
    if (!channel.ended) this.#send(FrameType.KILL, channel.id);
  }

  #send(type: FrameTypeCode, channel: number, ...payload: Uint8Array[]): boolean {
    if (this.#failure) return true;
    if (!this.#corked) {
      // Frames sent in one turn of the event loop (an OPEN and its stdin's EOF, many OPENs at once) leave in one write.
      this.#corked = true;
      this.#writable.cork();
      setImmediate(() => {
        this.#corked = false;
        this.#writable.uncork();
      });
    }
    return this.#writable.write(encodeFrame(type, channel, ...payload));
  }

  #drained(): Promise<void> {
    if (this.#failure || !this.#writable.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wakeDrainWaiters(): void {
    for (const wake of this.#drainWaiters.splice(0)) wake();
  }

  #receive(chunk: Buffer): void {
    if (this.#failure) return;
    try {
      this.#decoder.feed(chunk, this.#sink);
    } catch (err) {
      this.#fail(
        err instanceof AgentTransportError
          ? err
          : new AgentTransportError(`protocol error: ${(err as Error).message}`, { cause: err }),
      );
    }
  }

  /** Where DATA bytes go until the frame they belong to is done. */
  #dataOutput: WindowedOutput | undefined;
  /** What the decoder hands on: control frames to #dispatch, DATA bytes straight to their output stream. */
  readonly #sink: FrameSink = {
    frame: (frame) => {
      if (!this.#failure) this.#dispatch(frame);
    },
    dataStart: (channelId, stream, length) => {
      if (this.#failure) return;
      if (!this.#info || channelId === 0) throw protocolError(`DATA on channel ${channelId} before a channel is open`);
      const channel = this.#channels.get(channelId);
      if (!channel) throw protocolError(`frame type ${FrameType.DATA} for channel ${channelId}, which is not open`);
      const output = channel.outputs.get(stream);
      if (!output) throw protocolError(`DATA on stream ${stream} of a ${channel.spec.op} channel`);
      if (length > output.window || output.eof)
        throw protocolError(`DATA beyond the window on stream ${stream} of channel ${channelId}`);
      this.#dataOutput = output;
    },
    data: (piece) => {
      if (!this.#failure) this.#dataOutput?.receive(piece);
    },
  };

  #dispatch(frame: Frame): void {
    const { type, payload } = frame;
    if (type === FrameType.ERROR) {
      this.#fail(new AgentTransportError(`the agent reported an error: ${payload.toString('utf8')}`));
      return;
    }
    if (!this.#info) {
      if (type !== FrameType.HELLO || frame.channel !== 0) throw protocolError('a frame before the HELLO answer');
      this.#hello?.resolve(parseHello(payload));
      return;
    }
    if (frame.channel === 0) {
      if (type !== FrameType.PONG) throw protocolError(`frame type ${type} on channel 0`);
      const ping = this.#pings.get(payload.toString('hex'));
      ping?.resolve();
      return;
    }
    const channel = this.#channels.get(frame.channel);
    if (!channel) throw protocolError(`frame type ${type} for channel ${frame.channel}, which is not open`);
    switch (type) {
      case FrameType.DATA: {
        const output = channel.outputs.get(payload[0] ?? -1);
        if (!output) throw protocolError(`DATA on stream ${payload[0]} of a ${channel.spec.op} channel`);
        if (!output.receive(payload.subarray(1)))
          throw protocolError(`DATA beyond the window on stream ${payload[0]} of channel ${channel.id}`);
        return;
      }
      case FrameType.EOF: {
        const stream = payload[0] ?? -1;
        if (stream === StreamId.INPUT) channel.input?.close();
        else {
          const output = channel.outputs.get(stream);
          if (!output) throw protocolError(`EOF on stream ${stream} of a ${channel.spec.op} channel`);
          output.markEof(channel.spec.outputsEndAtEof);
        }
        return;
      }
      case FrameType.WINDOW: {
        if (payload.length !== 5 || payload[0] !== StreamId.INPUT || !channel.input)
          throw protocolError(`malformed WINDOW on channel ${channel.id}`);
        channel.input.grant(payload.readUInt32BE(1));
        return;
      }
      case FrameType.END:
        this.#channels.delete(channel.id);
        channel.end(parseOutcome(payload));
        return;
      default:
        throw protocolError(`frame type ${type} from the agent on channel ${channel.id}`);
    }
  }

  #lost(): void {
    this.#fail(new AgentTransportError(this.#shuttingDown ? 'the agent shut down' : 'the agent closed the connection'));
  }

  #fail(failure: AgentTransportError): void {
    if (this.#failure) return;
    this.#failure = failure;
    for (const channel of this.#channels.values()) channel.fail(failure);
    this.#channels.clear();
    for (const ping of this.#pings.values()) ping.reject(failure);
    this.#hello?.reject(failure);
    this.#wakeDrainWaiters();
    // Late errors of the dying streams have nowhere to go.
    this.#readable.on('error', () => {});
    this.#writable.on('error', () => {});
    this.#writable.end();
    this.#readable.destroy();
    this.#resolveClosed();
  }
}

/** What a file or archive stream may hold for a slow reader: bulk data keeps more in flight than a command's pipe. */
const BULK_WINDOW = 16 * INITIAL_WINDOW;

function fileSpec(op: string, path: string, streams: { input?: boolean; output?: boolean }): ChannelSpec {
  return {
    op,
    path,
    outputs: streams.output ? [StreamId.OUTPUT] : [],
    input: !!streams.input,
    outputsEndAtEof: false,
    outputWindow: BULK_WINDOW,
  };
}

/** What an archive operation's `ok` reports: how many entries and content bytes it moved. */
function archiveCounts(fields: Readonly<Record<string, string>>): { entries: number; bytes: number } {
  return { entries: Number(fields.entries ?? 0), bytes: Number(fields.bytes ?? 0) };
}

/** The `ok` fields of an outcome, or the AgentError it stands for. */
function expectOk(outcome: AgentOutcome, channel: AgentChannel): Readonly<Record<string, string>> {
  if (outcome.kind === 'ok') return outcome.fields;
  if (outcome.kind === 'error') throw outcomeError(outcome, channel.spec.op, channel.spec.path);
  throw new AgentTransportError(`protocol error: ${channel.spec.op} ended with ${outcome.kind}`);
}

function protocolError(what: string): AgentTransportError {
  return new AgentTransportError(`protocol error: ${what}`);
}

function parseHello(payload: Buffer): AgentInfo {
  const [greeting, ...rest] = decodeFields(payload);
  const match = /^execenv-agent (\d+)$/.exec(greeting ?? '');
  if (!match) throw protocolError(`unexpected HELLO ${JSON.stringify(greeting)}`);
  const protocol = Number(match[1]);
  if (protocol !== PROTOCOL_VERSION) throw protocolError(`the agent answered protocol ${protocol}`);
  const fields = keyValues(rest);
  return {
    version: fields.version ?? '',
    protocol,
    arch: fields.arch ?? '',
    pid: Number(fields.pid ?? 0),
    tree: fields.tree ?? '',
    fields,
  };
}

function parseMtime(text: string): Date {
  const [seconds = '0', nanos = '0'] = text.split('.');
  return new Date(Number(seconds) * 1000 + Math.floor(Number(nanos.padEnd(9, '0').slice(0, 9)) / 1e6));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
