import { AgentTransportError } from './agent-errors.js';

/**
 * The protocol version this client speaks (PROTOCOL.md, Handshake).
 *
 * @example
 * ```ts
 * import { AgentSession, PROTOCOL_VERSION } from '@execenv/agent';
 *
 * const session = await AgentSession.connect('/run/execenv/env-1/agent.sock');
 * session.info.protocol === PROTOCOL_VERSION; // true: the handshake refuses any other version
 * ```
 */
export const PROTOCOL_VERSION = 1;

/** The HELLO greeting both sides open with. */
export const HELLO_GREETING = `execenv-agent ${PROTOCOL_VERSION}`;

/**
 * Size of a frame header: length (4), channel (4), type (1).
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType, HEADER_SIZE } from '@execenv/agent';
 *
 * const frame = encodeFrame(FrameType.PING, 0, Buffer.from('hi'));
 * frame.length === HEADER_SIZE + 2; // true
 * frame.subarray(HEADER_SIZE).toString(); // 'hi'
 * ```
 */
export const HEADER_SIZE = 9;

/**
 * Largest payload a frame may carry: 1 MiB.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType, MAX_PAYLOAD, StreamId } from '@execenv/agent';
 *
 * // A DATA payload is the stream byte, then the bytes: at most MAX_PAYLOAD - 1 of them per frame.
 * const part = data.subarray(0, Math.min(MAX_PAYLOAD - 1, window));
 * socket.write(encodeFrame(FrameType.DATA, channel, Uint8Array.of(StreamId.INPUT), part));
 * ```
 */
export const MAX_PAYLOAD = 1 << 20;

/**
 * Window each stream starts with, in each direction.
 *
 * @example
 * ```ts
 * import { FrameType, INITIAL_WINDOW, StreamId } from '@execenv/agent';
 *
 * let stdinWindow = INITIAL_WINDOW; // what the client may send on stream 0 of a new channel
 * for (const frame of decoder.push(chunk))
 *   if (frame.type === FrameType.WINDOW && frame.payload[0] === StreamId.INPUT)
 *     stdinWindow += frame.payload.readUInt32BE(1);
 * ```
 */
export const INITIAL_WINDOW = 262144;

/**
 * Frame types of protocol version 1.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType } from '@execenv/agent';
 *
 * socket.write(encodeFrame(FrameType.HELLO, 0, Buffer.from('execenv-agent 1')));
 * for (const frame of decoder.push(chunk))
 *   if (frame.type === FrameType.ERROR) console.error(`agent: ${frame.payload.toString('utf8')}`);
 * ```
 */
export const FrameType = {
  HELLO: 0x01,
  OPEN: 0x02,
  DATA: 0x03,
  EOF: 0x04,
  WINDOW: 0x05,
  SIGNAL: 0x06,
  KILL: 0x07,
  END: 0x08,
  PING: 0x09,
  PONG: 0x0a,
  SHUTDOWN: 0x0b,
  ERROR: 0x0c,
} as const;

/**
 * One of the FrameType values.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType, type FrameTypeCode } from '@execenv/agent';
 *
 * const control = (type: FrameTypeCode, channel: number) => socket.write(encodeFrame(type, channel));
 * control(FrameType.KILL, 3); // kill channel 3's operation and its whole process tree
 * ```
 */
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

/**
 * Stream ids within a channel.
 *
 * @example
 * ```ts
 * import { FrameType, StreamId } from '@execenv/agent';
 *
 * for (const frame of decoder.push(chunk)) {
 *   if (frame.type !== FrameType.DATA) continue;
 *   const target = frame.payload[0] === StreamId.STDERR ? process.stderr : process.stdout;
 *   target.write(frame.payload.subarray(1));
 * }
 * ```
 */
export const StreamId = {
  /** Client → agent: stdin, a write's content, a tar-in's archive. */
  INPUT: 0,
  /** Agent → client: stdout, a read's content, readdir names, a tar-out's archive. */
  OUTPUT: 1,
  /** Agent → client: a command's stderr. */
  STDERR: 2,
} as const;

/**
 * One decoded frame.
 *
 * @example
 * ```ts
 * import { type Frame, FrameType } from '@execenv/agent';
 *
 * const ends: Frame[] = [];
 * for (const frame of decoder.push(chunk))
 *   // The payload is a view into the received bytes: copy it to keep the frame.
 *   if (frame.type === FrameType.END) ends.push({ ...frame, payload: Buffer.from(frame.payload) });
 * ```
 */
export interface Frame {
  /** Channel id; 0 is the session itself. */
  channel: number;
  /** Frame type. */
  type: FrameTypeCode;
  /** Payload bytes (a view into the received data; copy before keeping it past the next read). */
  payload: Buffer;
}

/**
 * FrameSink receives what FrameDecoder.feed decodes: DATA payloads as they
 * arrive, every other frame whole.
 *
 * @example
 * ```ts
 * import { FrameDecoder, type FrameSink } from '@execenv/agent';
 *
 * const sink: FrameSink = {
 *   frame: (f) => console.log('frame', f.type, f.channel),
 *   dataStart: (channel, stream, length) => console.log(`DATA: ${length} bytes on ${channel}/${stream}`),
 *   data: (piece) => process.stdout.write(piece),
 * };
 * socket.on('data', (chunk: Buffer) => decoder.feed(chunk, sink));
 * ```
 */
export interface FrameSink {
  /** A whole frame other than a non-empty DATA. */
  frame(frame: Frame): void;
  /** A DATA frame begins: `length` bytes follow for `stream` of `channel` (the stream id excluded). */
  dataStart(channel: number, stream: number, length: number): void;
  /** The next bytes of the DATA frame last begun (a view into the received data). */
  data(piece: Buffer): void;
}

const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

/**
 * encodeFrame builds one frame from its parts.
 * @throws RangeError when the payload exceeds MAX_PAYLOAD.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType } from '@execenv/agent';
 *
 * // OPEN channel 1: stat /etc/passwd, following symlinks; every field is NUL-terminated.
 * const fields = ['stat', '/etc/passwd', '1'].map((f) => `${f}\0`).join('');
 * socket.write(encodeFrame(FrameType.OPEN, 1, Buffer.from(fields)));
 * ```
 */
export function encodeFrame(type: FrameTypeCode, channel: number, ...payload: Uint8Array[]): Buffer {
  const length = payload.reduce((sum, part) => sum + part.length, 0);
  if (length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${length} bytes exceeds ${MAX_PAYLOAD}`);
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32BE(length, 0);
  header.writeUInt32BE(channel >>> 0, 4);
  header.writeUInt8(type, 8);
  return Buffer.concat([header, ...payload], HEADER_SIZE + length);
}

/** encodeFields joins strings as NUL-terminated UTF-8 fields (OPEN, END and HELLO payloads). */
export function encodeFields(fields: readonly string[]): Buffer {
  return Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
}

/** decodeFields splits a payload of NUL-terminated UTF-8 fields; a missing final NUL is tolerated. */
export function decodeFields(payload: Uint8Array): string[] {
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8');
  const fields = text.split('\0');
  if (fields.at(-1) === '') fields.pop();
  return fields;
}

/** encodeWindow builds a WINDOW payload granting `increment` more bytes on `stream`. */
export function encodeWindow(stream: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(5);
  payload.writeUInt8(stream, 0);
  payload.writeUInt32BE(increment, 1);
  return payload;
}

/**
 * FrameDecoder turns a byte stream into frames, whatever the chunking: a
 * frame may arrive split anywhere, several may arrive in one chunk.
 *
 * @example
 * ```ts
 * import { createConnection } from 'node:net';
 * import { encodeFrame, FrameDecoder, FrameType } from '@execenv/agent';
 *
 * const socket = createConnection('/run/execenv/env-1/agent.sock');
 * const decoder = new FrameDecoder(); // frames may arrive split anywhere, or several in one chunk
 * socket.on('data', (chunk: Buffer) => {
 *   for (const frame of decoder.push(chunk)) console.log(frame.type, frame.channel, frame.payload.length);
 * });
 * socket.write(encodeFrame(FrameType.HELLO, 0, Buffer.from('execenv-agent 1')));
 * ```
 */
export class FrameDecoder {
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #maxPayload: number;
  /** The DATA frame whose bytes feed() is handing on. */
  #data: { channel: number; stream: number; remaining: number } | undefined;

  /** @param maxPayload largest payload accepted; MAX_PAYLOAD unless a test wants less. */
  constructor(maxPayload = MAX_PAYLOAD) {
    this.#maxPayload = maxPayload;
  }

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Adds received bytes and returns the frames they complete.
   * @throws AgentTransportError on an oversize payload or an unknown frame type;
   *   the stream cannot be resynchronised after that.
   */
  push(chunk: Uint8Array): Frame[] {
    if (chunk.length === 0) return [];
    this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#buffered < HEADER_SIZE) break;
      const { length, type } = this.#header();
      if (this.#buffered < HEADER_SIZE + length) break;
      const frame = this.#take(HEADER_SIZE + length);
      frames.push({
        channel: frame.readUInt32BE(4),
        type: type as FrameTypeCode,
        payload: frame.subarray(HEADER_SIZE),
      });
    }
    return frames;
  }

  /**
   * Adds received bytes like push, but hands DATA payloads on as they
   * arrive, piece by piece, as views of the received bytes: a bulk transfer
   * is never joined into whole frames. Every other frame goes to
   * `sink.frame` whole. Use either push or feed on one decoder, not both.
   * @throws AgentTransportError as push does.
   */
  feed(chunk: Uint8Array, sink: FrameSink): void {
    if (chunk.length > 0) {
      this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.#buffered += chunk.length;
    }
    for (;;) {
      const data = this.#data;
      if (data) {
        if (this.#buffered === 0) return;
        const piece = this.#take(Math.min(this.#chunks[0]!.length, data.remaining));
        data.remaining -= piece.length;
        if (data.remaining === 0) this.#data = undefined;
        sink.data(piece);
        continue;
      }
      if (this.#buffered < HEADER_SIZE) return;
      const { length, type, channel } = this.#header();
      if (type === FrameType.DATA && length > 0) {
        if (this.#buffered < HEADER_SIZE + 1) return;
        const stream = this.#take(HEADER_SIZE + 1)[HEADER_SIZE]!;
        if (length > 1) this.#data = { channel, stream, remaining: length - 1 };
        sink.dataStart(channel, stream, length - 1);
        continue;
      }
      if (this.#buffered < HEADER_SIZE + length) return;
      const frame = this.#take(HEADER_SIZE + length);
      sink.frame({ channel, type: type as FrameTypeCode, payload: frame.subarray(HEADER_SIZE) });
    }
  }

  /** The buffered frame header, checked. */
  #header(): { length: number; type: number; channel: number } {
    const header = this.#peek(HEADER_SIZE);
    const length = header.readUInt32BE(0);
    const type = header.readUInt8(8);
    if (length > this.#maxPayload)
      throw new AgentTransportError(`protocol error: frame payload of ${length} bytes exceeds ${this.#maxPayload}`);
    if (!KNOWN_TYPES.has(type)) throw new AgentTransportError(`protocol error: unknown frame type 0x${hex(type)}`);
    return { length, type, channel: header.readUInt32BE(4) };
  }

  /** The first n buffered bytes, joining chunks only as far as needed. */
  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first;
    this.#compact(n);
    return this.#chunks[0]!;
  }

  /** Removes and returns the first n buffered bytes. */
  #take(n: number): Buffer {
    this.#compact(n);
    const first = this.#chunks[0]!;
    this.#buffered -= n;
    if (first.length === n) {
      this.#chunks.shift();
      return first;
    }
    this.#chunks[0] = first.subarray(n);
    return first.subarray(0, n);
  }

  /** Makes the first chunk at least n bytes long. */
  #compact(n: number): void {
    if (this.#chunks[0]!.length >= n) return;
    let count = 0;
    let size = 0;
    while (size < n) size += this.#chunks[count++]!.length;
    // One splice rather than a shift per chunk: a large frame may arrive in many small reads.
    const parts = this.#chunks.splice(0, count, Buffer.alloc(0));
    // Only n bytes are copied: what follows them in the last part stays a view of it.
    const last = parts[count - 1]!;
    const rest = size - n;
    if (rest > 0) parts[count - 1] = last.subarray(0, last.length - rest);
    this.#chunks[0] = Buffer.concat(parts, n);
    if (rest > 0) this.#chunks.splice(1, 0, last.subarray(last.length - rest));
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}
