import { DriverUnavailableError, ImageNotFoundError, InvalidSpecError, TransportError } from '@execenv/core';
import { describe, expect, it } from 'vitest';
import { errorLine, exitCodeOf, UsageError } from '../src/cli-errors.js';
import { shellArgv } from '../src/commands/shell.js';
import { commandExitCode } from '../src/exit-codes.js';

describe('exit codes', () => {
  it('maps errors to documented codes', () => {
    expect(exitCodeOf(new UsageError('x'))).toBe(2);
    expect(exitCodeOf(new InvalidSpecError('user', 'unknown'))).toBe(2);
    expect(exitCodeOf(new DriverUnavailableError('podman', 'missing'))).toBe(3);
    expect(exitCodeOf(new ImageNotFoundError('x', 'gone'))).toBe(4);
    expect(exitCodeOf(new TransportError('lost'))).toBe(1);
    expect(exitCodeOf(new TransportError('lost'), 125)).toBe(125);
    expect(exitCodeOf(new Error('plain'), 125)).toBe(125);
  });

  it('maps a command result: its code, 124 on timeout, 128 + N on a signal', () => {
    expect(commandExitCode({ exitCode: 3, signal: null, timedOut: false })).toBe(3);
    expect(commandExitCode({ exitCode: null, signal: 'SIGKILL', timedOut: true })).toBe(124);
    expect(commandExitCode({ exitCode: null, signal: 'SIGTERM', timedOut: false })).toBe(143);
  });

  it('reports an error in one line with its code', () => {
    expect(errorLine(new TransportError('execenv: agent gone'))).toBe('execenv: agent gone [TRANSPORT]');
    expect(errorLine(new Error('plain'))).toBe('execenv: plain');
  });
});

describe('shellArgv', () => {
  it('runs the shell under script with the window size when there is a terminal', () => {
    expect(shellArgv('/bin/bash', '/usr/bin/script', { rows: 40, columns: 120 })).toEqual({
      argv: ['/usr/bin/script', '-q', '-e', '-c', 'stty rows 40 cols 120 2>/dev/null; exec /bin/bash -l', '/dev/null'],
      tty: true,
    });
  });

  it('runs an interactive shell over pipes without script or without a terminal', () => {
    expect(shellArgv('/bin/sh', undefined, { rows: 40, columns: 120 })).toEqual({
      argv: ['/bin/sh', '-i'],
      tty: false,
    });
    expect(shellArgv('/bin/sh', '/usr/bin/script', undefined)).toEqual({ argv: ['/bin/sh', '-i'], tty: false });
  });
});
