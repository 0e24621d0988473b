import { describe, expect, it } from 'vitest';
import { ExecenvError, hasCode, NotFoundError } from '../src/errors.js';

describe('hasCode', () => {
  it('matches an ExecenvError by its code', () => {
    const err = new NotFoundError('/x', { envId: 'execenv-a', op: 'pull' });
    expect(hasCode(err, 'NOT_FOUND')).toBe(true);
    expect(hasCode(err, 'TIMEOUT')).toBe(false);
  });

  it('matches an ExecenvError of another copy of core, whose class is another', () => {
    class OtherCopyError extends Error {
      readonly code = 'NOT_FOUND';
      readonly envId = 'execenv-a';
      readonly driver = 'chroot';
      readonly op = 'pull';
    }
    const err = new OtherCopyError('execenv: pull: no such file or directory');
    expect(err instanceof ExecenvError).toBe(false);
    expect(hasCode(err, 'NOT_FOUND')).toBe(true);
  });

  it('does not match host errors that happen to carry a code, or non-errors', () => {
    const enoent = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    expect(hasCode(enoent, 'NOT_FOUND')).toBe(false);
    expect(hasCode(Object.assign(new Error('x'), { code: 'TIMEOUT' }), 'TIMEOUT')).toBe(false);
    expect(hasCode({ code: 'TIMEOUT', envId: 'e', op: 'exec' }, 'TIMEOUT')).toBe(false);
    expect(hasCode(undefined, 'TIMEOUT')).toBe(false);
  });
});
