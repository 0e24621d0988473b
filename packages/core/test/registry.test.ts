import { describe, expect, it } from 'vitest';
import type { Driver } from '../src/contract.js';
import { Registry } from '../src/registry.js';
import { FakeDriver } from '../src/testing/index.js';

function notFound(specifier: string): Error {
  return Object.assign(new Error(`Cannot find package '${specifier}' imported from /x`), {
    code: 'ERR_MODULE_NOT_FOUND',
  });
}

describe('Registry', () => {
  it('lists registered drivers sorted', () => {
    const r = new Registry();
    r.register('zeta', new FakeDriver({ name: 'zeta' }));
    r.register('alpha', new FakeDriver({ name: 'alpha' }));
    expect(r.drivers()).toEqual(['alpha', 'zeta']);
  });

  it('refuses empty, malformed and duplicate names and non-drivers', () => {
    const r = new Registry();
    expect(() => r.register('', new FakeDriver())).toThrow(/empty/);
    expect(() => r.register('Bad Name', new FakeDriver())).toThrow(/lower-case/);
    r.register('fake', new FakeDriver());
    expect(() => r.register('fake', new FakeDriver())).toThrow(/called twice for driver "fake"/);
    expect(() => r.register('x', {} as Driver)).toThrow(/not a Driver/);
  });

  it('imports @execenv/<name> first, then execenv-driver-<name>', async () => {
    const tried: string[] = [];
    const r = new Registry(async (specifier) => {
      tried.push(specifier);
      if (specifier === '@execenv/thing') throw notFound(specifier);
      r.register('thing', new FakeDriver({ name: 'thing' }));
    });
    const env = await r.open('thing', {});
    expect(tried).toEqual(['@execenv/thing', 'execenv-driver-thing']);
    expect(env.driver).toBe('thing');
    await env.close();
  });

  it('says "forgotten import or install?" for an unknown driver, with code UNKNOWN_DRIVER', async () => {
    const r = new Registry(async (s) => {
      throw notFound(s);
    });
    await expect(r.open('nope', {})).rejects.toMatchObject({
      code: 'UNKNOWN_DRIVER',
      message: expect.stringContaining('unknown driver "nope" (forgotten import or install?)'),
    });
  });

  it('passes on errors of a driver package that exists but fails to load', async () => {
    const r = new Registry(async () => {
      throw new SyntaxError('broken driver');
    });
    await expect(r.driver('broken')).rejects.toThrow('broken driver');
  });

  it('treats a package that imports but does not register as unknown', async () => {
    const r = new Registry(async () => {});
    await expect(r.driver('silent')).rejects.toMatchObject({ code: 'UNKNOWN_DRIVER' });
  });

  it('never imports a name that is not a driver name', async () => {
    const tried: string[] = [];
    const r = new Registry(async (s) => {
      tried.push(s);
    });
    await expect(r.driver('../../etc')).rejects.toMatchObject({ code: 'UNKNOWN_DRIVER' });
    expect(tried).toEqual([]);
  });
});
