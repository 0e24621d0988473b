#!/usr/bin/env node
// A loopback HTTP server in a process of its own, so the benchmarked client
// never shares an event loop with it: answers every GET with SIZE_MB MiB and
// prints its port on stdout.
// Usage: node tools/bench/serve-bytes.mjs SIZE_MB
import { createServer } from 'node:http';

const body = Buffer.alloc(Number(process.argv[2] ?? 200) * 2 ** 20, 0x61);
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
