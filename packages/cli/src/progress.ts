import { basename } from 'node:path';
import type { ExecenvEvent } from '@execenv/core';
import cliProgress, { type MultiBar, type Params, type SingleBar } from 'cli-progress';
import type { OutputStream } from './cli-io.js';
import { formatBytes } from './output.js';

/**
 * Turns an environment's events into what a person watching sees.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { createProgress, type ProgressReporter, progressMode } from '@execenv/cli';
 *
 * const progress: ProgressReporter = createProgress(process.stderr, progressMode(process.stderr, false));
 * const env = await open('qemu', { image: 'index:debian/bookworm/amd64' }, { onEvent: progress.onEvent });
 * progress.done(); // ready: the terminal is clean for the command's output
 * ```
 */
export interface ProgressReporter {
  /** Receives every event (an OpenOptions.onEvent). */
  readonly onEvent: (event: ExecenvEvent) => void;
  /** Ends every task still shown, leaving the terminal clean for what follows. */
  done(): void;
}

/**
 * How progress is shown: bars on a terminal, plain lines elsewhere, or not at all.
 *
 * @example
 * ```ts
 * import { createProgress, type ProgressMode } from '@execenv/cli';
 *
 * const mode: ProgressMode = process.env.CI ? 'lines' : 'bars'; // CI logs get plain lines
 * const progress = createProgress(process.stderr, mode);
 * ```
 */
export type ProgressMode = 'bars' | 'lines' | 'off';

/**
 * Bars when `stream` is a terminal, lines when it is not, nothing when quiet.
 *
 * @example
 * ```ts
 * import { progressMode } from '@execenv/cli';
 *
 * progressMode(process.stderr, false); // 'bars' on a terminal, 'lines' when redirected
 * progressMode(process.stderr, true); // 'off', as with --quiet
 * ```
 */
export function progressMode(stream: OutputStream, quiet: boolean | undefined): ProgressMode {
  if (quiet) return 'off';
  return stream.isTTY ? 'bars' : 'lines';
}

/**
 * A short name for a reference in one line: the last path segment of a file or URL.
 *
 * @example
 * ```ts
 * import { shortReference } from '@execenv/cli';
 *
 * shortReference('https://images.example.org/debian/rootfs.tar.xz?sig=ab12'); // 'rootfs.tar.xz'
 * shortReference('/var/cache/images/bookworm.tar.zst'); // 'bookworm.tar.zst'
 * shortReference('index:debian/bookworm/amd64'); // kept whole: a scheme without //
 * ```
 */
export function shortReference(reference: string): string {
  if (/^[a-z-]+:(?!\/)/.test(reference)) return reference;
  return basename(reference.replace(/[?#].*$/, '')) || reference;
}

/** What one event means to a person: a task that starts, moves or ends, or a line. */
type Step =
  | { kind: 'bytes'; key: string; label: string; bytes: number; total?: number }
  | { kind: 'busy'; key: string; label: string }
  | { kind: 'finish'; key: string; note: string }
  | { kind: 'settle' }
  | { kind: 'line'; text: string; verbose: boolean };

/**
 * Reads one event as the steps a reporter shows.
 *
 * @example
 * ```ts
 * import type { ExecenvEvent } from '@execenv/core';
 * import { stepsOf } from '@execenv/cli';
 *
 * // Progress into a logger of one's own: only the lines a person would see without --verbose.
 * const onEvent = (e: ExecenvEvent) => {
 *   for (const step of stepsOf(e)) if (step.kind === 'line' && !step.verbose) logger.info(step.text);
 * };
 * ```
 */
export function stepsOf(e: ExecenvEvent): Step[] {
  switch (e.type) {
    case 'image-resolve':
      return [{ kind: 'line', text: `image ${e.reference}`, verbose: true }];
    case 'image-download': {
      const key = `download ${e.reference}`;
      const steps: Step[] = [
        { kind: 'bytes', key, label: `downloading ${shortReference(e.reference)}`, bytes: e.bytes, total: e.total },
      ];
      if (e.total !== undefined && e.bytes >= e.total)
        steps.push({ kind: 'finish', key, note: `${formatBytes(e.bytes)} downloaded` });
      return steps;
    }
    case 'image-verify':
      return [
        { kind: 'finish', key: `download ${e.reference}`, note: e.ok ? 'verified' : 'verification failed' },
        {
          kind: 'line',
          text: `${shortReference(e.reference)}: ${e.ok ? 'verified' : 'verification failed'}`,
          verbose: !!e.ok,
        },
      ];
    case 'image-convert':
      return [
        { kind: 'settle' },
        {
          kind: 'busy',
          key: `convert ${e.reference} ${e.to}`,
          label: `converting ${shortReference(e.reference)} (${e.from} → ${shortReference(e.to)})`,
        },
      ];
    case 'create':
      return [
        { kind: 'settle' },
        { kind: 'busy', key: `boot ${e.envId}`, label: `starting ${e.driver} environment ${e.envId}` },
      ];
    case 'boot':
      return [{ kind: 'busy', key: `boot ${e.envId}`, label: `booting ${e.driver} environment ${e.envId}` }];
    case 'ready':
      return [
        { kind: 'finish', key: `boot ${e.envId}`, note: `ready in ${e.durationMs} ms` },
        { kind: 'settle' },
        { kind: 'line', text: `${e.envId} ready in ${e.durationMs} ms`, verbose: true },
      ];
    case 'exec-start':
      return [{ kind: 'line', text: `${e.envId}: exec ${JSON.stringify(e.argv)}`, verbose: true }];
    case 'exec-end':
      return [
        {
          kind: 'line',
          text: `${e.envId}: ${e.argv[0]} ended (${e.signal ?? `exit ${e.exitCode}`}) after ${e.durationMs} ms`,
          verbose: true,
        },
      ];
    case 'copy':
      return [{ kind: 'line', text: `${e.envId}: ${e.direction} ${e.path} (${formatBytes(e.bytes)})`, verbose: true }];
    case 'destroy':
      return [{ kind: 'line', text: `${e.envId} destroyed`, verbose: true }];
    case 'warning':
      return [{ kind: 'line', text: `warning: ${e.message}`, verbose: false }];
  }
}

/**
 * Creates the reporter for a mode; `verbose` adds each exec, copy and destroy.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { createProgress } from '@execenv/cli';
 *
 * const progress = createProgress(process.stderr, 'lines', true); // verbose: each exec, copy and destroy too
 * const env = await open('chroot', {}, { onEvent: progress.onEvent });
 * try {
 *   await env.exec(['true']); // execenv: execenv-...: exec ["true"]
 * } finally {
 *   await env.close();
 *   progress.done();
 * }
 * ```
 */
export function createProgress(stream: OutputStream, mode: ProgressMode, verbose = false): ProgressReporter {
  if (mode === 'off') return { onEvent: () => {}, done: () => {} };
  return mode === 'bars' ? new BarProgress(stream, verbose) : new LineProgress(stream, verbose);
}

/** Plain lines for logs and pipes: a line when a task starts, at each quarter of a download, and when it ends. */
class LineProgress implements ProgressReporter {
  readonly #stream: OutputStream;
  readonly #verbose: boolean;
  readonly #tasks = new Map<string, { label: string; quarter: number; lastAt: number }>();

  constructor(stream: OutputStream, verbose: boolean) {
    this.#stream = stream;
    this.#verbose = verbose;
  }

  #say(text: string): void {
    this.#stream.write(`execenv: ${text}\n`);
  }

  readonly onEvent = (e: ExecenvEvent): void => {
    for (const step of stepsOf(e)) this.#step(step);
  };

  #step(step: Step): void {
    switch (step.kind) {
      case 'bytes': {
        let task = this.#tasks.get(step.key);
        if (!task) {
          task = { label: step.label, quarter: 0, lastAt: Date.now() };
          this.#tasks.set(step.key, task);
          this.#say(`${step.label}${step.total ? ` (${formatBytes(step.total)})` : ''}`);
        }
        const quarter = step.total ? Math.floor((step.bytes / step.total) * 4) : 0;
        const now = Date.now();
        if ((step.total && quarter > task.quarter && quarter < 4) || (!step.total && now - task.lastAt >= 10_000)) {
          this.#say(`${step.label}: ${formatBytes(step.bytes)}${step.total ? ` (${quarter * 25}%)` : ''}`);
          task.quarter = quarter;
          task.lastAt = now;
        }
        return;
      }
      case 'busy':
        if (this.#tasks.has(step.key)) return;
        this.#tasks.set(step.key, { label: step.label, quarter: 0, lastAt: Date.now() });
        if (!step.key.startsWith('boot ') || this.#verbose) this.#say(step.label);
        return;
      case 'finish': {
        const task = this.#tasks.get(step.key);
        if (!task) return;
        this.#tasks.delete(step.key);
        if (!step.key.startsWith('boot ')) this.#say(`${task.label}: ${step.note}`);
        return;
      }
      case 'settle':
        return;
      case 'line':
        if (!step.verbose || this.#verbose) this.#say(step.text);
    }
  }

  done(): void {
    this.#tasks.clear();
  }
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** What a bar shows: its label, bytes so far and total, whether it is busy, and its note once finished. */
export interface BarPayload {
  label: string;
  busy: boolean;
  note?: string;
  bytes: number;
  total?: number;
}

/**
 * Renders one bar line: a download with its size, a busy task with its time, or a finished task.
 *
 * @example
 * ```ts
 * import { renderBar } from '@execenv/cli';
 *
 * const params = { startTime: 0, stopTime: null };
 * renderBar(params, { label: 'downloading rootfs.tar.xz', busy: false, bytes: 512, total: 1024 }, 3000);
 * // '↓ downloading rootfs.tar.xz  ███████████████░░░░░░░░░░░░░░░ 50%  512 B / 1.0 KiB'
 * renderBar(params, { label: 'converting rootfs.tar.xz', busy: true, bytes: 0, note: 'done' });
 * // '✔ converting rootfs.tar.xz: done'
 * ```
 */
export function renderBar(params: Pick<Params, 'startTime' | 'stopTime'>, p: BarPayload, now = Date.now()): string {
  if (p.note !== undefined) return `✔ ${p.label}: ${p.note}`;
  const seconds = Math.floor((now - params.startTime) / 1000);
  if (p.busy) return `${SPINNER[Math.floor(now / 100) % SPINNER.length]} ${p.label}  ${seconds}s`;
  if (p.total) {
    const progress = Math.min(1, p.bytes / p.total);
    const bar = cliProgress.Format.BarFormat(progress, {
      barsize: 30,
      barCompleteString: '█'.repeat(30),
      barIncompleteString: '░'.repeat(30),
      barGlue: '',
    } as never);
    return `↓ ${p.label}  ${bar} ${Math.floor(progress * 100)}%  ${formatBytes(p.bytes)} / ${formatBytes(p.total)}`;
  }
  return `↓ ${p.label}  ${formatBytes(p.bytes)}  ${seconds}s`;
}

/**
 * Progress bars on a terminal (cli-progress): downloads with their size,
 * conversions and boots with a spinner and their time. The bars are stopped
 * once the environment is ready, so a command's output starts on a clean line.
 */
class BarProgress implements ProgressReporter {
  readonly #stream: OutputStream;
  readonly #verbose: boolean;
  #multi: MultiBar | undefined;
  readonly #bars = new Map<string, { bar: SingleBar; payload: BarPayload }>();

  constructor(stream: OutputStream, verbose: boolean) {
    this.#stream = stream;
    this.#verbose = verbose;
  }

  #clears = false;

  /**
   * The bars of the current phase. Image tasks stay on screen once finished;
   * the boot of an environment is cleared, so a command's output starts on a
   * clean line. A phase of the other kind ends the current one first.
   */
  #multiBar(clear: boolean): MultiBar {
    if (this.#multi && this.#clears !== clear) this.done();
    this.#clears = clear;
    this.#multi ??= new cliProgress.MultiBar({
      stream: this.#stream,
      format: (_options, params, payload: BarPayload) => renderBar(params, payload),
      hideCursor: true,
      clearOnComplete: clear,
      fps: 10,
    });
    return this.#multi;
  }

  readonly onEvent = (e: ExecenvEvent): void => {
    for (const step of stepsOf(e)) this.#step(step);
  };

  #step(step: Step): void {
    switch (step.kind) {
      case 'bytes':
      case 'busy': {
        const known = this.#bars.get(step.key);
        const payload: BarPayload =
          step.kind === 'bytes'
            ? { label: step.label, busy: false, bytes: step.bytes, total: step.total }
            : { label: step.label, busy: true, bytes: 0 };
        if (known) {
          if (known.payload.note !== undefined) return;
          known.payload = payload;
          known.bar.update(payload.bytes, payload);
        } else {
          const bar = this.#multiBar(step.key.startsWith('boot ')).create(payload.total ?? 0, payload.bytes, payload);
          this.#bars.set(step.key, { bar, payload });
        }
        return;
      }
      case 'finish': {
        const known = this.#bars.get(step.key);
        if (!known || known.payload.note !== undefined) return;
        known.payload = { ...known.payload, note: step.note };
        known.bar.update(known.payload.bytes, known.payload);
        return;
      }
      case 'settle':
        // Busy tasks end when the next phase starts: a conversion has no end event of its own.
        for (const [key, known] of this.#bars)
          if (known.payload.busy && known.payload.note === undefined && !key.startsWith('boot ')) {
            known.payload = { ...known.payload, note: 'done' };
            known.bar.update(0, known.payload);
          }
        if ([...this.#bars.values()].every((b) => b.payload.note !== undefined)) this.done();
        return;
      case 'line':
        if (step.verbose && !this.#verbose) return;
        if (this.#multi) this.#multi.log(`execenv: ${step.text}\n`);
        else this.#stream.write(`execenv: ${step.text}\n`);
    }
  }

  done(): void {
    for (const known of this.#bars.values())
      if (known.payload.note === undefined) {
        known.payload = { ...known.payload, note: 'done' };
        known.bar.update(known.payload.bytes, known.payload);
      }
    this.#multi?.update();
    this.#multi?.stop();
    this.#multi = undefined;
    this.#bars.clear();
  }
}
