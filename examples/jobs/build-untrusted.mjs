// The sbuild case: build code nobody has reviewed, where it can reach
// neither the network nor the host, and keep only its artifacts. Each build
// gets a throwaway environment: whatever the build script does to it (or
// leaves running) is destroyed with it.
//
//   node build-untrusted.mjs IMAGE SOURCE_DIR OUT_DIR [DRIVER]
//
// SOURCE_DIR must hold an executable build.sh that writes its artifacts to
// $OUT. DRIVER defaults to chroot; a VM driver (qemu, isolation-machine)
// takes the same code and isolates the build's kernel too.
import { open } from '@execenv/core';

const [image, source, out, driver = 'chroot'] = process.argv.slice(2);
if (!image || !source || !out) throw new Error('usage: build-untrusted.mjs IMAGE SOURCE_DIR OUT_DIR [DRIVER]');

const env = await open(driver, { image, network: 'none' });
try {
  const isolation = [...env.capabilities].find((c) => c.startsWith('isolation-'));
  await env.push(source, '/build/src');
  await env.exec(['sh', '-c', 'mkdir -p /build/out && chown -R nobody /build'], { check: true });
  // As nobody, with a time limit: the whole process tree is killed when it runs out.
  const r = await env.exec(['sh', '-c', 'cd /build/src && ./build.sh'], {
    user: 'nobody',
    env: { OUT: '/build/out', HOME: '/build' },
    timeout: 600_000,
  });
  await env.pull('/build/out', out);
  console.log(
    JSON.stringify({ driver, isolation, exitCode: r.exitCode, timedOut: r.timedOut, log: r.stdout + r.stderr }),
  );
  process.exitCode = r.exitCode === 0 ? 0 : 1;
} finally {
  await env.close();
}
