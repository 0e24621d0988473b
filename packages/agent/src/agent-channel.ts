import { Readable, Writable } from 'node:stream';
import { type AgentOutcome, outcomeError } from './agent-outcome.js';
import { INITIAL_WINDOW, MAX_PAYLOAD, StreamId } from './frames.js';

/** What a channel needs from its session to put frames on the wire. */
export interface ChannelLink {
  /** Sends DATA on the channel's input stream; false when the transport wants a drain. */
  sendData(channel: number, bytes: Uint8Array): boolean;
  /** Sends EOF on the channel's input stream. */
  sendEof(channel: number): void;
  /** Grants the agent `increment` more bytes on an output stream. */
  sendWindow(channel: number, stream: number, increment: number): void;
  /** Resolves once the transport has drained, or is gone. */
  drained(): Promise<void>;
}

/** How one channel's streams behave. */
export interface ChannelSpec {
  /** Operation name, for errors. */
  op: string;
  /** The path the operation is about, for errors. */
  path?: string;
  /** Output stream ids the operation has (1, and 2 for exec). */
  outputs: readonly number[];
  /** Whether the operation reads stream 0. */
  input: boolean;
  /**
   * End outputs at their EOF (a command's pipes) rather than at a successful
   * END (file content, whose truncation must surface as an error).
   */
  outputsEndAtEof: boolean;
  /**
   * Bytes each output may hold for a slow reader. Above the protocol's
   * initial window the rest is granted as the channel opens: bulk transfers
   * keep more in flight, so the agent rarely waits for a grant.
   * @default INITIAL_WINDOW
   */
  outputWindow?: number;
}

// Largest DATA payload sent: the frame limit less the stream byte.
const MAX_DATA = MAX_PAYLOAD - 1;

/**
 * WindowedOutput is an output stream of a channel: it holds at most the
 * window the agent was granted, and grants more only as the application
 * reads data out, so a slow reader bounds memory and stalls only its own
 * command.
 */
export class WindowedOutput extends Readable {
  readonly #grant: (increment: number) => void;
  readonly #step: number;
  /** Bytes the agent may still send. */
  #window = INITIAL_WINDOW;
  #pushed = 0;
  #granted = 0;
  #eof = false;

  /** @param capacity what the reader may leave unread; at least INITIAL_WINDOW. */
  constructor(grant: (increment: number) => void, capacity = INITIAL_WINDOW) {
    super({ highWaterMark: Math.max(capacity, INITIAL_WINDOW) });
    this.#grant = grant;
    this.#step = Math.max(capacity, INITIAL_WINDOW) / 4;
  }

  /** Grants the agent the part of the capacity above the initial window; called once the channel is open. */
  widen(): void {
    const extra = this.readableHighWaterMark - INITIAL_WINDOW;
    if (extra <= 0) return;
    this.#window += extra;
    this.#grant(extra);
  }

  /** Bytes the agent may still send on this stream. */
  get window(): number {
    return this.#window;
  }

  /** Whether the agent has sent EOF on this stream. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Accepts DATA from the agent; false when it exceeds the window or follows EOF (a protocol error). */
  receive(bytes: Buffer): boolean {
    if (bytes.length > this.#window || this.#eof) return false;
    this.#window -= bytes.length;
    this.#pushed += bytes.length;
    if (this.destroyed) this.#grantConsumed(true);
    else {
      this.push(bytes);
      this.#grantConsumed(false);
    }
    return true;
  }

  /** Records the agent's EOF; `end` also ends the stream for the reader. */
  markEof(end: boolean): void {
    this.#eof = true;
    if (end) this.finish();
  }

  /** Ends the stream for the reader once it has read what is buffered. */
  finish(): void {
    if (!this.readableEnded && !this.destroyed) this.push(null);
  }

  override read(size?: number): unknown {
    const chunk = super.read(size);
    this.#grantConsumed(false);
    return chunk;
  }

  override _read(): void {
    // Data is pushed as frames arrive; reading is tracked in read().
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Nobody will read what is left: let the agent go on.
    this.#grantConsumed(true);
    callback(error);
  }

  /** Grants what the reader has consumed, in GRANT_STEP steps unless `all`. */
  #grantConsumed(all: boolean): void {
    if (this.#eof) return;
    const consumed = all ? this.#pushed : this.#pushed - this.readableLength;
    const owed = consumed - this.#granted;
    if (owed <= 0 || (!all && owed < this.#step)) return;
    this.#granted += owed;
    this.#window += owed;
    this.#grant(owed);
  }
}

/**
 * WindowedInput is the input stream of a channel: a write completes only once
 * the agent's window has taken all of it, so at most a window is ever in
 * flight. After the channel ends, writes are discarded, as the agent ignores
 * them.
 */
export class WindowedInput extends Writable {
  readonly #channel: number;
  readonly #link: ChannelLink;
  #window = INITIAL_WINDOW;
  #wake: (() => void) | undefined;
  #closed = false;
  #eofSent = false;

  constructor(channel: number, link: ChannelLink) {
    super({ highWaterMark: 1 << 16 });
    this.#channel = channel;
    this.#link = link;
  }

  /** Adds the agent's WINDOW increment. */
  grant(increment: number): void {
    this.#window += increment;
    this.#wakeWriter();
  }

  /** Stops sending: the channel has ended or the session is gone. */
  close(): void {
    this.#closed = true;
    this.#wakeWriter();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#send(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#sendEof();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A destroyed stdin is a closed pipe for the command.
    this.#sendEof();
    this.#wakeWriter();
    callback(error);
  }

  async #send(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length && !this.#closed) {
      if (this.#window === 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      const n = Math.min(this.#window, chunk.length - offset, MAX_DATA);
      this.#window -= n;
      const flowing = this.#link.sendData(this.#channel, chunk.subarray(offset, offset + n));
      offset += n;
      if (!flowing) await this.#link.drained();
    }
  }

  #sendEof(): void {
    if (this.#eofSent || this.#closed) return;
    this.#eofSent = true;
    this.#link.sendEof(this.#channel);
  }

  #wakeWriter(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/**
 * AgentChannel is one operation of a session: its streams and its outcome.
 * The session routes frames to it and settles it with END or a transport
 * failure.
 */
export class AgentChannel {
  /** Channel id in the session. */
  readonly id: number;
  /** How the channel's streams behave. */
  readonly spec: ChannelSpec;
  /** Output streams by stream id. */
  readonly outputs = new Map<number, WindowedOutput>();
  /** The input stream, when the operation has one. */
  readonly input: WindowedInput | undefined;
  /** Settles with the END outcome, or rejects when the session is lost. */
  readonly outcome: Promise<AgentOutcome>;
  #settle!: (outcome: AgentOutcome) => void;
  #reject!: (error: Error) => void;
  #ended = false;

  constructor(id: number, spec: ChannelSpec, link: ChannelLink) {
    this.id = id;
    this.spec = spec;
    this.outcome = new Promise<AgentOutcome>((resolve, reject) => {
      this.#settle = resolve;
      this.#reject = reject;
    });
    // Callers attach their own handlers; this one only keeps an unobserved failure from crashing the process.
    this.outcome.catch(() => {});
    for (const stream of spec.outputs)
      this.outputs.set(
        stream,
        new WindowedOutput((increment) => link.sendWindow(id, stream, increment), spec.outputWindow),
      );
    this.input = spec.input ? new WindowedInput(id, link) : undefined;
  }

  /** Whether END (or a failure) has settled the channel. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The output stream `stream`; stdout/content is StreamId.OUTPUT. */
  output(stream: number = StreamId.OUTPUT): WindowedOutput {
    return this.outputs.get(stream)!;
  }

  /** Settles the channel with the agent's END. */
  end(outcome: AgentOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    this.input?.close();
    for (const output of this.outputs.values()) {
      if (outcome.kind !== 'error' || this.spec.outputsEndAtEof) output.finish();
      else output.destroy(outcomeError(outcome, this.spec.op, this.spec.path));
    }
    this.#settle(outcome);
  }

  /** Fails the channel because the session is gone. */
  fail(error: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.input?.close();
    for (const output of this.outputs.values()) {
      if (this.spec.outputsEndAtEof) output.finish();
      else output.destroy(error);
    }
    this.#reject(error);
  }
}
