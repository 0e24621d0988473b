import { constants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import type WebSocket from 'ws';
import { LxdApiError, type LxdClient, type LxdOperation } from './lxd-client.js';

/** What `POST /1.0/instances/<name>/exec` is asked to run. */
export interface LxdExecRequest {
  command: readonly string[];
  environment: Readonly<Record<string, string>>;
  cwd: string;
  /** Numeric uid inside the instance. */
  user: number;
  /** Numeric gid inside the instance. */
  group: number;
  /** Whether standard input is connected (else it reads /dev/null-like EOF at once). */
  stdin: boolean;
}

/** The running command: streams, a signal sender and its end. */
export interface LxdExecProcess {
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Sends a signal through the control channel, which reaches only the first process. */
  kill(signal?: NodeJS.Signals): boolean;
  /** Resolves with the exit status; rejects when the daemon connection failed. */
  readonly exited: Promise<{ exitCode: number | null; signal: string | null }>;
  /** The operation id the daemon gave the command. */
  readonly operationId: string;
}

/** Numbers of the signals a 128+n exit status is read as. */
const SIGNALS = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n as number, name]));

/**
 * LXD reports a command killed by signal n as exit status 128+n, as a shell
 * does. Statuses 129..159 are read as that signal; everything else is an
 * exit code.
 */
export function exitOf(status: number): { exitCode: number | null; signal: string | null } {
  if (status > 128 && status < 160) {
    const name = SIGNALS.get(status - 128);
    if (name) return { exitCode: null, signal: name };
  }
  return { exitCode: status, signal: null };
}

/** An output websocket as a Readable that pauses the socket while the reader is behind. */
function outputStream(ws: WebSocket): Readable {
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      ws.resume();
    },
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    // A text message is LXD's end-of-stream marker on some versions; data comes as binary.
    if (!isBinary && data.length === 0) return;
    if (!out.push(data)) ws.pause();
  });
  ws.once('close', () => out.push(null));
  ws.once('error', (err) => out.destroy(err));
  return out;
}

/** Standard input as a Writable whose writes complete when the socket took them. */
function inputStream(ws: WebSocket): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, done) {
      if (ws.readyState !== ws.OPEN) return done();
      ws.send(chunk, { binary: true }, (err) => done(err ?? null));
    },
    final(done) {
      // A close frame is end-of-file for the command's stdin.
      if (ws.readyState === ws.OPEN) ws.close(1000);
      done();
    },
    destroy(err, done) {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
      done(err);
    },
  });
}

/**
 * Starts a command through the operations API: one websocket for each of
 * stdin, stdout and stderr, and one for control (signals). The exit status
 * comes from the finished operation.
 */
export async function startExec(
  client: LxdClient,
  instance: string,
  req: LxdExecRequest,
  signal?: AbortSignal,
): Promise<LxdExecProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(client, instance, req, signal);
    } catch (err) {
      // The daemon gives up on an exec whose websockets did not all connect in time (a loaded host):
      // the command never started, so it is started again.
      if (attempt >= 3 || !(err instanceof LxdApiError && /only running operations/i.test(err.message))) throw err;
    }
  }
}

async function startOnce(
  client: LxdClient,
  instance: string,
  req: LxdExecRequest,
  signal?: AbortSignal,
): Promise<LxdExecProcess> {
  const op = await client.call<LxdOperation>({
    method: 'POST',
    path: `/1.0/instances/${encodeURIComponent(instance)}/exec`,
    body: {
      command: req.command,
      environment: req.environment,
      'wait-for-websocket': true,
      interactive: false,
      'record-output': false,
      cwd: req.cwd,
      user: req.user,
      group: req.group,
    },
    signal,
  });
  const fds = (op.metadata?.fds ?? {}) as Record<string, string>;
  for (const fd of ['0', '1', '2', 'control'])
    if (!fds[fd]) throw new Error(`exec operation ${op.id} gave no websocket secret for ${fd}`);
  // Asked for at once, so the answer needs no round trip of its own once the command ends.
  const finished = client.call<LxdOperation>({
    method: 'GET',
    path: `/1.0/operations/${encodeURIComponent(op.id)}/wait`,
    query: { timeout: '-1' },
  });
  finished.catch(() => {});
  // Output streams are attached before the sockets connect: the command starts once all four are open.
  const outputs: Readable[] = [];
  // In the order LXD's own client connects: control, then the outputs, stdin last. Connected all at
  // once, the daemon (5.0) now and then starts the command before it holds the stdout socket,
  // and that output is lost.
  const sockets: WebSocket[] = [];
  const connect = async (secret: string, attach?: (ws: WebSocket) => void) => {
    const ws = await client.websocket(op.id, secret, attach);
    sockets.push(ws);
    return ws;
  };
  let control: WebSocket;
  let stdinWs: WebSocket;
  try {
    control = await connect(fds.control!);
    await connect(fds['1']!, (ws) => (outputs[0] = outputStream(ws)));
    await connect(fds['2']!, (ws) => (outputs[1] = outputStream(ws)));
    stdinWs = await connect(fds['0']!);
  } catch (err) {
    for (const ws of sockets) ws.terminate();
    throw err;
  }
  for (const ws of [control, stdinWs]) ws.on('error', () => {});
  const [stdout, stderr] = outputs as [Readable, Readable];
  const stdin = inputStream(stdinWs);
  if (!req.stdin) stdin.end();
  let ended = false;
  // "Command not found" (127) and "not executable" (126) fail the operation, but they are the command's results.
  const exited = finished
    .then((done) => {
      const status = (done.metadata as { return?: unknown } | null)?.return;
      if (typeof status !== 'number')
        throw new Error(`exec operation ${op.id} ended without an exit status: ${done.err || done.status}`);
      return exitOf(status);
    })
    .finally(() => {
      ended = true;
      control.close();
      if (stdinWs.readyState === stdinWs.OPEN) stdinWs.close();
    });
  return {
    pid: undefined,
    stdin,
    stdout,
    stderr,
    operationId: op.id,
    exited,
    kill(sig: NodeJS.Signals = 'SIGTERM') {
      if (ended || control.readyState !== control.OPEN) return false;
      const number = constants.signals[sig];
      control.send(JSON.stringify({ command: 'signal', args: null, signal: number }));
      return true;
    },
  };
}
