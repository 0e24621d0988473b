/**
 * The job, in TypeScript: push a source tree into a throwaway chroot, count
 * its lines there, pull the report out. Leaving the block closes the
 * environment: processes, mounts and directories are gone.
 *
 *   node dist/count-lines.js IMAGE SOURCE_DIR REPORT_FILE
 */
import { hasCode, open } from '@execenv/core';
import { parseReference } from '@execenv/images';

const [image, source, report] = process.argv.slice(2);
if (!image || !source || !report) throw new Error('usage: count-lines IMAGE SOURCE_DIR REPORT_FILE');
parseReference(image); // a malformed reference fails here, naming what is wrong

try {
  await using env = await open('chroot', { image });
  await env.push(source, '/job/src');
  await env.exec(['sh', '-c', 'cd /job/src && find . -type f | sort | xargs wc -l > /job/report.txt'], {
    check: true,
    timeout: 60_000,
  });
  await env.pull('/job/report.txt', report);
  console.log(`counted in ${env.id}`);
} catch (err) {
  if (hasCode(err, 'DRIVER_UNAVAILABLE')) console.error(`cannot run here: ${err.message}`);
  throw err;
}
