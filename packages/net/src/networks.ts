import { join } from 'node:path';
import {
  CleanupError,
  DriverUnavailableError,
  defaultStateDir,
  ExecenvError,
  type GcReport,
  hostRunner,
  InvalidSpecError,
  isAlive,
  ownerOf,
  type ProcessRunner,
} from '@execenv/core';
import { findBinary, hostEnv } from '@execenv/core/driver';
import { DNS_DOMAIN, reloadDnsmasq, startDnsmasq, stopDnsmasq, writeDnsmasqHosts } from './dnsmasq.js';
import type { Firewall, FirewallChoice } from './firewall.js';
import { usedHostRanges, usedHostRanges6 } from './host-addresses.js';
import { IptablesFirewall } from './iptables-firewall.js';
import { hostAddresses, ipToNumber, macFor, overlaps, parseSubnet, rangeOf, type Subnet, subnetsOf } from './ipv4.js';
import { address6For, overlaps6, parseSubnet6, type Range6, range6Of, type Subnet6, subnets6Of } from './ipv6.js';
import { createBridge, createTap, createVeth, deleteLink } from './links.js';
import { checkHolder, checkInterfaceName, checkNetworkName, interfaceName, randomSuffix } from './names.js';
import type {
  AllocateRequest,
  Allocation,
  AttachNamespaceRequest,
  AttachTapRequest,
  NamespaceLink,
  NetnsRef,
  NetworkInfo,
  NetworksOptions,
  ReserveSubnetRequest,
  SubnetReservation,
  TapLink,
} from './network-types.js';
import { NftFirewall } from './nft-firewall.js';
import { type HolderRecord, type NetState, type NetworkRecord, StateStore, type Transaction } from './state-store.js';

/**
 * The private ranges subnets are taken from when a network names none, in order.
 *
 * @example
 * ```ts
 * import { DEFAULT_POOLS, Networks } from '@execenv/net';
 *
 * // Take subnets from a range of the site's first, then from the usual ones.
 * const networks = new Networks({ pools: ['10.250.0.0/16', ...DEFAULT_POOLS] });
 * ```
 */
export const DEFAULT_POOLS: readonly string[] = ['10.213.0.0/16', '172.29.0.0/16', '192.168.213.0/24'];

/**
 * The network `EnvSpec.network: 'nat'` means: shared by every environment that asks for it.
 *
 * @example
 * ```ts
 * import { NAT_NETWORK, Networks } from '@execenv/net';
 *
 * // The network every environment with `network: 'nat'` shares.
 * const link = await new Networks().attachNamespace({ network: NAT_NETWORK, holder: env.id, netns: { pid } });
 * ```
 */
export const NAT_NETWORK = 'nat';

/**
 * Where each bridge's dnsmasq keeps its host lists and pid file.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { DEFAULT_RUN_DIR } from '@execenv/net';
 *
 * // The names a network's dnsmasq answers, for a Networks with the default runDir.
 * console.log(await readFile(`${DEFAULT_RUN_DIR}/${info.bridge}/hosts`, 'utf8'));
 * ```
 */
export const DEFAULT_RUN_DIR = '/run/execenv/net';

/**
 * The unique local prefix IPv6 /64s are taken from when a network asks for IPv6.
 *
 * @example
 * ```ts
 * import { DEFAULT_IPV6_POOL, Networks } from '@execenv/net';
 *
 * const alloc = await new Networks().allocate({ network: 'v6', holder: 'env-1', options: { ipv6: true } });
 * console.log(alloc.network.subnet6); // a /64 of DEFAULT_IPV6_POOL, 'fd0e:78ec:e0e0::/48'
 * const site = new Networks({ ipv6Pool: 'fd12:3456:789a::/48' }); // another unique local prefix
 * ```
 */
export const DEFAULT_IPV6_POOL = 'fd0e:78ec:e0e0::/48';

function infoOf(record: NetworkRecord): NetworkInfo {
  const subnet = parseSubnet(record.subnet);
  return Object.freeze({
    name: record.name,
    kind: record.kind,
    subnet: subnet.cidr,
    gateway: subnet.gateway,
    prefixLength: subnet.prefixLength,
    netmask: subnet.netmask,
    bridge: record.bridge,
    subnet6: record.subnet6,
    gateway6: record.subnet6 === undefined ? undefined : parseSubnet6(record.subnet6).gateway,
    nat: record.nat,
    dns: record.dns,
    holders: Object.freeze(Object.keys(record.holders).sort()),
  });
}

function allocationOf(record: NetworkRecord, holder: string): Allocation {
  const h = record.holders[holder] as HolderRecord;
  const info = infoOf(record);
  return {
    network: info,
    holder,
    address: h.address as string,
    prefixLength: info.prefixLength,
    netmask: info.netmask,
    gateway: info.gateway,
    address6: h.address6,
    gateway6: info.gateway6,
    mac: h.mac as string,
    hostname: h.hostname,
    nameservers: record.dns ? [info.gateway] : [],
    searchDomains: record.dns ? [DNS_DOMAIN] : [],
  };
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function errorOf(op: string, what: string, err: unknown): ExecenvError {
  if (err instanceof ExecenvError) return err;
  return new ExecenvError('EXEC_FAILED', `execenv: ${what}: ${(err as Error)?.message ?? String(err)}`, {
    op,
    cause: err,
  });
}

/**
 * Networks manages the private networks of one state directory: it picks
 * subnets and addresses, makes bridges with their NAT rules and dnsmasq,
 * wires network namespaces (veth) and VMs (tap) into them, and removes all of
 * it when the last holder leaves or its owner process is gone.
 *
 * Every change happens under one inter-process lock, so any number of
 * processes may use the same state directory at once. A network lives while
 * it has holders; the first allocation on a name creates it.
 *
 * @example
 * ```ts
 * import { Networks, resolvConf } from '@execenv/net';
 *
 * const networks = new Networks(); // as root
 * try {
 *   const netns = { path: '/run/netns/demo' }; // made with `ip netns add demo`
 *   const link = await networks.attachNamespace({ network: 'nat', holder: 'demo', netns });
 *   console.log(link.address, resolvConf(link));
 * } finally {
 *   await networks.release('demo'); // the last holder takes the bridge, rules and dnsmasq with it
 * }
 * ```
 */
export class Networks {
  readonly #store: StateStore;
  readonly #runner: ProcessRunner;
  readonly #firewallChoice: FirewallChoice;
  readonly #runDir: string;
  readonly #pools: readonly string[];
  readonly #prefixLength: number;
  readonly #enableForwarding: boolean;
  readonly #ipv6Pool: string;

  constructor(opts: NetworksOptions = {}) {
    this.#store = new StateStore(opts.stateDir ?? defaultStateDir(), opts.lockTimeoutMs);
    this.#runner = opts.runner ?? hostRunner();
    this.#firewallChoice = opts.firewall ?? 'auto';
    if (!['nft', 'iptables', 'auto'].includes(this.#firewallChoice))
      throw new InvalidSpecError(
        'firewall',
        `must be 'nft', 'iptables' or 'auto', got ${JSON.stringify(opts.firewall)}`,
      );
    this.#runDir = opts.runDir ?? DEFAULT_RUN_DIR;
    this.#pools = opts.pools ?? DEFAULT_POOLS;
    for (const [i, pool] of this.#pools.entries()) parseSubnet(pool, `pools[${i}]`);
    this.#prefixLength = opts.prefixLength ?? 24;
    if (!Number.isInteger(this.#prefixLength) || this.#prefixLength < 8 || this.#prefixLength > 29)
      throw new InvalidSpecError('prefixLength', `must be an integer from 8 to 29, got ${opts.prefixLength}`);
    this.#enableForwarding = opts.enableForwarding ?? false;
    this.#ipv6Pool = opts.ipv6Pool ?? DEFAULT_IPV6_POOL;
    subnets6Of(this.#ipv6Pool).next();
  }

  /**
   * Reserves an address on a network for `holder`, creating the network
   * (bridge, rules, dnsmasq) when it does not exist. Nothing is wired: use
   * attachNamespace or attachTap for that, or configure the address yourself.
   * Calling it again for the same holder returns the same address.
   */
  async allocate(req: AllocateRequest): Promise<Allocation> {
    const r = checkRequest(req);
    return this.#withNetwork('allocate', r, async (tx, record) => {
      await this.#reserveAddress(tx, record, r.holder, r.hostname);
      return allocationOf(record, r.holder);
    });
  }

  /**
   * Attaches a network namespace to a network: a veth pair whose host end is
   * on the bridge and whose other end becomes `ifname` in the namespace, with
   * the holder's address, loopback up and a default route to the gateway.
   * The namespace's resolv.conf is the caller's to write (see resolvConf).
   */
  async attachNamespace(req: AttachNamespaceRequest): Promise<NamespaceLink> {
    const r = checkRequest(req);
    const ifname = checkInterfaceName(req.ifname ?? 'eth0');
    const netnsPath = netnsPathOf(req.netns);
    return this.#withLink('attach', r, 'veth', async (record, alloc, name) => {
      const suffix = name.slice(4);
      await createVeth(
        this.#runner,
        { host: name, peer: interfaceName('peer', suffix), bridge: record.bridge as string },
        netnsPath,
        {
          ifname,
          mac: alloc.mac,
          address: alloc.address,
          prefixLength: alloc.prefixLength,
          gateway: alloc.gateway,
          ...(alloc.address6 && alloc.gateway6 ? { ipv6: { address: alloc.address6, gateway: alloc.gateway6 } } : {}),
        },
      );
      return { ...alloc, hostInterface: name, ifname };
    });
  }

  /** Makes a tap device on a network's bridge for a VM, with an address reserved for it. */
  async attachTap(req: AttachTapRequest): Promise<TapLink> {
    const r = checkRequest(req);
    if (req.user !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(String(req.user)))
      throw new InvalidSpecError('user', `not a user name or uid: ${JSON.stringify(req.user)}`);
    return this.#withLink('attach', r, 'tap', async (record, alloc, name) => {
      await createTap(this.#runner, name, record.bridge as string, req.user);
      return { ...alloc, tap: name };
    });
  }

  /**
   * Sets a subnet aside for a backend that makes its own bridge (LXD), chosen
   * like a network's, so it never collides with the host or another network.
   * Holders share a reservation by name; it ends with its last holder.
   */
  async reserveSubnet(req: ReserveSubnetRequest): Promise<SubnetReservation> {
    const name = checkNetworkName(req.name, 'name');
    const holder = checkHolder(req.holder);
    const wanted = req.subnet === undefined ? undefined : parseSubnet(req.subnet);
    return this.#store.transaction(async (tx) => {
      await this.#reclaim(tx, []);
      let record = tx.state.networks[name];
      if (record && record.kind !== 'reservation')
        throw new InvalidSpecError('name', `"${name}" is a network with a bridge, not a subnet reservation`);
      if (record && wanted && record.subnet !== wanted.cidr)
        throw new InvalidSpecError('subnet', `reservation "${name}" already has ${record.subnet}, not ${wanted.cidr}`);
      if (!record) {
        const subnet = await this.#chooseSubnet(tx.state, wanted);
        record = {
          name,
          kind: 'reservation',
          subnet: subnet.cidr,
          nat: false,
          dns: false,
          steps: [],
          ready: true,
          holders: {},
          createdAt: new Date().toISOString(),
        };
        tx.state.networks[name] = record;
      }
      record.holders[holder] ??= { owner: await ownerOf() };
      const info = infoOf(record);
      return {
        name,
        holder,
        subnet: info.subnet,
        gateway: info.gateway,
        prefixLength: info.prefixLength,
        netmask: info.netmask,
      };
    });
  }

  /**
   * Releases what `holder` has on `network` (every network when absent): its
   * link is deleted, its address freed, and a network left without holders is
   * removed with its bridge, rules and dnsmasq. Releasing twice does nothing.
   * Throws CleanupError when something could not be removed; it stays
   * recorded for gc.
   */
  async release(holder: string, network?: string): Promise<void> {
    checkHolder(holder);
    if (network !== undefined) checkNetworkName(network);
    const errors = await this.#store.transaction(async (tx) => {
      const names = network === undefined ? Object.keys(tx.state.networks) : [network];
      const failures: { what: string; err: unknown }[] = [];
      for (const name of names) {
        const record = tx.state.networks[name];
        if (!record?.holders[holder]) continue;
        failures.push(...(await this.#dropHolder(tx, record, holder)));
      }
      return failures;
    });
    if (errors.length > 0) throw cleanupError(holder, errors);
  }

  /**
   * Removes what dead processes left: holders whose owner is gone (their
   * links included) and networks without a live holder, also those whose
   * setup was cut short by a crash. Live holders are never touched.
   */
  async gc(): Promise<GcReport> {
    return this.#store.transaction(async (tx) => {
      const report: GcReport = { removed: [], errors: [] };
      for (const f of await this.#reclaim(tx, [], report.removed)) report.errors.push(`${f.what}: ${message(f.err)}`);
      return report;
    });
  }

  /** The networks recorded now, sorted by name. */
  async list(): Promise<NetworkInfo[]> {
    const state = await this.#store.read();
    return Object.values(state.networks)
      .map(infoOf)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async #withNetwork<T>(
    op: string,
    r: CheckedRequest,
    fn: (tx: Transaction, record: NetworkRecord) => Promise<T>,
  ): Promise<T> {
    return this.#store.transaction(async (tx) => {
      await this.#reclaim(tx, [r.network]);
      const record = await this.#ensureNetwork(tx, r);
      try {
        return await fn(tx, record);
      } catch (err) {
        // A network this call made and nobody holds goes again.
        if (Object.keys(record.holders).length === 0) await this.#teardown(tx, record).catch(() => undefined);
        throw errorOf(op, `${op} on network "${r.network}"`, err);
      }
    });
  }

  async #withLink<T>(
    op: string,
    r: CheckedRequest,
    kind: 'veth' | 'tap',
    wire: (record: NetworkRecord, alloc: Allocation, name: string) => Promise<T>,
  ): Promise<T> {
    return this.#withNetwork(op, r, async (tx, record) => {
      if (record.kind !== 'bridge')
        throw new InvalidSpecError('network', `"${record.name}" is a subnet reservation, not a bridge`);
      const existing = record.holders[r.holder];
      if (existing?.link)
        throw new InvalidSpecError(
          'holder',
          `${r.holder} is already attached to "${record.name}" (${existing.link.name})`,
        );
      const fresh = !existing;
      const holder = await this.#reserveAddress(tx, record, r.holder, r.hostname);
      holder.link = { kind, name: interfaceName(kind === 'veth' ? 'veth' : 'tap', randomSuffix()) };
      await tx.save();
      try {
        return await wire(record, allocationOf(record, r.holder), holder.link.name);
      } catch (err) {
        await deleteLink(this.#runner, holder.link.name).catch(() => undefined);
        if (fresh) await this.#dropHolder(tx, record, r.holder);
        else delete holder.link;
        throw err;
      }
    });
  }

  async #ensureNetwork(tx: Transaction, r: CheckedRequest): Promise<NetworkRecord> {
    const existing = tx.state.networks[r.network];
    if (existing) {
      if (existing.kind !== 'bridge')
        throw new InvalidSpecError('network', `"${r.network}" is a subnet reservation, not a network`);
      if (r.subnet && existing.subnet !== r.subnet.cidr)
        throw new InvalidSpecError(
          'options.subnet',
          `network "${r.network}" exists with ${existing.subnet}, not ${r.subnet.cidr}`,
        );
      return existing;
    }
    await this.#checkHost(r.nat, r.dns, r.ipv6);
    const firewall = await this.#pickFirewall();
    if (r.ipv6 && firewall.name !== 'nft')
      throw new InvalidSpecError('options.ipv6', 'IPv6 networks need nftables (apt-get install nftables)');
    const subnet = await this.#chooseSubnet(tx.state, r.subnet);
    const subnet6 = r.ipv6 ? await this.#chooseSubnet6(tx.state) : undefined;
    const bridge = interfaceName('bridge');
    const record: NetworkRecord = {
      name: r.network,
      kind: 'bridge',
      subnet: subnet.cidr,
      ...(subnet6 ? { subnet6: subnet6.cidr } : {}),
      bridge,
      nat: r.nat,
      dns: r.dns,
      firewall: firewall.name,
      steps: [],
      ready: false,
      holders: {},
      createdAt: new Date().toISOString(),
    };
    tx.state.networks[r.network] = record;
    try {
      await this.#step(tx, record, 'bridge', () => createBridge(this.#runner, bridge, subnet, subnet6));
      await this.#step(tx, record, 'firewall', () =>
        firewall.add({ bridge, subnet, nat: r.nat, ...(subnet6 ? { subnet6: subnet6.cidr } : {}) }),
      );
      if (r.dns) {
        record.runDir = join(this.#runDir, bridge);
        await this.#step(tx, record, 'dnsmasq', async () => {
          record.dnsmasq = await startDnsmasq(this.#runner, bridge, subnet, record.runDir as string, r.nat);
        });
      }
      record.ready = true;
      await tx.save();
      return record;
    } catch (err) {
      const undo = await this.#teardown(tx, record).catch((e: unknown) => e);
      const e = errorOf('create', `creating network "${r.network}" (${subnet.cidr} on ${bridge})`, err);
      if (undo !== undefined) (e as { suppressed?: unknown[] }).suppressed = [undo];
      throw e;
    }
  }

  async #step(tx: Transaction, record: NetworkRecord, step: NetworkRecord['steps'][number], fn: () => Promise<void>) {
    record.steps.push(step);
    await tx.save();
    await fn();
  }

  async #pickFirewall(): Promise<Firewall> {
    const choice = this.#firewallChoice;
    if (choice !== 'iptables' && (await findBinary('nft'))) return this.#firewallOf('nft');
    if (choice !== 'nft' && (await findBinary('iptables'))) return this.#firewallOf('iptables');
    throw new DriverUnavailableError(
      'net',
      choice === 'nft'
        ? 'nft is not installed (apt-get install nftables; tools/setup/net.sh)'
        : 'neither nft nor iptables is installed (apt-get install nftables; tools/setup/net.sh)',
    );
  }

  #firewallOf(name: Firewall['name'] | undefined): Firewall {
    return name === 'iptables' ? new IptablesFirewall(this.#runner) : new NftFirewall(this.#runner);
  }

  async #checkHost(nat: boolean, dns: boolean, ipv6: boolean): Promise<void> {
    const needed: [string, string][] = [
      ['ip', 'iproute2'],
      ['nsenter', 'util-linux'],
    ];
    if (dns) needed.push(['dnsmasq', 'dnsmasq-base']);
    for (const [binary, pkg] of needed)
      if (!(await findBinary(binary)))
        throw new DriverUnavailableError(
          'net',
          `${binary} is not installed (apt-get install ${pkg}; tools/setup/net.sh)`,
        );
    if (!nat) return;
    await this.#ensureForwarding('net.ipv4.ip_forward', '/proc/sys/net/ipv4/ip_forward');
    if (ipv6) await this.#ensureForwarding('net.ipv6.conf.all.forwarding', '/proc/sys/net/ipv6/conf/all/forwarding');
  }

  async #ensureForwarding(key: string, file: string): Promise<void> {
    const forward = await this.#runner.run(['cat', file], { env: hostEnv() });
    if (forward.stdout.trim() === '1') return;
    if (!this.#enableForwarding)
      throw new DriverUnavailableError(
        'net',
        `a NAT network needs forwarding, which is off: run \`sysctl -w ${key}=1\` (tools/setup/net.sh does it for IPv4) or pass enableForwarding: true`,
      );
    await this.#runner.run(['sysctl', '-q', '-w', `${key}=1`], { env: hostEnv() });
  }

  async #chooseSubnet6(state: NetState): Promise<Subnet6> {
    const used = [
      ...Object.values(state.networks).flatMap((n) => (n.subnet6 ? [range6Of(n.subnet6) as Range6] : [])),
      ...(await usedHostRanges6(this.#runner)),
    ];
    for (const candidate of subnets6Of(this.#ipv6Pool))
      if (!used.some((u) => overlaps6(u, range6Of(candidate.cidr) as Range6))) return candidate;
    throw new ExecenvError('DRIVER_UNAVAILABLE', `execenv: no free IPv6 /64 left in ${this.#ipv6Pool}`, {
      op: 'allocate',
    });
  }

  async #chooseSubnet(state: NetState, wanted: Subnet | undefined): Promise<Subnet> {
    const used = [
      ...Object.values(state.networks).map((n) => ({
        cidr: `${n.subnet} (network "${n.name}")`,
        range: rangeOf(n.subnet)!,
      })),
      ...(await usedHostRanges(this.#runner)),
    ];
    const clash = (s: Subnet) => used.find((u) => overlaps(u.range, rangeOf(s.cidr)!));
    if (wanted) {
      const c = clash(wanted);
      if (c)
        throw new InvalidSpecError('options.subnet', `${wanted.cidr} overlaps ${c.cidr}, which is in use on this host`);
      return wanted;
    }
    for (const pool of this.#pools)
      for (const candidate of subnetsOf(pool, this.#prefixLength)) if (!clash(candidate)) return candidate;
    throw new ExecenvError(
      'DRIVER_UNAVAILABLE',
      `execenv: no free /${this.#prefixLength} subnet left in ${this.#pools.join(', ')}; pass other pools or a subnet`,
      { op: 'allocate' },
    );
  }

  async #reserveAddress(
    tx: Transaction,
    record: NetworkRecord,
    holder: string,
    hostname: string | undefined,
  ): Promise<HolderRecord> {
    const existing = record.holders[holder];
    if (existing?.address) return existing;
    const taken = new Set(Object.values(record.holders).map((h) => h.address));
    let address: string | undefined;
    for (const candidate of hostAddresses(parseSubnet(record.subnet)))
      if (!taken.has(candidate)) {
        address = candidate;
        break;
      }
    if (!address)
      throw new ExecenvError(
        'DRIVER_UNAVAILABLE',
        `execenv: network "${record.name}" (${record.subnet}) has no free address left`,
        { op: 'allocate' },
      );
    const subnet = parseSubnet(record.subnet);
    const host = (ipToNumber(address) as number) - (ipToNumber(subnet.network) as number);
    const address6 = record.subnet6 ? address6For(parseSubnet6(record.subnet6), host) : undefined;
    const entry: HolderRecord = {
      owner: await ownerOf(),
      address,
      ...(address6 ? { address6 } : {}),
      mac: macFor(address),
      ...(hostname ? { hostname } : {}),
    };
    record.holders[holder] = entry;
    await tx.save();
    await this.#syncDns(record);
    return entry;
  }

  async #syncDns(record: NetworkRecord): Promise<void> {
    if (!record.dns || !record.runDir || !record.dnsmasq) return;
    const hosts = Object.entries(record.holders)
      .filter(([, h]) => h.address && h.mac)
      .map(([id, h]) => ({
        mac: h.mac as string,
        address: h.address as string,
        hostname: h.hostname ?? id,
        ...(h.address6 ? { address6: h.address6 } : {}),
      }));
    await writeDnsmasqHosts(record.runDir, hosts);
    await reloadDnsmasq(record.dnsmasq);
  }

  /** Removes one holder and, when it was the last, its network; returns what failed. */
  async #dropHolder(tx: Transaction, record: NetworkRecord, holder: string): Promise<{ what: string; err: unknown }[]> {
    const h = record.holders[holder];
    if (!h) return [];
    if (h.link) {
      try {
        await deleteLink(this.#runner, h.link.name);
      } catch (err) {
        return [{ what: `${h.link.kind} ${h.link.name}`, err }];
      }
    }
    delete record.holders[holder];
    await tx.save();
    if (Object.keys(record.holders).length === 0) {
      try {
        await this.#teardown(tx, record);
      } catch (err) {
        return [{ what: `network ${record.name}`, err }];
      }
      return [];
    }
    try {
      await this.#syncDns(record);
    } catch (err) {
      return [{ what: `dnsmasq of ${record.name}`, err }];
    }
    return [];
  }

  /** Undoes a network's setup steps in reverse and forgets it; the record stays when a step fails. */
  async #teardown(tx: Transaction, record: NetworkRecord): Promise<void> {
    for (const step of [...record.steps].reverse()) {
      if (step === 'dnsmasq') await stopDnsmasq(record.dnsmasq, record.runDir, record.bridge as string);
      else if (step === 'firewall') await this.#firewallOf(record.firewall).remove(record.bridge as string);
      else if (step === 'bridge') await deleteLink(this.#runner, record.bridge as string);
      record.steps.pop();
      if (step === 'dnsmasq') delete record.dnsmasq;
      await tx.save();
    }
    delete tx.state.networks[record.name];
    await tx.save();
  }

  /**
   * Drops holders whose owner is dead and tears down networks without live
   * holders, except the networks in `keep` that have holders. Returns what failed.
   */
  async #reclaim(tx: Transaction, keep: string[], removed: string[] = []): Promise<{ what: string; err: unknown }[]> {
    const failures: { what: string; err: unknown }[] = [];
    for (const record of Object.values(tx.state.networks)) {
      for (const [id, h] of Object.entries(record.holders)) {
        if (await isAlive(h.owner)) continue;
        const f = await this.#dropHolder(tx, record, id);
        failures.push(...f);
        if (f.length === 0) removed.push(`${record.name}/${id}`);
        if (!tx.state.networks[record.name]) {
          removed.push(record.name);
          break;
        }
      }
      const idle = Object.keys(record.holders).length === 0;
      if (tx.state.networks[record.name] && idle && (!record.ready || !keep.includes(record.name))) {
        try {
          await this.#teardown(tx, record);
          removed.push(record.name);
        } catch (err) {
          failures.push({ what: `network ${record.name}`, err });
        }
      }
    }
    return failures;
  }
}

/** An AllocateRequest after its checks. */
interface CheckedRequest {
  network: string;
  holder: string;
  hostname: string | undefined;
  subnet: Subnet | undefined;
  nat: boolean;
  dns: boolean;
  ipv6: boolean;
}

function checkRequest(req: AllocateRequest): CheckedRequest {
  const network = checkNetworkName(req.network);
  const holder = checkHolder(req.holder);
  const hostname = req.hostname ?? (HOSTNAME.test(holder) ? holder : undefined);
  if (hostname !== undefined && !HOSTNAME.test(hostname))
    throw new InvalidSpecError('hostname', `not a host name: ${JSON.stringify(hostname)}`);
  const o = req.options ?? {};
  const subnet = o.subnet === undefined ? undefined : parseSubnet(o.subnet, 'options.subnet');
  return { network, holder, hostname, subnet, nat: o.nat ?? true, dns: o.dns ?? true, ipv6: o.ipv6 ?? false };
}

function netnsPathOf(ref: NetnsRef): string {
  if (ref && 'pid' in ref && Number.isInteger(ref.pid) && ref.pid > 0) return `/proc/${ref.pid}/ns/net`;
  if (ref && 'path' in ref && typeof ref.path === 'string' && ref.path.startsWith('/') && !ref.path.includes('\0'))
    return ref.path;
  throw new InvalidSpecError(
    'netns',
    'give { pid } of a process in the namespace or the absolute { path } of its nsfs file',
  );
}

function message(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

function cleanupError(holder: string, failures: { what: string; err: unknown }[]): CleanupError {
  return new CleanupError(
    holder,
    failures.map((f) => f.what),
    failures.map((f) => f.err),
    { op: 'release', driver: 'net' },
  );
}
