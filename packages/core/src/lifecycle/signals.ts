/**
 * Something that can be closed when the process is told to stop.
 *
 * @example
 * ```ts
 * import { type Closable, closeOnSignal, forgetOnSignal } from '@execenv/core';
 * const tunnel: Closable = { close: () => stopTunnel(port) };
 * closeOnSignal(tunnel);
 * // ... and once it was closed the normal way:
 * forgetOnSignal(tunnel);
 * ```
 */
export interface Closable {
  close(): Promise<void>;
}

const open = new Set<Closable>();
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
let installed = false;

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  await Promise.allSettled([...open].map((c) => c.close()));
  open.clear();
  uninstall();
  // Re-raise so the process ends the way it would have without us, unless someone else handles it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
}

/**
 * Closes `target` when the process receives SIGINT or SIGTERM, then lets the signal take its course.
 *
 * @example
 * ```ts
 * import { closeOnSignal, forgetOnSignal } from '@execenv/core';
 * const vm = await startFooVm(); // anything with close(): Promise<void>
 * closeOnSignal(vm); // Ctrl-C closes it, then the process ends as it would have
 * try {
 *   await runJobs(vm);
 * } finally {
 *   await vm.close();
 *   forgetOnSignal(vm);
 * }
 * ```
 */
export function closeOnSignal(target: Closable): void {
  open.add(target);
  install();
}

/**
 * Stops watching `target` (after it closed); removes the handlers when nothing is left to close.
 *
 * @example
 * ```ts
 * import { forgetOnSignal } from '@execenv/core';
 * async close() {
 *   forgetOnSignal(this); // closed on purpose: SIGINT need not close it again
 *   await this.vm.stop();
 * }
 * ```
 */
export function forgetOnSignal(target: Closable): void {
  open.delete(target);
  if (open.size === 0) uninstall();
}
