import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecenvError, type ProcessRunner, processStartTime, removeTree } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import type { Subnet } from './ipv4.js';

/**
 * The DNS domain dnsmasq answers for: an environment is `<hostname>.execenv`.
 *
 * @example
 * ```ts
 * import { DNS_DOMAIN, Networks } from '@execenv/net';
 *
 * const db = await new Networks().allocate({ network: 'builds', holder: 'env-db', hostname: 'db' });
 * // Every environment on the network (with dns) reaches it by name:
 * const url = `postgres://${db.hostname}.${DNS_DOMAIN}:5432/`; // postgres://db.execenv:5432/
 * ```
 */
export const DNS_DOMAIN = 'execenv';

/** One environment as dnsmasq knows it. */
export interface DnsmasqHost {
  /** Its MAC address (the DHCP key). */
  mac: string;
  /** Its address. */
  address: string;
  /** Its name in DNS. */
  hostname: string;
  /** Its IPv6 address, answered for AAAA. */
  address6?: string;
}

/** A running dnsmasq, identified across pid reuse. */
export interface DnsmasqProcess {
  pid: number;
  startTime: string;
}

/** The files of one bridge's dnsmasq. */
function files(dir: string) {
  return { pid: join(dir, 'dnsmasq.pid'), dhcpHosts: join(dir, 'dhcp-hosts'), hosts: join(dir, 'hosts') };
}

/**
 * The dnsmasq argv for a bridge: DHCP hands out only the addresses listed in
 * `dhcp-hosts` (the allocator's choices), DNS answers the names in `hosts`
 * and, when `upstream`, forwards the rest to the host's resolvers. It listens
 * on the bridge's gateway only and drops privileges to nobody.
 */
export function dnsmasqArgv(bridge: string, subnet: Subnet, dir: string, upstream: boolean): string[] {
  const f = files(dir);
  return [
    'dnsmasq',
    '--conf-file=/dev/null',
    `--pid-file=${f.pid}`,
    '--user=nobody',
    '--group=nogroup',
    '--bind-interfaces',
    `--interface=${bridge}`,
    '--except-interface=lo',
    `--listen-address=${subnet.gateway}`,
    `--dhcp-range=${subnet.network},static,${subnet.netmask},1h`,
    `--dhcp-hostsfile=${f.dhcpHosts}`,
    '--dhcp-authoritative',
    '--leasefile-ro',
    '--no-hosts',
    `--addn-hosts=${f.hosts}`,
    `--domain=${DNS_DOMAIN}`,
    `--local=/${DNS_DOMAIN}/`,
    '--expand-hosts',
    '--domain-needed',
    ...(upstream ? [] : ['--no-resolv']),
  ];
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp`;
  // dnsmasq reads these after dropping privileges to nobody.
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, path);
}

/** Writes the DHCP and DNS host lists of a bridge's dnsmasq. */
export async function writeDnsmasqHosts(dir: string, hosts: readonly DnsmasqHost[]): Promise<void> {
  const f = files(dir);
  await writeAtomic(f.dhcpHosts, hosts.map((h) => `${h.mac},${h.address},${h.hostname}\n`).join(''));
  await writeAtomic(
    f.hosts,
    hosts.map((h) => `${h.address} ${h.hostname}\n${h.address6 ? `${h.address6} ${h.hostname}\n` : ''}`).join(''),
  );
}

/**
 * Starts a bridge's dnsmasq with empty host lists. dnsmasq reports bad
 * options and busy ports before it goes to the background, so a failure
 * rejects here; once it returns, the pid file names the daemon.
 */
export async function startDnsmasq(
  runner: ProcessRunner,
  bridge: string,
  subnet: Subnet,
  dir: string,
  upstream: boolean,
): Promise<DnsmasqProcess> {
  // nobody must traverse to and read the host lists.
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await writeDnsmasqHosts(dir, []);
  await runner.run(dnsmasqArgv(bridge, subnet, dir, upstream), { env: hostEnv() });
  const pid = Number((await readFile(files(dir).pid, 'utf8')).trim());
  const startTime = Number.isInteger(pid) && pid > 0 ? await processStartTime(pid) : undefined;
  if (startTime === undefined)
    throw new ExecenvError('EXEC_FAILED', `execenv: dnsmasq for ${bridge} exited right after starting`);
  return { pid, startTime };
}

/** Tells a running dnsmasq to re-read its host lists. */
export async function reloadDnsmasq(proc: DnsmasqProcess): Promise<void> {
  if ((await processStartTime(proc.pid)) !== proc.startTime)
    throw new ExecenvError('EXEC_FAILED', `execenv: dnsmasq (pid ${proc.pid}) is no longer running`);
  process.kill(proc.pid, 'SIGHUP');
}

/**
 * Stops a bridge's dnsmasq and removes its files. Without a recorded process
 * (a crash right after it started) the pid file is read, and that process is
 * killed only when its command line names this bridge.
 */
export async function stopDnsmasq(
  proc: DnsmasqProcess | undefined,
  dir: string | undefined,
  bridge: string,
): Promise<void> {
  const target = proc ?? (dir ? await fromPidFile(dir, bridge) : undefined);
  if (target) await stopProcess(target);
  if (dir) await removeTree(dir);
}

/**
 * Stops a recorded process (only while it is still that process): SIGTERM,
 * then SIGKILL after two seconds. A daemon's parent is init, which may reap
 * late, so a zombie counts as stopped.
 */
async function stopProcess(proc: DnsmasqProcess): Promise<void> {
  const running = async () => (await processStartTime(proc.pid)) === proc.startTime && !(await isZombie(proc.pid));
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(proc.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  if (!(await running())) return;
  signal('SIGTERM');
  for (const [sig, ms] of [
    ['SIGKILL', 2000],
    [undefined, 5000],
  ] as const) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (!(await running())) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    if (sig) signal(sig);
  }
  throw new ExecenvError('EXEC_FAILED', `execenv: dnsmasq (pid ${proc.pid}) did not exit after SIGKILL`);
}

async function isZombie(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

async function fromPidFile(dir: string, bridge: string): Promise<DnsmasqProcess | undefined> {
  try {
    const pid = Number((await readFile(files(dir).pid, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const startTime = await processStartTime(pid);
    return cmdline.includes(`--interface=${bridge}`) && startTime ? { pid, startTime } : undefined;
  } catch {
    return undefined;
  }
}
