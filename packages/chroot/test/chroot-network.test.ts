import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lease, LeaseResource } from '@execenv/core';
import { FakeRunner } from '@execenv/core/testing';
import { Networks } from '@execenv/net';
import { HostNetRunner } from '@execenv/net/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChrootDriver } from '../src/chroot-driver.js';
import { joinNetwork } from '../src/chroot-network.js';
import { chrootUndo } from '../src/mapped-tree.js';

let stateDir: string;
let runner: HostNetRunner;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'chroot-net-unit-'));
  runner = new HostNetRunner();
});
afterEach(async () => {
  runner.stop();
  await rm(stateDir, { recursive: true, force: true });
});

/** A lease that records what is added, and what the runner had run by then. */
function recordingLease(added: { resource: LeaseResource; ranBefore: number }[]): Lease {
  return {
    add: async (resource: LeaseResource) => void added.push({ resource, ranBefore: runner.ran.length }),
  } as Lease;
}

const options = { runDir: '', firewall: 'nft' as const };

describe('joinNetwork', () => {
  beforeEach(() => {
    options.runDir = join(stateDir, 'run');
  });

  it('records the attachment before making it, then wires a veth into the namespace file', async () => {
    const added: { resource: LeaseResource; ranBefore: number }[] = [];
    const netns = join(stateDir, 'envs', 'execenv-aaaa', 'netns');
    const link = await joinNetwork(runner, options, {
      id: 'execenv-aaaa',
      stateDir,
      network: 'builds',
      netns,
      lease: recordingLease(added),
    });
    expect(added).toEqual([
      { resource: { kind: 'execenv-net', holder: 'execenv-aaaa', network: 'builds', stateDir }, ranBefore: 0 },
    ]);
    expect(link).toMatchObject({ address: '10.213.0.2', gateway: '10.213.0.1', ifname: 'eth0' });
    const h = link.hostInterface;
    const peer = h.replace(/^exvh/, 'exvp');
    expect(runner.ran.slice(-2)).toEqual([
      {
        argv: ['ip', '-batch', '-'],
        input: [
          `link add name ${h} type veth peer name ${peer} netns ${netns}`,
          `link set dev ${h} master ${link.network.bridge}`,
          `link set dev ${h} up`,
          '',
        ].join('\n'),
      },
      {
        argv: ['nsenter', `--net=${netns}`, '--', 'ip', '-batch', '-'],
        input: [
          `link set dev ${peer} name eth0`,
          'link set dev eth0 address 0a:58:0a:d5:00:02',
          'addr add 10.213.0.2/24 dev eth0',
          'link set dev eth0 up',
          'link set dev lo up',
          'route add default via 10.213.0.1 dev eth0',
          '',
        ].join('\n'),
      },
    ]);

    // close, a failed open and gc undo the record: the veth goes, then the network with its last holder.
    runner.ran.length = 0;
    await chrootUndo(runner, options)(added[0]!.resource);
    expect(runner.commands[0]).toBe(`ip link del dev ${h}`);
    expect(runner.commands).toContain(`ip link del dev ${link.network.bridge}`);
    expect(await new Networks({ stateDir, runner }).list()).toEqual([]);
  });

  it('refuses a malformed lease record, running nothing', async () => {
    await expect(chrootUndo(runner)({ kind: 'execenv-net', holder: 'execenv-aaaa' })).rejects.toThrow(
      /lacks its holder, network or state directory/,
    );
    expect(runner.ran).toEqual([]);
  });
});

describe('ChrootDriver.open on a network', () => {
  it.each([
    ['nat', 'rootless'],
    ['builds', 'rootless'],
    ['Not A Name', 'root'],
  ] as const)('refuses network %s in %s mode before creating anything', async (network, mode) => {
    const fake = new FakeRunner();
    const driver = new ChrootDriver({ mode, runner: fake, cacheDir: join(stateDir, 'cache') });
    const err = await driver.open({ image: '/nonexistent.tar', network }, { stateDir }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'network' });
    if (mode === 'rootless') expect((err as Error).message).toMatch(/rootless chroot .* root on the host/);
    expect(fake.ran).toEqual([]);
    expect(fake.spawned).toEqual([]);
    expect(await readdir(stateDir)).toEqual([]);
  });
});
