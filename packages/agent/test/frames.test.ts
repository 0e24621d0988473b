import { describe, expect, it } from 'vitest';
import { AgentTransportError } from '../src/agent-errors.js';
import {
  decodeFields,
  encodeFields,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameSink,
  FrameType,
  HEADER_SIZE,
  MAX_PAYLOAD,
} from '../src/frames.js';

function summary(frames: Frame[]) {
  return frames.map((f) => ({ channel: f.channel, type: f.type, payload: f.payload.toString('hex') }));
}

const sample = [
  encodeFrame(FrameType.HELLO, 0, Buffer.from('execenv-agent 1')),
  encodeFrame(FrameType.DATA, 1, Uint8Array.of(1), Buffer.from('out of one')),
  encodeFrame(FrameType.DATA, 2, Uint8Array.of(2), Buffer.from('err of two')),
  encodeFrame(FrameType.EOF, 1, Uint8Array.of(1)),
  encodeFrame(FrameType.KILL, 7),
  encodeFrame(FrameType.DATA, 2, Uint8Array.of(1), Buffer.alloc(70000, 7)),
  encodeFrame(FrameType.END, 0xfffffffe, encodeFields(['exit', '0'])),
];
const stream = Buffer.concat(sample);

/** What feed() hands on, with DATA pieces joined back per frame, in the form summary() gives. */
function fed(decoder: FrameDecoder, chunks: Buffer[]) {
  const out: { channel: number; type: number; payload: string }[] = [];
  const pieces: { piece: Buffer; chunk: Buffer }[] = [];
  let open: { channel: number; parts: Buffer[]; left: number } | undefined;
  let chunk: Buffer = Buffer.alloc(0);
  const close = () => {
    out.push({ channel: open!.channel, type: FrameType.DATA, payload: Buffer.concat(open!.parts).toString('hex') });
    open = undefined;
  };
  const sink: FrameSink = {
    frame: (f) => out.push({ channel: f.channel, type: f.type, payload: f.payload.toString('hex') }),
    dataStart: (channel, streamId, length) => {
      open = { channel, parts: [Buffer.of(streamId)], left: length };
      if (length === 0) close();
    },
    data: (piece) => {
      pieces.push({ piece, chunk });
      open!.parts.push(piece);
      open!.left -= piece.length;
      if (open!.left === 0) close();
    },
  };
  for (chunk of chunks) decoder.feed(chunk, sink);
  return { out, pieces };
}

describe('frames', () => {
  it('encodes the header as PROTOCOL.md lays it out', () => {
    const frame = encodeFrame(FrameType.WINDOW, 0x01020304, Uint8Array.of(9, 8));
    expect(frame.toString('hex')).toBe('00000002' + '01020304' + '05' + '0908');
  });

  it('decodes frames fed byte by byte', () => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (const byte of stream) frames.push(...decoder.push(Uint8Array.of(byte)));
    expect(summary(frames)).toEqual(summary(new FrameDecoder().push(stream)));
    expect(frames.map((f) => f.channel)).toEqual([0, 1, 2, 1, 7, 2, 0xfffffffe]);
    expect(frames[5]!.payload.length).toBe(70001);
    expect(decoder.buffered).toBe(0);
  });

  it('decodes whatever the split point', () => {
    const whole = summary(new FrameDecoder().push(stream));
    for (let cut = 1; cut < 200; cut++) {
      const decoder = new FrameDecoder();
      const frames = [...decoder.push(stream.subarray(0, cut)), ...decoder.push(stream.subarray(cut))];
      expect(summary(frames)).toEqual(whole);
    }
    for (let size = 2; size < 40000; size += 997) {
      const decoder = new FrameDecoder();
      const frames: Frame[] = [];
      for (let at = 0; at < stream.length; at += size) frames.push(...decoder.push(stream.subarray(at, at + size)));
      expect(summary(frames)).toEqual(whole);
    }
  });

  it('feeds DATA on piece by piece, as views of the received chunks, whatever the split point', () => {
    const whole = summary(new FrameDecoder().push(stream));
    for (const size of [1, 7, 9, 10, 64, 997, 4096, 65536, stream.length]) {
      // Chunks of their own, as a socket delivers them, not views into one buffer.
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(Buffer.from(stream.subarray(at, at + size)));
      const decoder = new FrameDecoder();
      const { out, pieces } = fed(decoder, chunks);
      expect(out).toEqual(whole);
      expect(decoder.buffered).toBe(0);
      // The 70000 bytes of the large DATA frame are never copied: each piece lies in the chunk it arrived in.
      const bulk = pieces.filter((p) => p.piece.length > 0 && p.piece[0] === 7 && p.piece.at(-1) === 7);
      expect(bulk.reduce((n, p) => n + p.piece.length, 0)).toBe(70000);
      for (const p of bulk) expect(p.piece.buffer).toBe(p.chunk.buffer);
    }
  });

  it('checks headers in feed as in push', () => {
    const sink: FrameSink = { frame: () => {}, dataStart: () => {}, data: () => {} };
    const oversize = Buffer.alloc(HEADER_SIZE);
    oversize.writeUInt32BE(MAX_PAYLOAD + 1, 0);
    oversize.writeUInt8(FrameType.DATA, 8);
    expect(() => new FrameDecoder().feed(oversize, sink)).toThrow(AgentTransportError);
    expect(() => new FrameDecoder().feed(Buffer.from('000000000000000077', 'hex'), sink)).toThrow(/unknown frame type/);
  });

  it('keeps channels of interleaved frames apart', () => {
    const decoder = new FrameDecoder();
    const parts = [1, 2, 1, 3, 2, 1].map((ch, i) =>
      encodeFrame(FrameType.DATA, ch, Uint8Array.of(1), Buffer.from(`c${ch}-${i}`)),
    );
    const byChannel = new Map<number, string[]>();
    for (const f of decoder.push(Buffer.concat(parts))) {
      byChannel.set(f.channel, [...(byChannel.get(f.channel) ?? []), f.payload.subarray(1).toString()]);
    }
    expect(Object.fromEntries(byChannel)).toEqual({ 1: ['c1-0', 'c1-2', 'c1-5'], 2: ['c2-1', 'c2-4'], 3: ['c3-3'] });
  });

  it('accepts a payload of exactly 1 MiB and rejects a longer one', () => {
    const max = encodeFrame(FrameType.DATA, 1, Buffer.alloc(MAX_PAYLOAD));
    expect(new FrameDecoder().push(max)[0]!.payload.length).toBe(MAX_PAYLOAD);
    expect(() => encodeFrame(FrameType.DATA, 1, Buffer.alloc(MAX_PAYLOAD + 1))).toThrow(RangeError);
    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 0);
    header.writeUInt32BE(1, 4);
    header.writeUInt8(FrameType.DATA, 8);
    // Rejected as soon as the header is in, before any payload arrives.
    expect(() => new FrameDecoder().push(header)).toThrow(AgentTransportError);
  });

  it('rejects an unknown frame type', () => {
    const frame = encodeFrame(FrameType.DATA, 1);
    frame[8] = 0x7f;
    expect(() => new FrameDecoder().push(frame)).toThrow(/unknown frame type 0x7f/);
  });

  it('round-trips NUL-terminated fields', () => {
    expect(decodeFields(encodeFields(['exec', '/', 'ä b', '']))).toEqual(['exec', '/', 'ä b', '']);
    expect(decodeFields(Buffer.from('ok\0size=3'))).toEqual(['ok', 'size=3']);
  });
});
