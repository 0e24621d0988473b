import { PassThrough } from 'node:stream';
import {
  decodeFields,
  encodeFields,
  encodeFrame,
  encodeWindow,
  type Frame,
  FrameDecoder,
  FrameType,
  type FrameTypeCode,
  INITIAL_WINDOW,
  StreamId,
} from '../src/frames.js';

/** What a scripted command can do: write output within the window, read stdin, learn of kills. */
export interface FakeCommandContext {
  argv: string[];
  env: string[];
  cwd: string;
  /** Sends bytes on stdout (1) or stderr (2), waiting for window as a real agent would. */
  write(stream: 1 | 2, bytes: Uint8Array | string): Promise<void>;
  /** Reads the next stdin chunk; undefined at EOF. Reading grants the client more window. */
  read(): Promise<Buffer | undefined>;
  /** Resolves when the client sends KILL or SIGNAL. */
  stopped: Promise<number>;
}

/** A scripted file operation: what it writes on stream 1 and its END fields. */
export interface FakeFileOp {
  /** Whether the operation reads stream 0 until EOF first. */
  input?: boolean;
  run(args: string[], input: Buffer): Promise<{ output?: Buffer; end: string[] }> | { output?: Buffer; end: string[] };
}

/** A scripted command: resolves with its exit status. */
export type FakeCommand = (ctx: FakeCommandContext) => Promise<number>;

class FakeChannel {
  readonly windows = new Map<number, number>([
    [1, INITIAL_WINDOW],
    [2, INITIAL_WINDOW],
  ]);
  readonly windowWaiters: (() => void)[] = [];
  inputWindow = INITIAL_WINDOW;
  readonly stdin: Buffer[] = [];
  stdinEof = false;
  stdinWaiter: (() => void) | undefined;
  stop!: (signal: number) => void;
  readonly stopped = new Promise<number>((resolve) => (this.stop = resolve));
  ended = false;
  /** Output streams the operation has, each of which gets an EOF before END. */
  outputs: number[] = [1, 2];
  constructor(readonly id: number) {}
}

/**
 * FakeAgent speaks the agent side of PROTOCOL.md over a pair of in-memory
 * streams: the handshake, exec of scripted commands with windows in both
 * directions, and the checks a real agent makes on the client.
 */
export class FakeAgent {
  /** Agent → client bytes: the session's readable. */
  readonly toClient = new PassThrough();
  /** Client → agent bytes: the session's writable. */
  readonly fromClient = new PassThrough();
  /** Protocol violations the client committed. */
  readonly violations: string[] = [];
  /** Every frame received, for assertions. */
  readonly frames: Frame[] = [];
  /** Largest DATA payload the client sent on stdin. */
  maxInputData = 0;
  /** Whether PING gets its PONG. */
  answerPings = true;
  readonly #decoder = new FrameDecoder();
  readonly #channels = new Map<number, FakeChannel>();
  readonly #commands: Record<string, FakeCommand>;
  readonly #fileOps: Record<string, FakeFileOp>;
  #greeted = false;

  constructor(commands: Record<string, FakeCommand> = {}, fileOps: Record<string, FakeFileOp> = {}) {
    this.#commands = { ...defaultCommands, ...commands };
    this.#fileOps = fileOps;
    this.fromClient.on('data', (chunk: Buffer) => {
      for (const frame of this.#decoder.push(chunk)) this.#handle({ ...frame, payload: Buffer.from(frame.payload) });
    });
  }

  /** Ends the connection abruptly, as a dying agent does. */
  die(): void {
    this.toClient.destroy();
    this.fromClient.destroy();
  }

  /** Sends a raw frame to the client. */
  send(type: FrameTypeCode, channel: number, ...payload: Uint8Array[]): void {
    if (!this.toClient.destroyed && !this.toClient.writableEnded)
      this.toClient.write(encodeFrame(type, channel, ...payload));
  }

  #violation(what: string): void {
    this.violations.push(what);
    this.send(FrameType.ERROR, 0, Buffer.from(what));
    this.toClient.end();
  }

  #handle(frame: Frame): void {
    this.frames.push(frame);
    if (!this.#greeted) {
      if (frame.type !== FrameType.HELLO) {
        this.#violation('frame before HELLO');
        return;
      }
      this.#greeted = true;
      this.send(
        FrameType.HELLO,
        0,
        encodeFields(['execenv-agent 1', 'arch=x86_64', 'pid=1', 'tree=subreaper', 'version=fake']),
      );
      return;
    }
    const channel = this.#channels.get(frame.channel);
    switch (frame.type) {
      case FrameType.PING:
        if (this.answerPings) this.send(FrameType.PONG, 0, frame.payload);
        return;
      case FrameType.OPEN:
        if (channel) {
          this.#violation(`OPEN of channel ${frame.channel} in use`);
          return;
        }
        this.#open(frame.channel, decodeFields(frame.payload));
        return;
      case FrameType.DATA: {
        if (!channel) return;
        const bytes = frame.payload.subarray(1);
        if (bytes.length > channel.inputWindow) {
          this.#violation(`stdin DATA beyond window on ${channel.id}`);
          return;
        }
        this.maxInputData = Math.max(this.maxInputData, bytes.length);
        channel.inputWindow -= bytes.length;
        channel.stdin.push(bytes);
        channel.stdinWaiter?.();
        return;
      }
      case FrameType.EOF:
        if (!channel) return;
        channel.stdinEof = true;
        channel.stdinWaiter?.();
        return;
      case FrameType.WINDOW: {
        if (!channel) return;
        const stream = frame.payload[0]!;
        channel.windows.set(stream, (channel.windows.get(stream) ?? 0) + frame.payload.readUInt32BE(1));
        for (const wake of channel.windowWaiters.splice(0)) wake();
        return;
      }
      case FrameType.KILL:
        channel?.stop(9);
        return;
      case FrameType.SIGNAL:
        channel?.stop(frame.payload[0]!);
        return;
      case FrameType.SHUTDOWN:
        for (const c of [...this.#channels.values()]) this.#end(c, ['signal', '9']);
        this.toClient.end();
        return;
      default:
        this.#violation(`unexpected frame type ${frame.type}`);
        return;
    }
  }

  #open(id: number, fields: string[]): void {
    const [op, ...args] = fields;
    const channel = new FakeChannel(id);
    this.#channels.set(id, channel);
    if (op !== 'exec') {
      const handler = this.#fileOps[op ?? ''];
      if (!handler) {
        this.#end(channel, ['error', 'INVALID', `the fake agent has no ${op}`]);
        return;
      }
      channel.outputs = ['read', 'readdir', 'tar-out'].includes(op ?? '') ? [1] : [];
      void this.#fileOp(channel, handler, args);
      return;
    }
    const [cwd = '', , , , count = '0', ...rest] = args;
    const env = rest.slice(0, Number(count));
    const argv = rest.slice(Number(count));
    if (cwd === '/missing') {
      this.#end(channel, ['error', 'NOT_FOUND', `${cwd}: No such file or directory`]);
      return;
    }
    const command = this.#commands[argv[0] ?? ''];
    const ctx: FakeCommandContext = {
      argv,
      env,
      cwd,
      write: (stream, bytes) => this.#write(channel, stream, Buffer.from(bytes)),
      read: () => this.#read(channel),
      stopped: channel.stopped,
    };
    const run = command
      ? command(ctx)
      : ctx.write(2, `execenv: cannot execute ${argv[0]}: No such file or directory\n`).then(() => 127);
    void Promise.race([run.then((code) => ['exit', String(code)]), channel.stopped.then((n) => ['signal', String(n)])])
      .then((end) => this.#end(channel, end))
      .catch((err) => this.#end(channel, ['error', 'IO', String(err)]));
  }

  /** Reads the whole input when the client sends one, then answers with the handler's output and END. */
  async #fileOp(channel: FakeChannel, handler: FakeFileOp, args: string[]): Promise<void> {
    void channel.stopped.then(() => this.#end(channel, ['error', 'IO', 'killed']));
    const input: Buffer[] = [];
    if (handler.input)
      for (let chunk = await this.#read(channel); chunk; chunk = await this.#read(channel)) input.push(chunk);
    if (channel.ended) return;
    const { output, end } = await handler.run(args, Buffer.concat(input));
    if (output) await this.#write(channel, 1, output);
    this.#end(channel, end);
  }

  async #write(channel: FakeChannel, stream: number, bytes: Buffer): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (channel.ended) return;
      const window = channel.windows.get(stream)!;
      if (window === 0) {
        await new Promise<void>((resolve) => channel.windowWaiters.push(resolve));
        continue;
      }
      const n = Math.min(window, bytes.length - offset, 65536);
      channel.windows.set(stream, window - n);
      this.send(FrameType.DATA, channel.id, Uint8Array.of(stream), bytes.subarray(offset, offset + n));
      offset += n;
    }
  }

  async #read(channel: FakeChannel): Promise<Buffer | undefined> {
    for (;;) {
      const chunk = channel.stdin.shift();
      if (chunk) {
        channel.inputWindow += chunk.length;
        this.send(FrameType.WINDOW, channel.id, encodeWindow(StreamId.INPUT, chunk.length));
        return chunk;
      }
      if (channel.stdinEof || channel.ended) return undefined;
      await new Promise<void>((resolve) => (channel.stdinWaiter = resolve));
      channel.stdinWaiter = undefined;
    }
  }

  #end(channel: FakeChannel, outcome: string[]): void {
    if (channel.ended) return;
    channel.ended = true;
    for (const wake of channel.windowWaiters.splice(0)) wake();
    channel.stdinWaiter?.();
    for (const stream of channel.outputs) this.send(FrameType.EOF, channel.id, Uint8Array.of(stream));
    this.send(FrameType.END, channel.id, encodeFields(outcome));
    this.#channels.delete(channel.id);
  }
}

const never = new Promise<number>(() => {});

const defaultCommands: Record<string, FakeCommand> = {
  echo: async (ctx) => {
    await ctx.write(1, `${ctx.argv.slice(1).join(' ')}\n`);
    return 0;
  },
  /** `exit N`: ends with status N. */
  exit: async (ctx) => Number(ctx.argv[1]),
  /** `produce N`: N bytes of stdout. */
  produce: async (ctx) => {
    await ctx.write(1, Buffer.alloc(Number(ctx.argv[1]), 0x61));
    return 0;
  },
  /** `cat`: stdin to stdout. */
  cat: async (ctx) => {
    for (let chunk = await ctx.read(); chunk; chunk = await ctx.read()) await ctx.write(1, chunk);
    return 0;
  },
  /** `count`: the number of stdin bytes, read slowly. */
  count: async (ctx) => {
    let total = 0;
    for (let chunk = await ctx.read(); chunk; chunk = await ctx.read()) {
      total += chunk.length;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await ctx.write(1, String(total));
    return 0;
  },
  /** `sleep`: runs until stopped. */
  sleep: () => never,
};
