import { type ChildProcess, execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { promisify } from 'node:util';
import type { Environment } from '@execenv/core';
import type { Networks } from '@execenv/net';
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

/**
 * What two environments `a` and `b` on one network must show, whatever their
 * driver: distinct addresses, a default route and resolv.conf pointing at the
 * gateway, each other by address and by `<id>.execenv`, and a server at the
 * gateway seeing each of them by its own address. `elsewhere`, on another
 * network, must not reach them. Returns the gateway.
 */
export async function expectOneNetwork(
  networks: Networks,
  network: string,
  [a, b]: readonly [Environment, Environment],
  elsewhere?: Environment,
): Promise<string> {
  expect(a.capabilities.has('network')).toBe(true);
  const [info] = (await networks.list()).filter((n) => n.name === network);
  expect(info?.holders).toEqual([a.id, b.id].sort());
  const gateway = info?.gateway as string;
  const [addressA, addressB] = [await envAddress(a), await envAddress(b)];
  expect(addressA).not.toBe(addressB);
  expect((await a.exec(['ip', 'route', 'show', 'default'])).stdout).toContain(`default via ${gateway} dev eth0`);
  expect((await a.exec(['cat', '/etc/resolv.conf'])).stdout).toBe(`nameserver ${gateway}\nsearch execenv\n`);
  const ping = await a.exec(['ping', '-c', '1', '-W', '5', addressB]);
  expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
  // The network's dnsmasq knows each environment by its id.
  expect((await a.exec(['nslookup', `${b.id}.execenv`])).stdout).toContain(addressB);
  if (elsewhere) expect((await elsewhere.exec(['ping', '-c', '1', '-W', '2', addressA])).exitCode).not.toBe(0);
  const { port } = await helloServer(gateway);
  for (const [env, address] of [
    [a, addressA],
    [b, addressB],
  ] as const) {
    const got = await env.exec(['wget', '-q', '-O', '-', `http://${gateway}:${port}/`]);
    expect(got.stdout, got.stderr).toBe(`hello ${address}\n`);
  }
  return gateway;
}
