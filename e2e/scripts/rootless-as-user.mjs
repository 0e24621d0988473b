#!/usr/bin/env node
// Run by the e2e suite as an unprivileged user with subordinate ids, where the
// host side cannot delete files that subordinate ids own. Prints one JSON line.
//   close: opens a rootless chroot, makes such files, reverts, makes them again, closes;
//   hold:  opens one, makes such files, prints its line, then waits to be killed;
//   gc:    collects what dead owners left.
// Each reports what is left of the state directory.
// Usage: node rootless-as-user.mjs close|hold|gc IMAGE STATE_DIR CACHE_DIR
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ChrootDriver } from '@execenv/chroot';
import { isRevertable } from '@execenv/core';

const [action, image, stateDir, cacheDir] = process.argv.slice(2);
const driver = new ChrootDriver({ mode: 'rootless', cacheDir });
const makeFiles = [
  'sh',
  '-c',
  'mkdir -p /home/u/deep && echo x > /home/u/deep/f && chown -R 1000:1000 /home/u && chmod -R go-rwx /home/u && stat -c %u /home/u/deep/f',
];
const left = () => readdir(join(stateDir, 'envs')).catch(() => []);
const report = async (fields) => console.log(JSON.stringify({ uid: process.getuid(), ...fields, left: await left() }));

if (action === 'gc') {
  const gc = await driver.gc({ stateDir });
  await report({ removed: gc.removed, errors: gc.errors });
} else {
  const env = await driver.open({ image }, { stateDir });
  const owners = [(await env.exec(makeFiles, { check: true })).stdout.trim()];
  if (action === 'hold') {
    await report({ owners });
    setInterval(() => {}, 1 << 30);
  } else {
    if (isRevertable(env)) await env.revert();
    owners.push((await env.exec(makeFiles, { check: true })).stdout.trim());
    let closeError = null;
    await env.close().catch((err) => (closeError = err.message));
    await report({ owners, closeError });
  }
}
