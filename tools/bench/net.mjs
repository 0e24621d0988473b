#!/usr/bin/env node
// @execenv/net against the raw iproute2 commands, side by side in one run, medians, inside network
// namespaces this script makes and removes (nothing on the machine's own network changes):
//   attach + release:  Networks.attachNamespace() + release() on an existing network (allocation, lock,
//                      state file, dnsmasq host lists included)  vs  the same commands by hand
//                      (two `ip -batch -`, as the SDK runs them, and one `ip link del`)
//   network lifecycle: the first attach (bridge, nft rules, dnsmasq) + the last release
// Usage: node tools/bench/net.mjs [--runs N]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner } from '@execenv/core';
import { Networks } from '@execenv/net';
import { median } from './measure.mjs';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' } } });
const runs = Number(values.runs);
const tag = randomBytes(3).toString('hex');
const host = `exvbench${tag}-h`;
const env = `exvbench${tag}-e`;
const sh = (argv) => execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
const inHost = (argv) => sh(['nsenter', `--net=/run/netns/${host}`, '--', ...argv]);
const batch = (prefix, lines) =>
  execFileSync(prefix[0], [...prefix.slice(1), 'ip', '-batch', '-'], { input: lines.map((l) => `${l}\n`).join('') });

const stateDir = await mkdtemp(join(tmpdir(), 'execenv-bench-net-'));
const runDir = `/run/execenv/net-bench-${tag}`;
sh(['ip', 'netns', 'add', host]);
sh(['ip', 'netns', 'add', env]);
const nets = new Networks({
  stateDir,
  runDir,
  enableForwarding: true,
  runner: createRunner({ sudo: ['nsenter', `--net=/run/netns/${host}`, '--'] }),
});
const netns = { path: `/run/netns/${env}` };
try {
  const lifecycle = [];
  for (let i = 0; i < Math.min(runs, 5); i++) {
    const t = performance.now();
    await nets.attachNamespace({ network: 'bench', holder: 'e', netns });
    await nets.release('e');
    lifecycle.push(performance.now() - t);
  }
  // Keep the network up while measuring attach + release.
  const keeper = await nets.allocate({ network: 'bench', holder: 'keeper' });
  const sdk = [];
  const raw = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await nets.attachNamespace({ network: 'bench', holder: 'e', netns });
    await nets.release('e');
    sdk.push(performance.now() - t);

    t = performance.now();
    const br = keeper.network.bridge;
    const address = `${keeper.address.replace(/\d+$/, '200')}/${keeper.prefixLength}`;
    batch(
      ['nsenter', `--net=/run/netns/${host}`, '--'],
      [
        `link add name exvhraw type veth peer name exvpraw netns ${netns.path}`,
        `link set dev exvhraw master ${br}`,
        'link set dev exvhraw up',
      ],
    );
    batch(
      ['nsenter', `--net=/run/netns/${env}`, '--'],
      [
        'link set dev exvpraw name eth0',
        'link set dev eth0 address 0a:58:0a:00:00:09',
        `addr add ${address} dev eth0`,
        'link set dev eth0 up',
        'link set dev lo up',
        `route add default via ${keeper.gateway} dev eth0`,
      ],
    );
    inHost(['ip', 'link', 'del', 'dev', 'exvhraw']);
    raw.push(performance.now() - t);
  }
  await nets.release('keeper');
  const ms = (x) => `${x.toFixed(1)} ms`;
  console.log(`network create + remove (first attach, last release): ${ms(median(lifecycle))}`);
  console.log(`attach + release, SDK:        ${ms(median(sdk))}`);
  console.log(`attach + release, raw ip:     ${ms(median(raw))}`);
  console.log(`ratio SDK / raw:              ${(median(sdk) / median(raw)).toFixed(2)}`);
} finally {
  await nets.gc();
  sh(['ip', 'netns', 'del', env]);
  sh(['ip', 'netns', 'del', host]);
  await rm(stateDir, { recursive: true, force: true });
  await rm(runDir, { recursive: true, force: true });
}
