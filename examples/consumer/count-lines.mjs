// The same job in plain JavaScript for Node 20, which has no `await using`
// syntax: close the environment in `finally`.
//
//   node count-lines.mjs IMAGE SOURCE_DIR REPORT_FILE
import { open } from '@execenv/core';

const [image, source, report] = process.argv.slice(2);
if (!image || !source || !report) throw new Error('usage: count-lines.mjs IMAGE SOURCE_DIR REPORT_FILE');

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
