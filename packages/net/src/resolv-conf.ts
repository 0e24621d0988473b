import type { Allocation } from './network-types.js';

/**
 * The resolv.conf an environment on this allocation should have: the
 * network's dnsmasq (on the gateway) and its search domain. Undefined when
 * the network has no DNS; keep the image's resolv.conf then. Write it inside
 * the environment (through the agent or the backend's API), never by joining
 * a host path with the environment's root.
 *
 * @example
 * ```ts
 * import { resolvConf } from '@execenv/net';
 *
 * const link = await networks.attachNamespace({ network: 'nat', holder: env.id, netns: { pid: agentPid } });
 * const conf = resolvConf(link); // 'nameserver 10.213.0.1\nsearch execenv\n'
 * if (conf !== undefined) await env.push(Buffer.from(conf), '/etc/resolv.conf'); // inside the environment
 * ```
 */
export function resolvConf(allocation: Allocation): string | undefined {
  if (allocation.nameservers.length === 0) return undefined;
  const lines = allocation.nameservers.map((ns) => `nameserver ${ns}`);
  if (allocation.searchDomains.length > 0) lines.push(`search ${allocation.searchDomains.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/**
 * The kernel command line parameter that configures a VM's first interface
 * statically (`ip=<address>::<gateway>:<netmask>:<hostname>:eth0:off`), for
 * guests booted without DHCP.
 *
 * @example
 * ```ts
 * import { kernelIpParameter } from '@execenv/net';
 *
 * const link = await networks.attachTap({ network: 'nat', holder: 'vm-1' });
 * kernelIpParameter(link); // 'ip=10.213.0.2::10.213.0.1:255.255.255.0:vm-1:eth0:off'
 * qemuArgs.push('-append', `console=ttyS0 root=/dev/vda ${kernelIpParameter(link)}`);
 * ```
 */
export function kernelIpParameter(allocation: Allocation, device = 'eth0'): string {
  return `ip=${allocation.address}::${allocation.gateway}:${allocation.netmask}:${allocation.hostname ?? ''}:${device}:off`;
}
