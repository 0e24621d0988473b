#!/usr/bin/env node
// SDK overhead against the raw tools, measured side by side in one run and
// reported as median ratios:
//   exec:  env.exec(['/bin/true'])            vs  chroot ROOT /bin/true
//          and vs the floor: fork + chroot + exec + wait in a C loop (floor.c)
//   100 concurrent execs on one agent connection vs 100 sequential ones
//   a 1 GB stream through cat, with host memory sampled
//   push:  env.push(hostTree, dir)            vs  tar -C tree -cf - . | tar -C ROOT/dir -xf -
//   pull:  env.pull(dir, hostDest)            vs  tar -C ROOT/dir -cf - . | tar -C dest -xf -
// Host memory (rss) is sampled during every transfer.
// Usage: node tools/bench/run.mjs [--image PATH] [--runs N] [--tree-mb N] [--stream-mb N]
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs, promisify } from 'node:util';
import { ChrootDriver } from '@execenv/chroot';
import { alternateBlocks, median, tarPipe, time } from './measure.mjs';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    image: { type: 'string' },
    runs: { type: 'string', default: '200' },
    'transfer-runs': { type: 'string', default: '5' },
    'tree-mb': { type: 'string', default: '100' },
    'stream-mb': { type: 'string', default: '1024' },
  },
});

async function fixtureImage() {
  if (values.image) return values.image;
  if (process.env.EXECENV_FIXTURE_BUSYBOX) return process.env.EXECENV_FIXTURE_BUSYBOX;
  const { stdout } = await run('bash', [new URL('../fixtures/busybox-rootfs.sh', import.meta.url).pathname]);
  return stdout.trim().split('\n').at(-1);
}

function sh(argv) {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code}`))));
  });
}

/** Runs fn while sampling rss; returns [ms, peak rss growth in MiB]. */
async function timeWithMemory(fn) {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  try {
    const ms = await time(fn);
    peak = Math.max(peak, process.memoryUsage().rss);
    return [ms, (peak - base) / 2 ** 20];
  } finally {
    clearInterval(timer);
  }
}

async function makeTree(dir, totalMb) {
  // A few large files and many small ones: 80% of the bytes in 8 files, 20% in 1000.
  const big = Math.floor((totalMb * 0.8) / 8) * 2 ** 20;
  const small = Math.floor((totalMb * 0.2 * 2 ** 20) / 1000);
  const chunk = Buffer.alloc(2 ** 20, 0x5a);
  for (let i = 0; i < 8; i++) {
    const parts = [];
    for (let left = big; left > 0; left -= chunk.length) parts.push(chunk.subarray(0, Math.min(left, chunk.length)));
    await writeFile(join(dir, `big-${i}.bin`), Buffer.concat(parts));
  }
  for (let d = 0; d < 10; d++) {
    await mkdir(join(dir, `d${d}`));
    for (let i = 0; i < 100; i++) await writeFile(join(dir, `d${d}`, `f${i}`), chunk.subarray(0, small));
  }
}

const image = await fixtureImage();
const stateDir = await mkdtemp(join(tmpdir(), 'execenv-bench-state-'));
const work = await mkdtemp(join(tmpdir(), 'execenv-bench-'));
const driver = new ChrootDriver({ mode: 'root' });
const env = await driver.open({ image }, { stateDir });
const root = join(stateDir, 'envs', env.id, 'root');
const rows = [];
try {
  // exec
  const runs = Number(values.runs);
  for (let i = 0; i < 20; i++) {
    await env.exec(['/bin/true']);
    await sh(['chroot', root, '/bin/true']);
  }
  const { sdk, raw } = await alternateBlocks(
    runs,
    () => env.exec(['/bin/true'], { check: true }),
    () => sh(['chroot', root, '/bin/true']),
  );
  rows.push({
    what: 'exec /bin/true',
    sdk: median(sdk),
    raw: median(raw),
    ratio: median(sdk) / median(raw),
    goal: '<= 0.6x time',
  });
  const floorBinary = join(work, 'floor');
  await run('cc', ['-O2', '-o', floorBinary, new URL('./floor.c', import.meta.url).pathname]);
  const floorUs = Number((await run(floorBinary, [root, '/bin/true', String(runs)])).stdout.trim());
  rows.push({
    what: 'exec vs C fork+exec',
    sdk: median(sdk),
    raw: floorUs / 1000,
    ratio: median(sdk) / (floorUs / 1000),
    goal: '<= 2x time',
  });

  // 100 commands at once on one connection, against the same 100 one after the other
  const concurrent = [];
  const sequential = [];
  for (let i = 0; i < 5; i++) {
    concurrent.push(await time(() => Promise.all(Array.from({ length: 100 }, () => env.exec(['/bin/true'])))));
    sequential.push(
      await time(async () => {
        for (let j = 0; j < 100; j++) await env.exec(['/bin/true']);
      }),
    );
  }
  rows.push({
    what: '100 execs at once',
    sdk: median(concurrent),
    raw: median(sequential),
    ratio: median(concurrent) / median(sequential),
    goal: '< 1x sequential',
  });

  // transfers
  const tree = join(work, 'tree');
  await mkdir(tree);
  await makeTree(tree, Number(values['tree-mb']));
  const pushSdk = [];
  const pushRaw = [];
  const pullSdk = [];
  const pullRaw = [];
  let memPeak = 0;
  // Each transfer starts with no dirty pages left by the one before (sync, not timed), and the SDK
  // and tar take turns going first: otherwise whichever runs second pays the first one's writeback.
  const settled = async (fn) => {
    await sh(['sync']);
    return fn();
  };
  for (let i = 0; i < Number(values['transfer-runs']); i++) {
    await mkdir(join(root, `tmp/raw${i}`));
    await mkdir(join(work, `pulled-raw${i}`));
    const sdkPush = async () => {
      const [ms, mem] = await settled(() => timeWithMemory(() => env.push(tree, `/tmp/sdk${i}`)));
      pushSdk.push(ms);
      memPeak = Math.max(memPeak, mem);
    };
    const rawPush = async () => pushRaw.push(await settled(() => time(() => tarPipe(tree, join(root, `tmp/raw${i}`)))));
    const sdkPull = async () => {
      const [ms, mem] = await settled(() =>
        timeWithMemory(() => env.pull(`/tmp/sdk${i}`, join(work, `pulled-sdk${i}`))),
      );
      pullSdk.push(ms);
      memPeak = Math.max(memPeak, mem);
    };
    const rawPull = async () =>
      pullRaw.push(await settled(() => time(() => tarPipe(join(root, `tmp/raw${i}`), join(work, `pulled-raw${i}`)))));
    for (const step of i % 2 ? [rawPush, sdkPush, rawPull, sdkPull] : [sdkPush, rawPush, sdkPull, rawPull])
      await step();
    await env.exec(['rm', '-rf', `/tmp/sdk${i}`, `/tmp/raw${i}`]);
    await rm(join(work, `pulled-sdk${i}`), { recursive: true });
    await rm(join(work, `pulled-raw${i}`), { recursive: true });
  }
  // Throughput ratio: raw time over SDK time (1.0 = as fast as tar | tar).
  const transfer = (what, sdk, raw) => ({
    what,
    sdk: median(sdk),
    raw: median(raw),
    ratio: median(raw) / median(sdk),
    goal: '>= 1.0x throughput',
  });
  rows.push(transfer(`push ${values['tree-mb']} MB tree`, pushSdk, pushRaw));
  rows.push(transfer(`pull ${values['tree-mb']} MB tree`, pullSdk, pullRaw));
  // A 1 GB stream through cat: memory must stay flat, whatever the size.
  const streamBytes = Number(values['stream-mb']) * 2 ** 20;
  const block = Buffer.alloc(1 << 20, 0x61);
  let seen = 0;
  const [streamMs, streamMem] = await timeWithMemory(async () => {
    const input = Readable.from(
      (function* () {
        for (let left = streamBytes; left > 0; left -= block.length)
          yield block.subarray(0, Math.min(left, block.length));
      })(),
    );
    const r = await env.exec(['cat'], { stdin: input, buffer: false, onStdout: (c) => (seen += c.length) });
    if (r.exitCode !== 0 || seen !== streamBytes) throw new Error(`cat stream: exit ${r.exitCode}, ${seen} bytes`);
  });
  console.log(`execenv benchmark (${runs} exec runs, ${values['transfer-runs']} transfer runs, medians)`);
  console.log('what                     sdk ms     raw ms   ratio  goal');
  for (const r of rows)
    console.log(
      `${r.what.padEnd(22)} ${r.sdk.toFixed(2).padStart(8)} ${r.raw.toFixed(2).padStart(10)} ${r.ratio.toFixed(2).padStart(7)}  ${r.goal}`,
    );
  console.log(
    `${values['stream-mb']} MB through cat: ${((streamBytes / 2 ** 20 / streamMs) * 1000).toFixed(0)} MiB/s, peak host rss growth ${streamMem.toFixed(1)} MiB`,
  );
  console.log(`peak host rss growth during transfers: ${memPeak.toFixed(1)} MiB (tree: ${values['tree-mb']} MB)`);
} finally {
  await env.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
}
