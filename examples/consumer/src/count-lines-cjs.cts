/**
 * The same job from a CommonJS module: `require('@execenv/core')` loads the
 * ES module (Node 20.19 and later). There is no top-level await here, so the
 * environment is closed in `finally` instead of by `await using`.
 *
 *   node dist/count-lines-cjs.cjs IMAGE SOURCE_DIR REPORT_FILE
 */
import { open } from '@execenv/core';

async function main(image: string, source: string, report: string): Promise<void> {
  const env = await open('chroot', { image });
  try {
    await env.push(source, '/job/src');
    await env.exec(['sh', '-c', 'cd /job/src && find . -type f | sort | xargs wc -l > /job/report.txt'], {
      check: true,
      timeout: 60_000,
    });
    await env.pull('/job/report.txt', report);
    console.log(`counted in ${env.id}`);
  } finally {
    await env.close();
  }
}

const [image, source, report] = process.argv.slice(2);
if (!image || !source || !report) throw new Error('usage: count-lines-cjs IMAGE SOURCE_DIR REPORT_FILE');
main(image, source, report).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
