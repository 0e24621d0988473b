// The template-image case: prepare an environment once (packages, users,
// configuration), publish it as an image, and open every later environment
// from that image instead of repeating the setup. For root-filesystem
// drivers an image is a rootfs tarball, streamed out of the environment by
// its own tar; a daemon driver with the publish capability (LXD) would use
// publish(env, alias) from @execenv/core instead.
//
//   node publish-template.mjs BASE_IMAGE OUTPUT.tar
//
// Then opens OUTPUT.tar and prints what the template holds as JSON.
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { open } from '@execenv/core';

const [base, output] = process.argv.slice(2);
if (!base || !output) throw new Error('usage: publish-template.mjs BASE_IMAGE OUTPUT.tar');

const steps = [
  ['useradd', '--create-home', '--shell', '/bin/sh', 'builder'],
  ['sh', '-c', 'echo "prepared by publish-template.mjs" > /etc/execenv-template'],
  ['apt-get', 'clean'],
];

const prepare = await open('chroot', { image: base });
try {
  for (const argv of steps) await prepare.exec(argv, { check: true, timeout: 300_000 });
  // --one-file-system leaves out /proc, /sys and /dev, which the environment mounts.
  const tar = prepare.spawn(['tar', '--one-file-system', '--numeric-owner', '-C', '/', '-cf', '-', '.']);
  let stderr = '';
  tar.stderr.on('data', (c) => (stderr += c));
  await pipeline(tar.stdout, createWriteStream(output));
  const { exitCode } = await tar.result;
  if (exitCode !== 0) throw new Error(`tar exited ${exitCode}: ${stderr}`);
} finally {
  await prepare.close();
}

const env = await open('chroot', { image: output });
try {
  const marker = (await env.exec(['cat', '/etc/execenv-template'], { check: true })).stdout.trim();
  const builder = (await env.exec(['id', 'builder'], { check: true })).stdout.trim();
  console.log(JSON.stringify({ image: output, marker, builder }));
} finally {
  await env.close();
}
