#!/usr/bin/env node
import { runCli } from './cli.js';

// A reader that goes away (`execenv ... | head`, a closed terminal: EPIPE, EIO) ends the output, not the
// process: there is nowhere left to report it, and the environment must still be closed.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

const code = await runCli(process.argv.slice(2));
// Wait for what is queued on stdout and stderr, then exit: a forwarded stdin must not keep the process alive.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
process.exit(code);
