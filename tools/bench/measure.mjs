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

/** Copies a directory's content into another with `tar -c | tar -x`, the raw tool transfers are measured against. */
export function tarPipe(fromDir, toDir) {
  return new Promise((resolve, reject) => {
    const c = spawn('tar', ['-C', fromDir, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const x = spawn('tar', ['-C', toDir, '-xf', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    c.stdout.pipe(x.stdin);
    let left = 2;
    const done = (code) => (code === 0 ? --left === 0 && resolve() : reject(new Error(`tar exit ${code}`)));
    c.once('exit', done);
    x.once('exit', done);
  });
}
