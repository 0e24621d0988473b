import { ExecenvError, type ProcessRunner } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import { type Range, rangeOf } from './ipv4.js';
import { type Range6, range6Of } from './ipv6.js';

interface RouteJson {
  dst?: string;
}

interface AddrJson {
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

function parseJson<T>(text: string, what: string): T[] {
  try {
    const parsed = JSON.parse(text || '[]') as unknown;
    return Array.isArray(parsed) ? (parsed as T[]) : [];
  } catch (err) {
    throw new ExecenvError('EXEC_FAILED', `execenv: cannot parse the output of ${what}: ${(err as Error).message}`);
  }
}

/**
 * The IPv4 ranges the host already uses: the destination of every route in
 * every table (the default route aside) and the network of every address on
 * every interface. A subnet that overlaps one of them is not free.
 */
export async function usedHostRanges(runner: ProcessRunner): Promise<{ cidr: string; range: Range }[]> {
  const env = hostEnv();
  const routes = await runner.run(['ip', '-j', '-4', 'route', 'show', 'table', 'all'], { env });
  const addrs = await runner.run(['ip', '-j', '-4', 'addr', 'show'], { env });
  const used: { cidr: string; range: Range }[] = [];
  for (const route of parseJson<RouteJson>(routes.stdout, 'ip route')) {
    if (!route.dst || route.dst === 'default') continue;
    const range = rangeOf(route.dst);
    if (range) used.push({ cidr: route.dst, range });
  }
  for (const link of parseJson<AddrJson>(addrs.stdout, 'ip addr')) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet' || !a.local) continue;
      const cidr = `${a.local}/${a.prefixlen ?? 32}`;
      const range = rangeOf(cidr);
      if (range) used.push({ cidr, range });
    }
  }
  return used;
}

/** The IPv6 ranges the host already uses: route destinations in every table and interface addresses. */
export async function usedHostRanges6(runner: ProcessRunner): Promise<Range6[]> {
  const env = hostEnv();
  const routes = await runner.run(['ip', '-j', '-6', 'route', 'show', 'table', 'all'], { env });
  const addrs = await runner.run(['ip', '-j', '-6', 'addr', 'show'], { env });
  const used: Range6[] = [];
  for (const route of parseJson<RouteJson>(routes.stdout, 'ip -6 route')) {
    const range = route.dst && route.dst !== 'default' ? range6Of(route.dst) : undefined;
    if (range) used.push(range);
  }
  for (const link of parseJson<AddrJson>(addrs.stdout, 'ip -6 addr'))
    for (const a of link.addr_info ?? []) {
      const range = a.family === 'inet6' && a.local ? range6Of(`${a.local}/${a.prefixlen ?? 128}`) : undefined;
      if (range) used.push(range);
    }
  return used;
}
