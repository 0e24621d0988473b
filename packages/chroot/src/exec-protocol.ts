/**
 * The frames spoken on an exec server connection (see
 * native/execenv-exec-server.c): `[type:1][length:4, big endian][payload]`.
 */

/** Frame types the client sends. */
export const REQUEST = 0x52; // 'R'
export const STDIN = 0x49; // 'I'
export const STDIN_END = 0x45; // 'E'
/** Frame types the server sends. */
export const STDOUT = 0x31; // '1'
export const STDERR = 0x32; // '2'
export const STATUS = 0x58; // 'X'

const HEAD = 5;

/** The header of a frame of `type` carrying `length` bytes. */
export function frameHeader(type: number, length: number): Buffer {
  const head = Buffer.allocUnsafe(HEAD);
  head[0] = type;
  head.writeUInt32BE(length, 1);
  return head;
}

/** What the server needs to start one command. */
export interface ExecRequest {
  cwd: string;
  uid: number;
  gid: number;
  groups: readonly number[];
  /** The command's whole environment. */
  env: Readonly<Record<string, string>>;
  argv: readonly string[];
}

/** Encodes a request as its 'R' frame: NUL-terminated fields. */
export function requestFrame(req: ExecRequest): Buffer {
  const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
  const fields = [
    req.cwd,
    String(req.uid),
    String(req.gid),
    req.groups.join(','),
    String(env.length),
    ...env,
    ...req.argv,
  ];
  // A NUL inside a field would shift every field after it; the core refuses them, this keeps it so.
  if (fields.some((f) => f.includes('\0'))) throw new Error('exec request fields must not contain NUL bytes');
  const payload = Buffer.from(fields.map((f) => `${f}\0`).join(''));
  return Buffer.concat([frameHeader(REQUEST, payload.length), payload]);
}

/**
 * Splits a byte stream into frames without copying payloads: each piece of
 * a payload is handed on as it arrives, so a frame may come in several calls.
 */
export class FrameReader {
  readonly #head = Buffer.alloc(HEAD);
  #headLength = 0;
  #type = 0;
  #left = 0;

  constructor(
    private readonly onPayload: (type: number, bytes: Buffer) => void,
    private readonly onFrameEnd: (type: number) => void = () => {},
  ) {}

  /** Consumes one chunk of the stream. */
  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#left === 0) {
        const n = Math.min(HEAD - this.#headLength, chunk.length - pos);
        chunk.copy(this.#head, this.#headLength, pos, pos + n);
        this.#headLength += n;
        pos += n;
        if (this.#headLength < HEAD) return;
        this.#headLength = 0;
        this.#type = this.#head[0]!;
        this.#left = this.#head.readUInt32BE(1);
        if (this.#left === 0) this.onFrameEnd(this.#type);
        continue;
      }
      const n = Math.min(this.#left, chunk.length - pos);
      this.onPayload(this.#type, chunk.subarray(pos, pos + n));
      this.#left -= n;
      pos += n;
      if (this.#left === 0) this.onFrameEnd(this.#type);
    }
  }
}
