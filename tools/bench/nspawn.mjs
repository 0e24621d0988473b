#!/usr/bin/env node
// The nspawn driver against the raw tools, measured side by side in one run
// and reported as medians and ratios:
//   open → first exec → close   vs  systemd-nspawn (same flags, an overlay) ... /bin/true
//   open to ready (plain mode)   alone
//   exec of /bin/true            vs  spawning nsenter -t PID -a /bin/true into the same container
//   8 environments in parallel:  open, exec, close
// Usage: node tools/bench/nspawn.mjs [--image PATH] [--runs N] [--exec-runs N]
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { NspawnDriver } from '@execenv/nspawn';
import { alternateBlocks, median, time } from './measure.mjs';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    image: { type: 'string' },
    runs: { type: 'string', default: '20' },
    'exec-runs': { type: 'string', default: '200' },
  },
});
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function fixtureImage() {
  if (values.image) return values.image;
  if (process.env.EXECENV_FIXTURE_BUSYBOX) return process.env.EXECENV_FIXTURE_BUSYBOX;
  const { stdout } = await run('bash', [new URL('../fixtures/busybox-rootfs.sh', import.meta.url).pathname]);
  return stdout.trim().split('\n').at(-1);
}

function sh(argv, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err}`))));
  });
}

const fmt = (ms) => `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
const runs = Number(values.runs);
const execRuns = Number(values['exec-runs']);
const driver = new NspawnDriver();
const tarball = await fixtureImage();

// One extracted root for both sides: the raw runs' overlay lower layer, and the driver's image (a directory).
const scratch = await mkdtemp(join(tmpdir(), 'execenv-bench-nspawn-'));
const base = join(scratch, 'rootfs');
await mkdir(base);
await run('tar', ['--numeric-owner', '-C', base, '-xf', tarball]);
const image = base;

const raw = [];
const sdk = [];
const ready = [];
try {
  for (let i = 0; i < runs; i++) {
    const upper = join(scratch, `upper-${i}`);
    await mkdir(upper);
    raw.push(
      await time(() =>
        sh(
          [
            'systemd-nspawn',
            '--quiet',
            '--register=no',
            '--keep-unit',
            '--settings=no',
            '--link-journal=no',
            `--machine=bench-${process.pid}-${i}`,
            `--directory=${base}`,
            `--overlay=${base}:${upper}:/`,
            '--private-network',
            '--console=pipe',
            '--',
            '/bin/true',
          ],
          { PATH: HOST_PATH, SYSTEMD_NSPAWN_LOCK: '0' },
        ),
      ),
    );
    await rm(upper, { recursive: true, force: true });
    sdk.push(
      await time(async () => {
        let env;
        ready.push(await time(async () => (env = await driver.open({ image }))));
        await env.exec(['/bin/true'], { check: true });
        await env.close();
      }),
    );
  }

  const env = await driver.open({ image });
  const init = (await driver.list())
    .find((e) => e.id === env.id)
    .resources.at(-1)
    .replace(/^process /, '');
  const { sdk: execs, raw: nsenters } = await alternateBlocks(
    execRuns,
    () => env.exec(['/bin/true'], { check: true }),
    () => sh(['nsenter', '-t', init, '-a', '/bin/true'], { PATH: HOST_PATH }),
  );
  await env.close();

  const parallel = [];
  for (let i = 0; i < Math.max(3, Math.floor(runs / 4)); i++)
    parallel.push(
      await time(async () => {
        const envs = await Promise.all(Array.from({ length: 8 }, () => driver.open({ image })));
        await Promise.all(envs.map((e) => e.exec(['/bin/true'], { check: true })));
        await Promise.all(envs.map((e) => e.close()));
      }),
    );

  const rows = [
    ['open → exec /bin/true → close', median(sdk), 'systemd-nspawn … /bin/true', median(raw)],
    ['exec /bin/true', median(execs), 'nsenter -t PID -a /bin/true', median(nsenters)],
  ];
  console.log(`nspawn benchmark: ${tarball}, ${runs} lifecycle runs, ${execRuns} exec runs (medians)`);
  for (const [what, ms, rawWhat, rawMs] of rows)
    console.log(
      `${what.padEnd(32)} ${fmt(ms).padStart(10)}   ${rawWhat.padEnd(28)} ${fmt(rawMs).padStart(10)}   ratio ${(ms / rawMs).toFixed(2)}x`,
    );
  console.log(`${'open to ready (plain mode)'.padEnd(32)} ${fmt(median(ready)).padStart(10)}`);
  console.log(`${'8 in parallel: open, exec, close'.padEnd(32)} ${fmt(median(parallel)).padStart(10)}`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
