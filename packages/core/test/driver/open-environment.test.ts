import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { leaseGc, leaseList, openWithLease } from '../../src/driver/index.js';
import type { CleanupError } from '../../src/errors.js';
import type { ExecenvEvent } from '../../src/events.js';
import type { LeaseResource } from '../../src/lifecycle/lease.js';
import { describeResource, readLeases } from '../../src/lifecycle/lease.js';
import { FakeDriver } from '../../src/testing/index.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-open-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

const undone: LeaseResource[] = [];
const undo = async (r: LeaseResource) => {
  undone.push(r);
  if (r.kind === 'broken') throw new Error('cannot undo broken');
};

describe('openWithLease', () => {
  it('makes the id and lease, emits create and ready, and returns what create made', async () => {
    const events: ExecenvEvent[] = [];
    const env = await openWithLease({
      driver: 'test',
      spec: { labels: { job: 'j' } },
      opts: { onEvent: (e) => events.push(e) },
      stateDir,
      undo,
      create: async (ctx) => {
        expect(ctx.id).toMatch(/^execenv-/);
        await ctx.lease.add({ kind: 'dir', path: '/x' });
        return new FakeDriver({ name: 'test' }).open({});
      },
    });
    expect(events.map((e) => e.type)).toEqual(['create', 'ready']);
    expect(events[1]).toMatchObject({ driver: 'test', durationMs: expect.any(Number) });
    const [record] = await readLeases(stateDir, 'test');
    expect(record).toMatchObject({ labels: { job: 'j' }, resources: [{ kind: 'dir', path: '/x' }] });
    expect(await leaseList(stateDir, 'test')).toEqual([
      { id: record?.id, driver: 'test', ownerAlive: true, resources: ['dir /x'] },
    ]);
    expect(await leaseGc(stateDir, 'test', undo)).toEqual({ removed: [], errors: [] });
    await env.close();
  });

  it('validates the spec before creating anything', async () => {
    await expect(
      openWithLease({ driver: 'test', spec: { arch: 'vax' as never }, stateDir, undo, create: async () => never() }),
    ).rejects.toMatchObject({ code: 'INVALID_SPEC', field: 'arch', driver: 'test', op: 'open' });
    expect(await readLeases(stateDir)).toEqual([]);
  });

  it('rolls back on failure and leaves no lease', async () => {
    undone.length = 0;
    const failure = new Error('boot failed');
    await expect(
      openWithLease({
        driver: 'test',
        spec: {},
        stateDir,
        undo,
        create: async (ctx) => {
          await ctx.lease.add({ kind: 'dir', path: '/a' });
          await ctx.lease.add({ kind: 'mount', path: '/a/m' });
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
    expect(undone.map((r) => r.path)).toEqual(['/a/m', '/a']);
    expect(await readLeases(stateDir)).toEqual([]);
  });

  it('rejects an abort during create with op open, after rolling back', async () => {
    const ac = new AbortController();
    const err = await openWithLease({
      driver: 'test',
      spec: {},
      opts: { signal: ac.signal },
      stateDir,
      undo,
      create: async (ctx) => {
        await ctx.lease.add({ kind: 'dir', path: '/a' });
        ac.abort();
        return new FakeDriver({ name: 'test' }).open({});
      },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortedError', code: 'ABORTED', driver: 'test', op: 'open' });
    expect(await readLeases(stateDir)).toEqual([]);
    const before = new AbortController();
    before.abort();
    await expect(
      openWithLease({ driver: 'test', spec: {}, opts: { signal: before.signal }, stateDir, undo, create: never }),
    ).rejects.toMatchObject({ code: 'ABORTED', op: 'open' });
  });

  it('keeps a rollback failure on the error and reports it', async () => {
    const events: ExecenvEvent[] = [];
    const err = (await openWithLease({
      driver: 'test',
      spec: {},
      opts: { onEvent: (e) => events.push(e) },
      stateDir,
      undo,
      create: async (ctx) => {
        await ctx.lease.add({ kind: 'broken' });
        throw new Error('boot failed');
      },
    }).catch((e: unknown) => e)) as Error & { suppressed?: unknown[] };
    expect(err.message).toBe('boot failed');
    expect(err.suppressed).toHaveLength(1);
    expect(err.suppressed?.[0]).toMatchObject({ code: 'CLEANUP_FAILED', left: ['broken'] });
    expect(String((err.suppressed as CleanupError[])[0]?.errors[0])).toContain('cannot undo broken');
    expect(events.some((e) => e.type === 'warning')).toBe(true);
    // What could not be undone stays for gc.
    expect((await readLeases(stateDir))[0]?.resources).toEqual([{ kind: 'broken' }]);
  });
});

describe('leaseList and leaseGc', () => {
  it('finds leases of dead owners and removes them', async () => {
    const dir = join(stateDir, 'leases');
    await mkdir(dir, { recursive: true });
    const record = {
      id: 'execenv-dead00000000',
      driver: 'test',
      owner: { pid: 2 ** 22 + 7, startTime: '1' },
      createdAt: new Date().toISOString(),
      resources: [
        { kind: 'dir', path: '/tmp/gone' },
        { kind: 'process', pid: 5, startTime: '1' },
      ],
    };
    await writeFile(join(dir, `${record.id}.json`), JSON.stringify(record));
    expect(await leaseList(stateDir, 'other')).toEqual([]);
    expect(await leaseList(stateDir, 'test')).toEqual([
      { id: record.id, driver: 'test', ownerAlive: false, resources: ['dir /tmp/gone', 'process 5'] },
    ]);
    undone.length = 0;
    expect(await leaseGc(stateDir, 'test', undo)).toEqual({ removed: [record.id], errors: [] });
    expect(undone.map((r) => r.kind)).toEqual(['process', 'dir']);
    expect(await leaseList(stateDir, 'test')).toEqual([]);
  });

  it('describes resources in a few words', () => {
    expect(describeResource({ kind: 'mount', path: '/m' })).toBe('mount /m');
    expect(describeResource({ kind: 'process', pid: 3 })).toBe('process 3');
    expect(describeResource({ kind: 'alias' })).toBe('alias');
  });
});

function never(): never {
  throw new Error('create must not be called');
}
