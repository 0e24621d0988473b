import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CleanupError } from '../src/errors.js';
import { collectDeadLeases } from '../src/lifecycle/gc.js';
import { Lease, type LeaseResource, newEnvironmentId, readLeases } from '../src/lifecycle/lease.js';
import { withLock } from '../src/lifecycle/lock.js';
import { isAlive, ownerOf } from '../src/lifecycle/owner.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'execenv-lease-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('Lease', () => {
  it('ids look like execenv-<12 chars> and differ', () => {
    const ids = new Set(Array.from({ length: 100 }, newEnvironmentId));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^execenv-[a-z0-9]{12}$/);
  });

  it('persists resources and releases them in reverse order, then deletes the lease', async () => {
    const lease = await Lease.create(stateDir, 'execenv-aaa', 'test', { job: 'x' });
    await lease.add({ kind: 'dir', path: '/a' });
    await lease.add({ kind: 'mount', path: '/a/m' });
    const [record] = await readLeases(stateDir);
    expect(record).toMatchObject({
      id: 'execenv-aaa',
      driver: 'test',
      labels: { job: 'x' },
      owner: { pid: process.pid },
    });
    expect(record?.resources.map((r) => r.path)).toEqual(['/a', '/a/m']);
    const undone: unknown[] = [];
    await lease.release(async (r) => {
      undone.push(r.path);
    });
    expect(undone).toEqual(['/a/m', '/a']);
    expect(await readLeases(stateDir)).toEqual([]);
  });

  it('keeps failed resources for a later gc and reports every failure', async () => {
    const lease = await Lease.create(stateDir, 'execenv-bbb', 'test');
    await lease.add({ kind: 'dir', path: '/ok' });
    await lease.add({ kind: 'dir', path: '/bad1' });
    await lease.add({ kind: 'dir', path: '/bad2' });
    const fail = async (r: LeaseResource) => {
      if (String(r.path).startsWith('/bad')) throw new Error(`cannot ${r.path}`);
    };
    const err = await lease.release(fail).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CleanupError);
    expect(err).toMatchObject({ code: 'CLEANUP_FAILED', envId: 'execenv-bbb', left: ['dir /bad2', 'dir /bad1'] });
    expect((err as CleanupError).errors.map((e) => (e as Error).message)).toEqual(['cannot /bad2', 'cannot /bad1']);
    const [left] = await readLeases(stateDir);
    expect(left?.resources.map((r) => r.path)).toEqual(['/bad1', '/bad2']);
  });

  it('gc releases only leases of dead owners', async () => {
    const live = await Lease.create(stateDir, 'execenv-live', 'test');
    await live.add({ kind: 'dir', path: '/live' });
    const dead = Lease.from(stateDir, {
      id: 'execenv-dead',
      driver: 'test',
      owner: { pid: 2 ** 22 + 7, startTime: '1' },
      createdAt: new Date().toISOString(),
      resources: [{ kind: 'dir', path: '/dead' }],
    });
    await dead.add({ kind: 'dir', path: '/dead2' });
    const undone: unknown[] = [];
    const report = await collectDeadLeases(stateDir, 'test', async (r) => {
      undone.push(r.path);
    });
    expect(report).toEqual({ removed: ['execenv-dead'], errors: [] });
    expect(undone).toEqual(['/dead2', '/dead']);
    expect((await readLeases(stateDir)).map((r) => r.id)).toEqual(['execenv-live']);
  });
});

describe('owner', () => {
  it('knows this process is alive and a recycled pid is not', async () => {
    const me = await ownerOf();
    expect(await isAlive(me)).toBe(true);
    expect(await isAlive({ ...me, startTime: '0' })).toBe(false);
  });
});

describe('withLock', () => {
  it('serialises holders and takes over a lock of a dead process', async () => {
    const path = join(stateDir, 'x.lock');
    const order: string[] = [];
    await Promise.all(
      ['a', 'b', 'c'].map((n) =>
        withLock(path, async () => {
          order.push(`${n}+`);
          await new Promise((r) => setTimeout(r, 20));
          order.push(`${n}-`);
        }),
      ),
    );
    for (let i = 0; i < order.length; i += 2) expect(order[i]?.[0]).toBe(order[i + 1]?.[0]);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path, JSON.stringify({ pid: 2 ** 22 + 9, startTime: '1' }));
    expect(await withLock(path, async () => 'took over', { timeoutMs: 2000 })).toBe('took over');
    expect(await readdir(stateDir)).toEqual([]);
  });
});
