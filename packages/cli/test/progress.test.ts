import { Writable } from 'node:stream';
import type { ExecenvEvent } from '@execenv/core';
import { describe, expect, it } from 'vitest';
import { createProgress, progressMode, renderBar, shortReference } from '../src/progress.js';

function sink(isTTY: boolean) {
  let text = '';
  const stream = Object.assign(
    new Writable({
      write(chunk, _e, done) {
        text += chunk.toString();
        done();
      },
    }),
    { isTTY },
  );
  return { stream, text: () => text };
}

const lifecycle: ExecenvEvent[] = [
  { type: 'image-resolve', reference: 'https://example.org/images/rootfs.tar.xz' },
  { type: 'image-download', reference: 'https://example.org/images/rootfs.tar.xz', bytes: 0, total: 4096 },
  { type: 'image-download', reference: 'https://example.org/images/rootfs.tar.xz', bytes: 1100, total: 4096 },
  { type: 'image-download', reference: 'https://example.org/images/rootfs.tar.xz', bytes: 2100, total: 4096 },
  { type: 'image-download', reference: 'https://example.org/images/rootfs.tar.xz', bytes: 4096, total: 4096 },
  { type: 'image-convert', reference: '/c/blob', from: 'xz', to: 'directory' },
  { type: 'create', envId: 'execenv-a', driver: 'chroot' },
  { type: 'ready', envId: 'execenv-a', driver: 'chroot', durationMs: 42 },
  { type: 'exec-start', envId: 'execenv-a', argv: ['true'] },
  { type: 'exec-end', envId: 'execenv-a', argv: ['true'], exitCode: 0, signal: null, durationMs: 3 },
  { type: 'destroy', envId: 'execenv-a', driver: 'chroot' },
];

describe('progress', () => {
  it('picks bars on a terminal, lines elsewhere, nothing when quiet', () => {
    expect(progressMode(sink(true).stream, false)).toBe('bars');
    expect(progressMode(sink(false).stream, false)).toBe('lines');
    expect(progressMode(sink(true).stream, true)).toBe('off');
  });

  it('shortens file and URL references to their last segment, keeps scheme references', () => {
    expect(shortReference('https://h/a/b.tar.xz?x=1')).toBe('b.tar.xz');
    expect(shortReference('/srv/img/rootfs.tar')).toBe('rootfs.tar');
    expect(shortReference('index:debian/bookworm/amd64')).toBe('index:debian/bookworm/amd64');
  });

  it('writes plain lines without a terminal: start, each quarter, end of a download, and conversions', () => {
    const s = sink(false);
    const p = createProgress(s.stream, 'lines');
    for (const e of lifecycle) p.onEvent(e);
    p.done();
    expect(s.text().split('\n').filter(Boolean)).toEqual([
      'execenv: downloading rootfs.tar.xz (4.0 KiB)',
      'execenv: downloading rootfs.tar.xz: 1.1 KiB (25%)',
      'execenv: downloading rootfs.tar.xz: 2.1 KiB (50%)',
      'execenv: downloading rootfs.tar.xz: 4.0 KiB downloaded',
      'execenv: converting blob (xz → directory)',
    ]);
  });

  it('adds the environment lifecycle with verbose', () => {
    const s = sink(false);
    const p = createProgress(s.stream, 'lines', true);
    for (const e of lifecycle) p.onEvent(e);
    const lines = s.text().split('\n');
    expect(lines).toContain('execenv: starting chroot environment execenv-a');
    expect(lines).toContain('execenv: execenv-a ready in 42 ms');
    expect(lines).toContain('execenv: execenv-a: exec ["true"]');
    expect(lines).toContain('execenv: execenv-a destroyed');
  });

  it('always says warnings, and nothing at all when off', () => {
    const s = sink(false);
    createProgress(s.stream, 'lines').onEvent({ type: 'warning', message: 'slow disk' });
    expect(s.text()).toBe('execenv: warning: slow disk\n');
    const q = sink(false);
    const off = createProgress(q.stream, 'off');
    for (const e of lifecycle) off.onEvent(e);
    expect(q.text()).toBe('');
  });

  it('draws bars on a terminal and leaves finished ones with a check mark', () => {
    const s = sink(true);
    const p = createProgress(s.stream, 'bars');
    for (const e of lifecycle.slice(0, 8)) p.onEvent(e);
    p.done();
    expect(s.text()).toContain('✔ downloading rootfs.tar.xz: 4.0 KiB downloaded');
    expect(s.text()).toContain('✔ converting blob (xz → directory): done');
  });

  it('renders a download bar with percentage and sizes, a busy task with its time', () => {
    const start = 1_000_000;
    expect(
      renderBar(
        { startTime: start, stopTime: null },
        { label: 'downloading x', busy: false, bytes: 512, total: 1024 },
        start,
      ),
    ).toMatch(/^↓ downloading x {2}█{15}░{15} 50% {2}512 B \/ 1\.0 KiB$/);
    expect(
      renderBar({ startTime: start, stopTime: null }, { label: 'converting y', busy: true, bytes: 0 }, start + 3500),
    ).toMatch(/^. converting y {2}3s$/);
    expect(renderBar({ startTime: start, stopTime: null }, { label: 'z', busy: true, bytes: 0, note: 'done' })).toBe(
      '✔ z: done',
    );
  });
});
