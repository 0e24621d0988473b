#!/usr/bin/env node
// @execenv/podman against the raw podman CLI, side by side in one run, medians:
//   exec of `true`:      env.exec(['true'])                 vs  podman exec CONTAINER true
//   open -> close:       open() + exec(['true']) + close()  vs  podman run --rm IMAGE true (same imported image),
//                        of a busybox env                       one sample of each in turn (the host's load drifts)
//   push + pull 100 MB:  env.push(dir) + env.pull(dir)      vs  podman cp DIR C:/x + podman cp C:/x DIR
//                        (a tree of 100 files of 1 MB)
//   8 in parallel:       8 open + exec + close at once      vs  8 podman run --rm at once
// Ratios are SDK / raw: below 1 means the SDK is faster.
// Usage: node tools/bench/podman.mjs [--rootfs PATH.tar] [--runs N] [--only exec,open,files,parallel]
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PodmanDriver } from '@execenv/podman';
import { median, time } from './measure.mjs';

const { values } = parseArgs({
  options: {
    rootfs: { type: 'string' },
    runs: { type: 'string', default: '5' },
    only: { type: 'string', default: 'exec,open,files,parallel' },
  },
});
const only = new Set(values.only.split(','));
const rootfs = values.rootfs ?? process.env.EXECENV_FIXTURE_BUSYBOX;
if (!rootfs) throw new Error('give --rootfs or set EXECENV_FIXTURE_BUSYBOX (a busybox rootfs tarball)');
const runs = Number(values.runs);
const sh = (argv) =>
  new Promise((resolve, reject) =>
    spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] }).on('exit', (c) =>
      c === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: ${c}`)),
    ),
  );
const output = (argv) =>
  new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.on('exit', (c) => (c === 0 ? resolve(out.trim()) : reject(new Error(`${argv.join(' ')}: ${c}`))));
  });
async function measure(fn, n = runs) {
  const xs = [];
  for (let i = 0; i < n; i++) xs.push(await time(fn));
  return median(xs);
}
/** Medians of `a` and `b` sampled in turn, so both see the same load. */
async function measurePair(a, b, n = runs) {
  const xs = [];
  const ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(await time(a));
    ys.push(await time(b));
  }
  return [median(xs), median(ys)];
}
const rows = [];
function report(name, sdk, raw, goal) {
  const ratio = sdk / raw;
  rows.push({ name, sdk: sdk.toFixed(1), raw: raw.toFixed(1), ratio: ratio.toFixed(3), goal });
  console.log(`${name}: sdk ${sdk.toFixed(1)} ms, raw ${raw.toFixed(1)} ms, ratio ${ratio.toFixed(3)} (goal ${goal})`);
}

const driver = new PodmanDriver();
const spec = { image: rootfs };
const work = await mkdtemp(join(tmpdir(), 'execenv-bench-podman-'));
// One open first: the tarball is converted and imported here, outside every measurement.
const env = await driver.open(spec);
const image = (await output(['podman', 'inspect', '--format', '{{.ImageName}}', env.container])).split('\n')[0];
const raw = `execenv-bench-raw-${process.pid}`;
await sh(['podman', 'run', '-d', '--name', raw, '--network', 'none', image, 'sleep', '100000']);
try {
  if (only.has('exec')) {
    // 20 per sample: one exec is a few milliseconds.
    const sdk = await measure(async () => {
      for (let i = 0; i < 20; i++) await env.exec(['true']);
    });
    const podman = await measure(async () => {
      for (let i = 0; i < 20; i++) await sh(['podman', 'exec', raw, 'true']);
    });
    report('exec true (x20)', sdk, podman, '<= 0.1');
  }
  if (only.has('open')) {
    const [sdk, podman] = await measurePair(
      async () => {
        const e = await driver.open(spec);
        await e.exec(['true'], { check: true });
        await e.close();
      },
      () => sh(['podman', 'run', '--rm', '--network', 'none', image, 'true']),
    );
    report('open -> close', sdk, podman, '<= 1.1');
  }
  if (only.has('files')) {
    const tree = join(work, 'tree');
    await mkdir(tree);
    const mb = Buffer.alloc(1 << 20);
    for (let i = 0; i < 100; i++) {
      mb.fill(i);
      await writeFile(join(tree, `f${i}`), mb);
    }
    let n = 0;
    const sdk = await measure(async () => {
      const out = join(work, `sdk-out-${n++}`);
      await env.push(tree, '/tmp/tree');
      await env.pull('/tmp/tree', out);
      await env.exec(['rm', '-rf', '/tmp/tree'], { check: true });
      await rm(out, { recursive: true });
    });
    const podman = await measure(async () => {
      const out = join(work, `raw-out-${n++}`);
      await sh(['podman', 'cp', tree, `${raw}:/tmp/tree`]);
      await sh(['podman', 'cp', `${raw}:/tmp/tree`, out]);
      await sh(['podman', 'exec', raw, 'rm', '-rf', '/tmp/tree']);
      await rm(out, { recursive: true });
    });
    // Throughput ratio: raw time over SDK time, so above 1 means the SDK moves bytes faster.
    rows.push({
      name: 'push+pull 100 MB throughput',
      sdk: sdk.toFixed(1),
      raw: podman.toFixed(1),
      ratio: (podman / sdk).toFixed(3),
      goal: '>= 1.0',
    });
    console.log(
      `push+pull 100 MB: sdk ${sdk.toFixed(1)} ms, raw ${podman.toFixed(1)} ms, throughput ratio ${(podman / sdk).toFixed(3)} (goal >= 1.0)`,
    );
  }
  if (only.has('parallel')) {
    const sdk = await measure(
      () =>
        Promise.all(
          Array.from({ length: 8 }, async () => {
            const e = await driver.open(spec);
            await e.exec(['true'], { check: true });
            await e.close();
          }),
        ),
      3,
    );
    const podman = await measure(
      () =>
        Promise.all(Array.from({ length: 8 }, () => sh(['podman', 'run', '--rm', '--network', 'none', image, 'true']))),
      3,
    );
    report('8 environments in parallel (open, exec, close)', sdk, podman, 'report');
  }
} finally {
  await env.close();
  await sh(['podman', 'rm', '--force', '--time', '0', raw]);
  await rm(work, { recursive: true, force: true });
}
console.table(rows);
