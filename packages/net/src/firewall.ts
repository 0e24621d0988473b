import type { Subnet } from './ipv4.js';

/** What the rules of one network need to know. */
export interface NetworkRules {
  /** The bridge, also the tag (comment) on every rule of this network. */
  bridge: string;
  /** The network's subnet. */
  subnet: Subnet;
  /** Masquerade traffic to other hosts; without it the network reaches only the host. */
  nat: boolean;
  /** The network's IPv6 /64, masqueraded too (nftables only). */
  subnet6?: string;
}

/**
 * Firewall adds a network's isolation and NAT rules and removes exactly them
 * again, found by their tag; rules it did not add are never touched.
 */
export interface Firewall {
  /** The backend's name: `nft` or `iptables`. */
  readonly name: 'nft' | 'iptables';
  /** Adds the rules of a network. */
  add(rules: NetworkRules): Promise<void>;
  /** Removes every rule tagged with `bridge`; does nothing when there is none. */
  remove(bridge: string): Promise<void>;
}

/**
 * Which firewall backend a Networks uses: nftables, iptables, or nftables when installed.
 *
 * @example
 * ```ts
 * import { type FirewallChoice, Networks } from '@execenv/net';
 *
 * // A host whose firewall is managed with iptables: keep execenv's rules there too.
 * const firewall: FirewallChoice = 'iptables';
 * const networks = new Networks({ firewall });
 * ```
 */
export type FirewallChoice = 'nft' | 'iptables' | 'auto';
