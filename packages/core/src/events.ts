/**
 * ExecenvEvent is every progress and lifecycle event an environment emits
 * through OpenOptions.onEvent. `envId` is absent before an id exists.
 *
 * @example
 * ```ts
 * import { type ExecenvEvent, open } from '@execenv/core';
 * const onEvent = (e: ExecenvEvent) => {
 *   if (e.type === 'image-download') console.error(`${e.reference}: ${e.bytes}/${e.total ?? '?'} bytes`);
 *   else if (e.type === 'exec-end') console.error(`${e.argv.join(' ')}: exit ${e.exitCode} in ${e.durationMs} ms`);
 * };
 * const env = await open('chroot', { image: './bookworm.tar.zst' }, { onEvent });
 * ```
 */
export type ExecenvEvent =
  | { type: 'image-resolve'; envId?: string; reference: string }
  | { type: 'image-download'; envId?: string; reference: string; bytes: number; total?: number }
  | { type: 'image-verify'; envId?: string; reference: string; ok: boolean }
  | { type: 'image-convert'; envId?: string; reference: string; from: string; to: string; bytes?: number }
  | { type: 'create'; envId: string; driver: string }
  | { type: 'boot'; envId: string; driver: string }
  | { type: 'ready'; envId: string; driver: string; durationMs: number }
  | { type: 'exec-start'; envId: string; argv: readonly string[] }
  | {
      type: 'exec-end';
      envId: string;
      argv: readonly string[];
      exitCode: number | null;
      signal: string | null;
      durationMs: number;
    }
  | { type: 'copy'; envId: string; direction: 'push' | 'pull'; path: string; bytes: number }
  | { type: 'destroy'; envId: string; driver: string }
  | { type: 'warning'; envId?: string; message: string };

/**
 * Names of all event types.
 *
 * @example
 * ```ts
 * import { type ExecenvEvent, type ExecenvEventType, open } from '@execenv/core';
 * const counts = new Map<ExecenvEventType, number>();
 * const onEvent = (e: ExecenvEvent) => counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
 * const env = await open('chroot', { image: './bookworm.tar.zst' }, { onEvent });
 * ```
 */
export type ExecenvEventType = ExecenvEvent['type'];

/**
 * Calls `onEvent` and swallows what it throws, so a broken listener never breaks an environment.
 *
 * @example
 * ```ts
 * import { emit, type OpenOptions } from '@execenv/core';
 * function downloaded(opts: OpenOptions, reference: string, bytes: number, total?: number) {
 *   emit(opts.onEvent, { type: 'image-download', reference, bytes, total }); // a throwing listener is ignored
 * }
 * ```
 */
export function emit(onEvent: ((e: ExecenvEvent) => void) | undefined, event: ExecenvEvent): void {
  if (!onEvent) return;
  try {
    onEvent(event);
  } catch {
    // listeners must not throw; an exception here must not fail the operation
  }
}
