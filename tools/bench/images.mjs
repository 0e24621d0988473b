#!/usr/bin/env node
// @execenv/images against the raw tools, side by side in one run, medians:
//   rootfs -> directory:    rootfsDirectory()        vs  tar -C DIR -xf ROOTFS
//   rootfs -> LXD unified:  convertToLxdUnified()    vs  tar -xf into rootfs/ + tar -c of metadata.yaml, templates, rootfs | zstd -T0 -3
//   200 MB download:        download() from loopback vs  curl -o (the server runs in a process of its own)
//                           and vs  curl | tee FILE | openssl dgst -sha256, the same job download() does
//   index: resolve:         resolveImage('index:…') from a signed loopback lxc-download server, cold (empty
//                           cache: index, signatures, download, verify) vs warm (same cache, server stopped)
// Peak host rss growth is sampled during the SDK runs.
// Usage: node tools/bench/images.mjs [--rootfs PATH.tar.zst] [--runs N] [--only directory,unified,download,resolve]
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hostRunner } from '@execenv/core';
import {
  convertToLxdUnified,
  download,
  ImageCache,
  lxdMetadataYaml,
  resolveImage,
  rootfsDirectory,
} from '@execenv/images';
import { generateSigningKey, ImageServer } from '@execenv/images/testing';
import { median } from './measure.mjs';

const { values } = parseArgs({
  options: {
    rootfs: { type: 'string' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: 'directory,unified,download,resolve' },
  },
});
const only = new Set(values.only.split(','));
const rootfs = values.rootfs ?? process.env.EXECENV_FIXTURE_MINBASE;
if (!rootfs)
  throw new Error('give --rootfs or set EXECENV_FIXTURE_MINBASE (tools/fixtures/minbase-rootfs.sh prints it)');
const runs = Number(values.runs);
const sh = (argv) =>
  new Promise((resolve, reject) =>
    spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] }).on('exit', (c) =>
      c === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: ${c}`)),
    ),
  );
/** Runs argvs as a kernel pipeline, each one's stdout the next one's stdin; resolves when all exit 0. */
function pipeline(argvs) {
  const procs = [];
  for (const [i, argv] of argvs.entries()) {
    const last = i === argvs.length - 1;
    procs.push(
      spawn(argv[0], argv.slice(1), {
        stdio: [i ? procs[i - 1].stdout : 'ignore', last ? 'ignore' : 'pipe', 'inherit'],
      }),
    );
  }
  return Promise.all(
    procs.map(
      (p, i) =>
        new Promise((resolve, reject) =>
          p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`${argvs[i].join(' ')}: ${c}`)))),
        ),
    ),
  );
}
async function timed(fn, memory) {
  let peak = 0;
  const base = process.memoryUsage().rss;
  const timer = memory ? setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss - base)), 5) : undefined;
  const t = performance.now();
  await fn();
  clearInterval(timer);
  return [performance.now() - t, peak / 2 ** 20];
}

const work = await mkdtemp(join(tmpdir(), 'execenv-bench-images-'));
const info = { architecture: 'amd64', os: 'debian', release: 'bookworm' };
const rows = [];
// Each run's output is deleted and written back before the next starts: otherwise the
// writeback of gigabytes from earlier runs lands in whichever run comes next.
async function settle() {
  for (const name of await readdir(work)) await rm(join(work, name), { recursive: true, force: true });
  await sh(['sync']);
}
async function compare(what, sdk, raw, goal, ratioOf) {
  const s = [];
  const r = [];
  let memPeak = 0;
  for (let i = 0; i < runs; i++) {
    const [ms, mem] = await timed(() => sdk(i), true);
    s.push(ms);
    memPeak = Math.max(memPeak, mem);
    await settle();
    r.push((await timed(() => raw(i)))[0]);
    await settle();
  }
  rows.push({ what, sdk: median(s), raw: median(r), ratio: ratioOf(median(s), median(r)), goal, memPeak });
}
const throughput = (sdk, raw) => raw / sdk;
try {
  if (only.has('directory'))
    await compare(
      'rootfs -> directory',
      (i) =>
        rootfsDirectory(rootfs, { cache: new ImageCache({ dir: join(work, `c-dir-${i}`) }), runner: hostRunner() }),
      async (i) => {
        await mkdir(join(work, `raw-dir-${i}`));
        await sh(['tar', '-C', join(work, `raw-dir-${i}`), '-xf', rootfs]);
      },
      '>= 0.8x throughput',
      throughput,
    );
  if (only.has('unified'))
    await compare(
      'rootfs -> LXD unified',
      (i) =>
        convertToLxdUnified(rootfs, info, {
          cache: new ImageCache({ dir: join(work, `c-lxd-${i}`) }),
          runner: hostRunner(),
        }),
      async (i) => {
        const d = join(work, `raw-lxd-${i}`);
        await mkdir(join(d, 'rootfs'), { recursive: true });
        await mkdir(join(d, 'templates'));
        await writeFile(join(d, 'metadata.yaml'), lxdMetadataYaml(info));
        await writeFile(join(d, 'templates', 'hostname.tpl'), '{{ container.name }}\n');
        await sh(['tar', '-C', join(d, 'rootfs'), '-xf', rootfs]);
        await pipeline([
          ['tar', '-C', d, '-c', 'metadata.yaml', 'templates', 'rootfs'],
          ['zstd', '-q', '-T0', '-3', '-o', join(work, `raw-lxd-${i}.tar.zst`)],
        ]);
      },
      '>= 0.8x throughput',
      throughput,
    );
  if (only.has('download')) {
    const server = spawn(process.execPath, [join(import.meta.dirname, 'serve-bytes.mjs'), '200'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [port] = await once(server.stdout, 'data');
      const url = `http://127.0.0.1:${String(port).trim()}/big`;
      await compare(
        '200 MB download',
        (i) => download(`${url}?${i}`, { cache: new ImageCache({ dir: join(work, `c-dl-${i}`) }) }),
        (i) => sh(['curl', '-s', '-o', join(work, `raw-dl-${i}`), `${url}?raw${i}`]),
        '>= 0.8x throughput',
        throughput,
      );
      // The same job as download(): fetch, write and check a sha256, with openssl's SHA-NI code.
      await compare(
        '200 MB download + sha256',
        (i) => download(`${url}?v${i}`, { cache: new ImageCache({ dir: join(work, `c-dlv-${i}`) }) }),
        (i) =>
          pipeline([
            ['curl', '-s', `${url}?rawv${i}`],
            ['tee', join(work, `raw-dlv-${i}`)],
            ['openssl', 'dgst', '-sha256'],
          ]),
        'reference: same job',
        throughput,
      );
    } finally {
      server.kill('SIGTERM');
    }
  }
  if (only.has('resolve')) {
    // The rootfs stands in for rootfs.tar.xz: only fetching, verifying and caching are measured.
    const key = await generateSigningKey();
    const body = await readFile(rootfs);
    const served = { distribution: 'debian', release: 'bookworm', architecture: 'amd64' };
    const cold = [];
    const warm = [];
    for (let i = 0; i < runs; i++) {
      const server = await new ImageServer().start();
      await server.publishLxcDownload(served, { rootfs: body, meta: Buffer.from('meta') }, key.privateKey);
      const opts = {
        cache: new ImageCache({ dir: join(work, `c-idx-${i}`) }),
        servers: { lxc: server.url },
        keys: [key.publicKey],
      };
      cold.push((await timed(() => resolveImage('index:debian/bookworm/amd64', opts)))[0]);
      await server.stop();
      warm.push((await timed(() => resolveImage('index:debian/bookworm/amd64', opts)))[0]);
      await settle();
    }
    rows.push({
      what: `index: resolve ${(body.length / 2 ** 20).toFixed(0)} MB`,
      sdk: median(warm),
      raw: median(cold),
      ratio: median(cold) / median(warm),
      goal: 'warm (server stopped) vs cold; ratio = speed-up',
      memPeak: 0,
    });
  }
  console.log(`@execenv/images benchmark (${runs} runs each, medians, rootfs ${rootfs})`);
  console.log('what                       sdk ms     raw ms   ratio  rss+ MiB  goal');
  for (const r of rows)
    console.log(
      `${r.what.padEnd(24)} ${r.sdk.toFixed(0).padStart(8)} ${r.raw.toFixed(0).padStart(10)} ${r.ratio.toFixed(2).padStart(7)} ${r.memPeak.toFixed(1).padStart(9)}  ${r.goal}`,
    );
  console.log("rss+: peak growth of this process's resident memory during the SDK runs");
} finally {
  await rm(work, { recursive: true, force: true });
}
