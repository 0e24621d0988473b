import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { childrenOf, isNamespaceInit } from '../src/proc-tree.js';

let proc: string;

async function fakeProcess(pid: number, o: { children?: number[]; nspid: string; comm: string }) {
  await mkdir(join(proc, String(pid), 'task', String(pid)), { recursive: true });
  await writeFile(
    join(proc, String(pid), 'task', String(pid), 'children'),
    (o.children ?? []).join(' ') + (o.children?.length ? ' ' : ''),
  );
  await writeFile(join(proc, String(pid), 'status'), `Name:\t${o.comm}\nPid:\t${pid}\nNSpid:\t${o.nspid}\n`);
  await writeFile(join(proc, String(pid), 'comm'), `${o.comm}\n`);
}

beforeEach(async () => {
  proc = await mkdtemp(join(tmpdir(), 'nspawn-proc-'));
});
afterEach(async () => {
  await rm(proc, { recursive: true, force: true });
});

describe('process tree under /proc', () => {
  it('lists the children of systemd-nspawn and tells the container init by its NSpid', async () => {
    await fakeProcess(100, { children: [101, 102], nspid: '100', comm: 'systemd-nspawn' });
    await fakeProcess(101, { nspid: '101', comm: 'sleep' });
    await fakeProcess(102, { nspid: '102\t1', comm: 'execenv-agent' });
    expect(await childrenOf(100, proc)).toEqual([101, 102]);
    expect(await isNamespaceInit(101, proc)).toBe(false);
    expect(await isNamespaceInit(102, proc)).toBe(true);
    expect(await childrenOf(999, proc)).toEqual([]);
    expect(await isNamespaceInit(999, proc)).toBe(false);
  });
});
