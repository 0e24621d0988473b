// What every benchmark here measures with: medians, wall time, and the raw tar | tar pipe.
import { spawn } from 'node:child_process';

/** The median of a list of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Milliseconds `fn` takes to settle. */
export async function time(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/**
 * Times `sdk` and `raw` `runs` times each, alternating blocks of 20, and
 * returns both lists of milliseconds. Blocks, not single runs: right after
 * Node has spawned a raw tool's process it is still busy with that child (its
 * streams, its exit), and that would be timed as part of the next SDK call.
 */
export async function alternateBlocks(runs, sdk, raw, block = 20) {
  const sdkMs = [];
  const rawMs = [];
  for (let i = 0; i < runs; i += block) {
    for (let j = 0; j < block; j++) sdkMs.push(await time(sdk));
    for (let j = 0; j < block; j++) rawMs.push(await time(raw));
  }
  return { sdk: sdkMs, raw: rawMs };
}

/**
 * Copies a directory's content into another with `tar -c | tar -x`, the raw
 * tool transfers are measured against: the packing tar's stdout is the
 * extracting tar's stdin, one kernel pipe as in a shell, with nothing of
 * this process in between.
 */
export function tarPipe(fromDir, toDir) {
  return new Promise((resolve, reject) => {
    const c = spawn('tar', ['-C', fromDir, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const x = spawn('tar', ['-C', toDir, '-xf', '-'], { stdio: [c.stdout, 'ignore', 'inherit'] });
    c.stdout.destroy(); // the extracting tar holds the pipe now; this process reads none of it
    let left = 2;
    const done = (code) => (code === 0 ? --left === 0 && resolve() : reject(new Error(`tar exit ${code}`)));
    c.once('exit', done);
    x.once('exit', done);
  });
}
