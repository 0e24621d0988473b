// The lintian case: run a linter from the image's Debian release on a
// package built on the host, whatever the host runs. The linter is installed
// from the release's own archive when the image lacks it (network "host"),
// and the environment, with everything installed in it, is gone afterwards.
//
//   node lint-in-release.mjs IMAGE PACKAGE.deb
//
// Prints lintian's tags; exits with lintian's status.
import { basename } from 'node:path';
import { open } from '@execenv/core';

const [image, deb] = process.argv.slice(2);
if (!image || !deb) throw new Error('usage: lint-in-release.mjs IMAGE PACKAGE.deb');

const env = await open('chroot', { image, network: 'host' });
try {
  const release = (await env.exec(['cat', '/etc/debian_version'], { check: true })).stdout.trim();
  const has = await env.exec(['sh', '-c', 'command -v lintian']);
  if (has.exitCode !== 0) {
    console.error(`installing lintian from Debian ${release}'s archive`);
    const apt = { check: true, timeout: 600_000, env: { DEBIAN_FRONTEND: 'noninteractive' } };
    await env.exec(['apt-get', 'update', '-qq'], apt);
    await env.exec(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'lintian'], apt);
  }
  const inside = `/srv/lint/${basename(deb)}`;
  await env.push(deb, inside);
  // lintian refuses to run as root without --allow-root; an unprivileged user is what it expects.
  const r = await env.exec(['lintian', '--display-level', '>=pedantic', inside], {
    user: 'nobody',
    env: { HOME: '/tmp' },
    timeout: 300_000,
  });
  console.log(`${(await env.exec(['lintian', '--version'])).stdout.trim()} on Debian ${release}:`);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  process.exitCode = r.exitCode ?? 1;
} finally {
  await env.close();
}
