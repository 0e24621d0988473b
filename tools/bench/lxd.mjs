#!/usr/bin/env node
// The LXD driver against the raw `lxc` tool, measured side by side in one run
// and reported as median ratios (SDK / lxc):
//   exec:    env.exec(['true'])                 vs  lxc exec NAME -- true
//   push:    env.push(100 MB file, path)         vs  lxc file push FILE NAME/path
//   tree:    env.push(100 MB tree, dir)          vs  lxc file push -r DIR NAME/dir
//   launch:  open → ready → close                vs  lxc launch --ephemeral + lxc delete --force (alternating)
//   8 instances opened, used and closed in parallel (wall time).
// Usage: node tools/bench/lxd.mjs [--image PATH] [--runs N] [--transfer-runs N] [--mb N]
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { LxdDriver } from '@execenv/lxd';
import { median, time as timed } from './measure.mjs';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    image: { type: 'string' },
    runs: { type: 'string', default: '30' },
    'transfer-runs': { type: 'string', default: '3' },
    'launch-runs': { type: 'string', default: '5' },
    mb: { type: 'string', default: '100' },
  },
});
const image = values.image ?? process.env.EXECENV_FIXTURE_BUSYBOX ?? '/root/.cache/execenv/fixtures/busybox.tar';
const runs = Number(values.runs);
const transferRuns = Number(values['transfer-runs']);
const launchRuns = Number(values['launch-runs']);
const mb = Number(values.mb);

async function series(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await timed(() => fn(i)));
  return median(out);
}

/** Medians of `a` and `b` sampled in turn, so both see the load of the same moments. */
async function alternating(n, a, b) {
  const xs = [];
  const ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(await timed(() => a(i)));
    ys.push(await timed(() => b(i)));
  }
  return [median(xs), median(ys)];
}
// stdin closed: lxc launch reads instance YAML from a stdin that is not a terminal.
const lxc = (...args) => {
  const p = run('lxc', args, { maxBuffer: 1 << 20 });
  p.child.stdin?.end();
  return p;
};
function report(name, sdk, raw, goal) {
  const ratio = sdk / raw;

  console.log(
    `${name.padEnd(34)} sdk ${sdk.toFixed(1).padStart(8)} ms   lxc ${raw.toFixed(1).padStart(8)} ms   ratio ${ratio.toFixed(2)}x (goal ${goal})`,
  );
}

const driver = new LxdDriver();
const availability = await driver.probe();
if (!availability.available) {
  console.log(`LXD is unavailable: ${availability.reason}`);
  process.exit(0);
}
console.log(`LXD ${availability.version} at ${availability.details?.endpoint}; image ${image}`);

const work = await mkdtemp(join(tmpdir(), 'execenv-bench-lxd-'));
const env = await driver.open({ image }, { closeOnSignal: true });
try {
  // exec
  for (let i = 0; i < 3; i++) await env.exec(['true']);
  const sdkExec = await series(runs, () => env.exec(['true'], { check: true }));
  const rawExec = await series(runs, () => lxc('exec', env.id, '--', 'true'));
  report('exec true', sdkExec, rawExec, '<= 0.5x');

  // one large file
  const big = join(work, 'big');
  const block = Buffer.alloc(1 << 20, 7);
  await writeFile(big, Buffer.concat(Array.from({ length: mb }, () => block)));
  const sdkPush = await series(transferRuns, (i) => env.push(big, `/tmp/sdk-big-${i}`));
  const rawPush = await series(transferRuns, (i) => lxc('file', 'push', big, `${env.id}/tmp/lxc-big-${i}`));
  report(`push ${mb} MB file`, sdkPush, rawPush, '>= 1.0x throughput (ratio <= 1.0)');
  await env.exec(['sh', '-c', 'rm -f /tmp/sdk-big-* /tmp/lxc-big-*']);

  // a tree of 1 MB files
  const tree = join(work, 'tree');
  for (let d = 0; d < 10; d++) {
    await mkdir(join(tree, `d${d}`), { recursive: true });
    for (let f = 0; f < mb / 10; f++) await writeFile(join(tree, `d${d}`, `f${f}`), block);
  }
  const sdkTree = await series(transferRuns, (i) => env.push(tree, `/tmp/sdk-tree-${i}`));
  const rawTree = await series(transferRuns, async (i) => {
    await env.exec(['mkdir', '-p', `/tmp/lxc-tree-${i}`]);
    await lxc('file', 'push', '-r', `${tree}/.`, `${env.id}/tmp/lxc-tree-${i}/`);
  });
  report(`push ${mb} MB tree (${mb} files)`, sdkTree, rawTree, '>= 1.0x throughput (ratio <= 1.0)');
  await env.exec(['sh', '-c', 'rm -rf /tmp/sdk-tree-* /tmp/lxc-tree-*']);

  // launch → ready → close, from the same imported image
  const alias = (await (await driver.client()).get(`/1.0/instances/${env.id}`)).config['volatile.base_image'];
  const [sdkLaunch, rawLaunch] = await alternating(
    launchRuns,
    async () => {
      const e = await driver.open({ image }, { closeOnSignal: false });
      await e.close();
    },
    async (i) => {
      const name = `execenv-bench-${process.pid}-${i}`;
      await lxc('launch', alias, name, '--ephemeral', '-c', 'raw.lxc=lxc.init.cmd = /bin/sleep infinity');
      await lxc('exec', name, '--', 'true');
      await lxc('delete', '--force', name);
    },
  );
  report('launch → ready → close', sdkLaunch, rawLaunch, '<= 1.0x');

  // eight at once
  const parallel = await timed(() =>
    Promise.all(
      Array.from({ length: 8 }, async () => {
        const e = await driver.open({ image }, { closeOnSignal: false });
        try {
          await e.exec(['true'], { check: true });
        } finally {
          await e.close();
        }
      }),
    ),
  );
  console.log(
    `8 instances opened, exec'd and closed in parallel: ${parallel.toFixed(0)} ms wall (${(parallel / 8).toFixed(0)} ms per instance)`,
  );
} finally {
  await env.close();
  (await driver.client()).close();
  await rm(work, { recursive: true, force: true });
}
