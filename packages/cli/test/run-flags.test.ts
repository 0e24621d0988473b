import { describe, expect, it } from 'vitest';
import { parseEnvPair, parsePull, parsePush, parseTimeoutSeconds } from '../src/run-flags.js';

describe('run flags', () => {
  it('splits --push at the last colon and resolves the host path', () => {
    expect(parsePush('./src:/build/src', '/home/u')).toEqual({ host: '/home/u/src', guest: '/build/src' });
    expect(parsePush('/a:b/c:/dest', '/')).toEqual({ host: '/a:b/c', guest: '/dest' });
  });

  it('refuses --push without an absolute guest path', () => {
    expect(() => parsePush('./src', '/')).toThrow(/HOST:GUEST/);
    expect(() => parsePush('./src:relative', '/')).toThrow(/absolute GUEST/);
    expect(() => parsePush(':/x', '/')).toThrow(/HOST:GUEST/);
  });

  it('splits --pull at the first colon', () => {
    expect(parsePull('/out:./res:1', '/w')).toEqual({ guest: '/out', host: '/w/res:1' });
    expect(() => parsePull('out:./res', '/w')).toThrow(/absolute GUEST/);
    expect(() => parsePull('/out:', '/w')).toThrow(/GUEST:HOST/);
  });

  it('takes NAME=VALUE for --env, values may hold = and be empty', () => {
    expect(parseEnvPair('A=b=c')).toEqual(['A', 'b=c']);
    expect(parseEnvPair('EMPTY=')).toEqual(['EMPTY', '']);
    expect(() => parseEnvPair('HOME')).toThrow(/NAME=VALUE/);
    expect(() => parseEnvPair('1X=y')).toThrow(/valid variable name/);
  });

  it('reads --timeout as seconds', () => {
    expect(parseTimeoutSeconds('30')).toBe(30_000);
    expect(parseTimeoutSeconds('2.5')).toBe(2500);
    for (const bad of ['0', '-1', 'x', '1e3', '']) expect(() => parseTimeoutSeconds(bad)).toThrow(/seconds/);
  });
});
