import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Driver } from '../src/contract.js';
import { REGISTRY_KEY, Registry } from '../src/registry.js';
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

  it('says "forgotten import or install?" for an unknown driver, naming both packages it tried', async () => {
    const r = new Registry(async (s) => {
      throw notFound(s);
    });
    const err = (await r.open('nope', {}).catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'UNKNOWN_DRIVER', driverName: 'nope' });
    expect(err.message).toContain('unknown driver "nope" (forgotten import or install?)');
    expect(err.message).toContain('neither @execenv/nope nor execenv-driver-nope can be imported');
    expect(err.message).toContain('a third-party driver is published as execenv-driver-nope');
    expect(err.message).not.toMatch(/npm install @execenv\/nope/);
  });

  it('says which package imported without registering the name', async () => {
    const r = new Registry(async (s) => {
      if (s === '@execenv/quiet') throw notFound(s);
    });
    await expect(r.driver('quiet')).rejects.toThrow(
      'execenv-driver-quiet imported but registered no driver "quiet": it registers another name',
    );
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

describe('Registry.shared', () => {
  const warnings: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    warnings.length = 0;
  });
  function watchWarnings() {
    vi.spyOn(process, 'emitWarning').mockImplementation((w: string | Error) => {
      warnings.push(String(w));
    });
  }

  it('keeps one registry under Symbol.for("@execenv/core/registry") for every copy of core', async () => {
    watchWarnings();
    const holder = {};
    const first = Registry.shared('file:///app/node_modules/@execenv/core/dist/registry.js', holder);
    const second = Registry.shared('file:///driver/node_modules/@execenv/core/dist/registry.js', holder);
    second.register('thing', new FakeDriver({ name: 'thing' }));
    expect(first.drivers()).toEqual(['thing']);
    expect((await first.driver('thing')).name).toBe('thing');
    expect(Object.getOwnPropertySymbols(holder)).toEqual([Symbol.for('@execenv/core/registry')]);
    expect(REGISTRY_KEY).toBe(Symbol.for('@execenv/core/registry'));
  });

  it('warns once when a second copy of core loads, naming both', () => {
    watchWarnings();
    const holder = {};
    Registry.shared('file:///a/registry.js', holder);
    Registry.shared('file:///a/registry.js', holder);
    expect(warnings).toEqual([]);
    const second = Registry.shared('file:///b/registry.js', holder);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(
      '2 copies of @execenv/core are loaded (file:///a/registry.js, file:///b/registry.js)',
    );
    expect(warnings[0]).toContain('peerDependencies');
    second.register('twice', new FakeDriver({ name: 'twice' }));
    expect(() => second.register('twice', new FakeDriver({ name: 'twice' }))).toThrow(
      /called twice for driver "twice" \(2 copies of @execenv\/core are loaded/,
    );
  });

  it('mentions the copies in an unknown-driver error', async () => {
    watchWarnings();
    const holder = {};
    Registry.shared('file:///a/registry.js', holder);
    const second = Registry.shared('file:///b/registry.js', holder);
    // The default importer of a copy finds no such package.
    await expect(second.driver('no-such-driver-anywhere')).rejects.toThrow(
      /2 copies of @execenv\/core are loaded in this process/,
    );
  });

  it('keeps a registry of its own beside an incompatible shape, and says so', () => {
    watchWarnings();
    const holder = {};
    Object.defineProperty(holder, REGISTRY_KEY, { value: { shape: 99, drivers: new Map(), copies: new Set() } });
    const r = Registry.shared('file:///c/registry.js', holder);
    r.register('own', new FakeDriver({ name: 'own' }));
    expect(r.drivers()).toEqual(['own']);
    expect(warnings[0]).toContain('incompatible driver registry');
  });

  it('is what register, drivers and open use', async () => {
    const core = await import('../src/index.js');
    core.register('shared-check', new FakeDriver({ name: 'shared-check' }));
    const shared = (globalThis as Record<symbol, { drivers: Map<string, unknown> }>)[REGISTRY_KEY];
    expect(shared?.drivers.has('shared-check')).toBe(true);
    expect(core.drivers()).toContain('shared-check');
  });
});
