import { createConnection, type Socket } from 'node:net';
import { ExecenvError } from '@execenv/core';

/**
 * An asynchronous event QEMU sent, such as SHUTDOWN or STOP.
 *
 * @example
 * ```ts
 * import { QmpClient, type QmpEvent } from '@execenv/qemu';
 * const qmp = await QmpClient.connect('/run/execenv/vm/qmp.sock');
 * const stop = qmp.onEvent((e: QmpEvent) => {
 *   if (e.event === 'SHUTDOWN') console.log('guest shut down', e.data?.reason);
 * });
 * console.log(qmp.events.map((e) => e.event)); // what came before, oldest first
 * ```
 */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

/**
 * QmpClient speaks the QEMU Machine Protocol on a unix socket: one JSON
 * object per line; the greeting and capability negotiation on connect, then
 * commands answered by id, and events in between.
 *
 * @example
 * ```ts
 * import { QmpClient } from '@execenv/qemu';
 * const qmp = await QmpClient.connect('/run/execenv/vm/qmp.sock'); // ExecenvError TRANSPORT when QEMU does not answer
 * try {
 *   console.log(await qmp.execute('query-status')); // { status: 'running', running: true, ... }
 *   await qmp.execute('quit');
 * } finally {
 *   qmp.close();
 * }
 * ```
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #pending = new Map<string, Pending>();
  readonly #events: QmpEvent[] = [];
  readonly #listeners = new Set<(event: QmpEvent) => void>();
  #buffer = '';
  #nextId = 0;
  #closed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#receive(chunk));
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#fail(new Error('the QMP connection closed')));
  }

  /**
   * Connects to a unix socket, reads the greeting and leaves negotiation mode.
   * @throws ExecenvError TRANSPORT when the socket refuses or the greeting does not come within `timeoutMs`.
   */
  static connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    return QmpClient.over(createConnection(path), timeoutMs, path);
  }

  /**
   * Speaks QMP on a socket already connected (or connecting) to QEMU: reads
   * the greeting and leaves negotiation mode.
   * @throws ExecenvError TRANSPORT when the greeting does not come within `timeoutMs`.
   */
  static async over(socket: Socket, timeoutMs = 10_000, path = 'its socket'): Promise<QmpClient> {
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      client.#pending.set('greeting', { resolve: () => resolve(), reject });
    });
    const timer = setTimeout(() => client.#fail(new Error(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      await greeting;
      await client.execute('qmp_capabilities');
      return client;
    } catch (err) {
      client.close();
      throw new ExecenvError('TRANSPORT', `execenv: QMP on ${path}: ${(err as Error).message}`, {
        driver: 'qemu',
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs one command and resolves with its `return` value.
   * @throws Error with QEMU's error class and description when the command fails, or when the connection is lost.
   */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = `execenv-${this.#nextId++}`;
    const result = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    return result;
  }

  /** Events received so far, oldest first. */
  get events(): readonly QmpEvent[] {
    return this.#events;
  }

  /** Calls `listener` with every event from now on; returns a function that stops it. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes the connection; pending commands fail. */
  close(): void {
    this.#fail(new Error('the QMP connection was closed'));
    this.#socket.destroy();
  }

  #receive(chunk: string): void {
    this.#buffer += chunk;
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#message(line);
    }
  }

  #message(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#fail(new Error(`QMP sent what is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if ('QMP' in message) {
      this.#settle('greeting', undefined);
      return;
    }
    if (typeof message.event === 'string') {
      const event = { event: message.event, data: message.data as Record<string, unknown> | undefined };
      this.#events.push(event);
      for (const listener of this.#listeners) listener(event);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    if (!id) return;
    const error = message.error as { class?: string; desc?: string } | undefined;
    if (error) this.#settle(id, undefined, new Error(`${error.class ?? 'Error'}: ${error.desc ?? 'unknown error'}`));
    else this.#settle(id, message.return);
  }

  #settle(id: string, value: unknown, error?: Error): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#closed = error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
