import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lease, LeaseResource } from '@execenv/core';
import { Networks } from '@execenv/net';
import { HostNetRunner } from '@execenv/net/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { joinNetwork } from '../src/nspawn-network.js';
import { nspawnUndo } from '../src/nspawn-undo.js';

let stateDir: string;
let runner: HostNetRunner;
let options: { runDir: string; firewall: 'nft' };
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'nspawn-net-unit-'));
  runner = new HostNetRunner();
  options = { runDir: join(stateDir, 'run'), firewall: 'nft' };
});
afterEach(async () => {
  runner.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe('joinNetwork', () => {
  it('records the namespace and the attachment before making them, then wires a veth into the namespace', async () => {
    const envDir = join(stateDir, 'nspawn', 'envs', 'execenv-aaaa');
    await mkdir(envDir, { recursive: true });
    const netns = join(envDir, 'netns');
    const added: { resource: LeaseResource; ranBefore: number }[] = [];
    const lease = {
      add: async (resource: LeaseResource) => void added.push({ resource, ranBefore: runner.ran.length }),
    } as Lease;
    const link = await joinNetwork(runner, options, { id: 'execenv-aaaa', stateDir, network: 'nat', netns, lease });
    expect(added).toEqual([
      { resource: { kind: 'mount', path: netns }, ranBefore: 0 },
      { resource: { kind: 'execenv-net', holder: 'execenv-aaaa', network: 'nat', stateDir }, ranBefore: 1 },
    ]);
    expect(runner.ran[0]?.argv).toEqual(['unshare', '--net', '--', 'mount', '--bind', '/proc/self/ns/net', netns]);
    const h = link.hostInterface;
    expect(runner.ran.slice(-2).map((r) => [r.argv, r.input?.split('\n')[0]])).toEqual([
      [['ip', '-batch', '-'], `link add name ${h} type veth peer name ${h.replace(/^exvh/, 'exvp')} netns ${netns}`],
      [
        ['nsenter', `--net=${netns}`, '--', 'ip', '-batch', '-'],
        `link set dev ${h.replace(/^exvh/, 'exvp')} name eth0`,
      ],
    ]);
    expect(link).toMatchObject({ address: '10.213.0.2', gateway: '10.213.0.1', nameservers: ['10.213.0.1'] });

    // close, a failed open and gc undo the records in reverse: the veth and the network, then the namespace (not mounted here).
    runner.ran.length = 0;
    const undo = nspawnUndo(runner, options);
    for (const { resource } of added.reverse()) await undo(resource);
    expect(runner.commands[0]).toBe(`ip link del dev ${h}`);
    expect(runner.commands).toContain(`ip link del dev ${link.network.bridge}`);
    expect(await new Networks({ stateDir, runner }).list()).toEqual([]);
  });

  it('refuses a malformed lease record, running nothing', async () => {
    await expect(nspawnUndo(runner)({ kind: 'execenv-net', network: 'nat' })).rejects.toThrow(
      /lacks its holder, network or state directory/,
    );
    expect(runner.ran).toEqual([]);
  });
});
