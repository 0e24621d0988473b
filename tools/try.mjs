#!/usr/bin/env node
// Runs one command in a throwaway chroot of the default image (Debian bookworm
// minbase, built and cached on first use) and exits with its status:
//   node tools/try.mjs [--image PATH] [--] COMMAND [ARGS...]
import '@execenv/chroot';
import { open } from '@execenv/core';

const args = process.argv.slice(2);
let image;
if (args[0] === '--image') {
  image = args[1];
  args.splice(0, 2);
}
if (args[0] === '--') args.shift();
const argv =
  args.length > 0 ? args : ['sh', '-c', '. /etc/os-release; echo "hello from $PRETTY_NAME in $(uname -m), pid $$"'];

const started = Date.now();
const say = (line) => process.stderr.write(`execenv: ${line}\n`);
const env = await open('chroot', image ? { image } : {}, {
  onEvent(e) {
    if (e.type === 'image-convert')
      say(
        `preparing ${e.reference === 'default' ? 'the default image (first run only, about 30 s)' : e.reference}: ${e.from} -> ${e.to}`,
      );
    if (e.type === 'ready') say(`${e.envId} ready in ${e.durationMs} ms`);
    if (e.type === 'destroy') say(`${e.envId} destroyed (${Date.now() - started} ms in all)`);
  },
});
let status = 0;
try {
  const r = await env.exec(argv, {
    stdin: process.stdin.isTTY ? 'ignore' : process.stdin,
    onStdout: (c) => process.stdout.write(c),
    onStderr: (c) => process.stderr.write(c),
    buffer: false,
  });
  status = r.exitCode ?? 128;
} finally {
  await env.close();
}
process.exit(status);
