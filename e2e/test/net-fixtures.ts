import { type ChildProcess, execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { promisify } from 'node:util';
import type { Environment } from '@execenv/core';
import { expect, onTestFinished } from 'vitest';

const run = promisify(execFile);

/** The machine's own links, addresses and ruleset; other backends may change theirs meanwhile. */
export async function hostSnapshot() {
  const [link, addr, nft] = await Promise.all([
    run('ip', ['-o', 'link', 'show']),
    run('ip', ['-o', 'addr', 'show']),
    run('nft', ['list', 'ruleset']),
  ]);
  return { link: link.stdout, addr: addr.stdout, nft: nft.stdout };
}

/** The lines of a snapshot that are @execenv/net's: its links (`exv*`) and its nftables table. */
export function netLines(s: string): string[] {
  return s.split('\n').filter((l) => l.includes('exv') || l.includes('table inet execenv'));
}

/** Polls `check` every 10 ms until it says true; throws after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The first line a child prints on stdout; rejects when it exits before printing one. */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl >= 0) resolve(buffered.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`the child exited with ${code} before printing`)));
  });
}

/** An HTTP server answering every request with `hello <client address>`, listening on `host`; closed when the test ends. */
export async function helloServer(host: string): Promise<{ port: number }> {
  const server = createServer((req, res) => res.end(`hello ${req.socket.remoteAddress}\n`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as { port: number }).port };
}

/** The environment's global IPv4 address on `dev` (eth0), as `ip` inside it says. */
export async function envAddress(env: Environment, dev = 'eth0'): Promise<string> {
  const r = await env.exec(['ip', '-o', '-4', 'addr', 'show', 'dev', dev, 'scope', 'global']);
  return /inet (\S+)\//.exec(r.stdout)?.[1] ?? `none in ${JSON.stringify(r.stdout)}`;
}

/** Fails unless @execenv/net left the host's links, addresses and nftables ruleset as `before` had them. */
export async function expectNoNetLeft(before: Awaited<ReturnType<typeof hostSnapshot>>): Promise<void> {
  const after = await hostSnapshot();
  expect(netLines(after.link)).toEqual(netLines(before.link));
  expect(netLines(after.addr)).toEqual(netLines(before.addr));
  expect(netLines(after.nft)).toEqual(netLines(before.nft));
}
