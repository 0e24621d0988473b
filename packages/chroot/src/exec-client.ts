import { createConnection } from 'node:net';
import { constants } from 'node:os';
import { PassThrough, Writable } from 'node:stream';
import type { RunningProcess } from '@execenv/core';
import {
  type ExecRequest,
  FrameReader,
  frameHeader,
  requestFrame,
  STATUS,
  STDERR,
  STDIN,
  STDIN_END,
  STDOUT,
} from './exec-protocol.js';

/** Output each stream may hold for a slow reader before the command waits. */
const OUTPUT_BUFFER = 1 << 20;

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

type Exit = { exitCode: number | null; signal: string | null };

/** Turns the server's last frame ("exit N", "signal N" or "error MESSAGE") into the command's exit. */
export function parseStatus(status: string): Exit {
  const m = /^(exit|signal) (\d+)$/.exec(status);
  if (m?.[1] === 'exit') return { exitCode: Number(m[2]), signal: null };
  if (m?.[1] === 'signal') return { exitCode: null, signal: SIGNAL_NAMES.get(Number(m[2])) ?? `SIG${m[2]}` };
  throw new Error(status.startsWith('error ') ? status.slice(6) : `unexpected status from the exec server: ${status}`);
}

/**
 * Starts one command through an environment's exec server and returns it as
 * a RunningProcess, so the core's exec supervision applies unchanged.
 * Killing it closes the connection, on which the server kills the command's
 * whole namespace.
 */
export function connectExec(socketPath: string, request: ExecRequest): RunningProcess {
  const requestBytes = requestFrame(request);
  const socket = createConnection(socketPath);
  const stdout = new PassThrough({ highWaterMark: OUTPUT_BUFFER });
  const stderr = new PassThrough({ highWaterMark: OUTPUT_BUFFER });
  let status: string | undefined;
  let killed = false;
  let failure: Error | undefined;

  // Backpressure: a full output stream pauses the connection until it drains.
  const full = new Set<PassThrough>();
  const forward = (target: PassThrough, bytes: Buffer) => {
    if (target.write(bytes) || full.has(target)) return;
    full.add(target);
    socket.pause();
    target.once('drain', () => {
      full.delete(target);
      if (full.size === 0) socket.resume();
    });
  };
  let statusText = '';
  const reader = new FrameReader(
    (type, bytes) => {
      if (type === STDOUT) forward(stdout, bytes);
      else if (type === STDERR) forward(stderr, bytes);
      else if (type === STATUS) statusText += bytes.toString();
    },
    (type) => {
      if (type !== STATUS) return;
      status = statusText;
      socket.destroy();
    },
  );
  socket.on('data', (chunk: Buffer) => reader.feed(chunk));
  socket.on('error', (err) => {
    failure ??= err;
  });
  socket.write(requestBytes);

  const exited = new Promise<Exit>((resolve, reject) => {
    socket.once('close', () => {
      stdout.end();
      stderr.end();
      if (status !== undefined) {
        try {
          resolve(parseStatus(status));
        } catch (err) {
          reject(err);
        }
      } else if (killed) {
        resolve({ exitCode: null, signal: 'SIGKILL' });
      } else {
        reject(
          new Error(
            failure
              ? `cannot reach the environment's exec server at ${socketPath}: ${failure.message}`
              : `the environment's exec server at ${socketPath} closed the connection before the command ended`,
          ),
        );
      }
    });
  });

  const stdin = new Writable({
    write(chunk: Buffer, _encoding, done) {
      // A command that is gone takes no more input: dropped, as a closed pipe would.
      if (socket.destroyed || chunk.length === 0) return done();
      socket.cork();
      socket.write(frameHeader(STDIN, chunk.length));
      socket.write(chunk, () => done());
      socket.uncork();
    },
    final(done) {
      if (socket.destroyed) return done();
      socket.write(frameHeader(STDIN_END, 0), () => done());
    },
  });

  return {
    pid: undefined,
    stdin,
    stdout,
    stderr,
    kill() {
      if (socket.destroyed) return false;
      killed = true;
      socket.destroy();
      return true;
    },
    exited,
  };
}
