import { ExecenvError, type ProcessRunner } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import type { Subnet } from './ipv4.js';
import type { Subnet6 } from './ipv6.js';

/**
 * Runs iproute2 commands on the host in one `ip -batch -`, which stops at the
 * first failure. Each command is one line of words this package made or
 * checked (interface names, addresses), never free text.
 */
async function ip(runner: ProcessRunner, commands: readonly (readonly string[])[]): Promise<void> {
  await runner.run(['ip', '-batch', '-'], { env: hostEnv(), input: batch(commands) });
}

/** Runs iproute2 commands inside the network namespace at `netnsPath`, in one `ip -batch -`. */
async function ipIn(runner: ProcessRunner, netnsPath: string, commands: readonly (readonly string[])[]): Promise<void> {
  await runner.run(['nsenter', `--net=${netnsPath}`, '--', 'ip', '-batch', '-'], {
    env: hostEnv(),
    input: batch(commands),
  });
}

function batch(commands: readonly (readonly string[])[]): string {
  return commands.map((words) => `${words.join(' ')}\n`).join('');
}

/** Reports whether an interface named `name` exists on the host. */
export async function linkExists(runner: ProcessRunner, name: string): Promise<boolean> {
  const r = await runner.run(['ip', '-j', 'link', 'show', 'dev', name], { env: hostEnv(), check: false });
  return r.exitCode === 0;
}

/** Deletes the host interface `name` (a veth's peer goes with it); does nothing when it is gone. */
export async function deleteLink(runner: ProcessRunner, name: string): Promise<void> {
  const r = await runner.run(['ip', 'link', 'del', 'dev', name], { env: hostEnv(), check: false });
  if (r.exitCode !== 0 && (await linkExists(runner, name)))
    throw new ExecenvError('EXEC_FAILED', `execenv: cannot delete interface ${name}: ${r.stderr.trim()}`);
}

/** Creates a bridge holding the subnet's gateway address and brings it up. */
export async function createBridge(
  runner: ProcessRunner,
  name: string,
  subnet: Subnet,
  subnet6: Subnet6 | undefined,
): Promise<void> {
  await ip(runner, [
    ['link', 'add', 'name', name, 'type', 'bridge'],
    ['addr', 'add', `${subnet.gateway}/${subnet.prefixLength}`, 'dev', name],
    ...(subnet6 ? [['addr', 'add', `${subnet6.gateway}/64`, 'dev', name, 'nodad']] : []),
    ['link', 'set', 'dev', name, 'up'],
  ]);
}

/** What a namespace's end of a veth is given. */
export interface NamespaceAddressing {
  /** The interface name inside the namespace. */
  ifname: string;
  /** The MAC address of that interface. */
  mac: string;
  /** The address, without prefix. */
  address: string;
  /** The prefix length of the subnet. */
  prefixLength: number;
  /** The default gateway. */
  gateway: string;
  /** The IPv6 address and gateway, on a network with IPv6. */
  ipv6?: { address: string; gateway: string };
}

/**
 * Creates a veth pair with `hostName` on the bridge and its peer moved into
 * the network namespace at `netnsPath`, renamed, addressed and routed there;
 * the namespace's loopback is brought up too.
 */
export async function createVeth(
  runner: ProcessRunner,
  names: { host: string; peer: string; bridge: string },
  netnsPath: string,
  inside: NamespaceAddressing,
): Promise<void> {
  await ip(runner, [
    ['link', 'add', 'name', names.host, 'type', 'veth', 'peer', 'name', names.peer, 'netns', netnsPath],
    ['link', 'set', 'dev', names.host, 'master', names.bridge],
    ['link', 'set', 'dev', names.host, 'up'],
  ]);
  await ipIn(runner, netnsPath, [
    ['link', 'set', 'dev', names.peer, 'name', inside.ifname],
    ['link', 'set', 'dev', inside.ifname, 'address', inside.mac],
    ['addr', 'add', `${inside.address}/${inside.prefixLength}`, 'dev', inside.ifname],
    ['link', 'set', 'dev', inside.ifname, 'up'],
    ['link', 'set', 'dev', 'lo', 'up'],
    ['route', 'add', 'default', 'via', inside.gateway, 'dev', inside.ifname],
    ...(inside.ipv6
      ? [
          ['addr', 'add', `${inside.ipv6.address}/64`, 'dev', inside.ifname, 'nodad'],
          ['route', 'add', '::/0', 'via', inside.ipv6.gateway, 'dev', inside.ifname],
        ]
      : []),
  ]);
}

/** Creates a tap device on the bridge for a VM; `user` may open it without privileges. */
export async function createTap(
  runner: ProcessRunner,
  name: string,
  bridge: string,
  user: string | number | undefined,
): Promise<void> {
  await ip(runner, [
    ['tuntap', 'add', 'dev', name, 'mode', 'tap', ...(user === undefined ? [] : ['user', String(user)])],
    ['link', 'set', 'dev', name, 'master', bridge],
    ['link', 'set', 'dev', name, 'up'],
  ]);
}
