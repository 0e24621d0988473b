/**
 * Private networks for execenv environments: subnets and addresses picked
 * without clashing with the host or each other and leased under an
 * inter-process lock, a bridge per network with NAT and isolation rules in
 * one nftables table, DHCP and DNS from dnsmasq, and veth (network
 * namespaces) and tap (VMs) links. Everything is recorded in the state
 * directory, removed with its last holder, and collected by gc() when its
 * owner process is gone.
 * @packageDocumentation
 */
export { DNS_DOMAIN } from './dnsmasq.js';
export type { FirewallChoice } from './firewall.js';
export { macFor, parseSubnet, type Subnet } from './ipv4.js';
export * from './leased-join.js';
export { checkNetworkName, NAME_PREFIX, type NetworkMode, NFT_TABLE, networkMode } from './names.js';
export * from './network-types.js';
export * from './networks.js';
export { kernelIpParameter, resolvConf } from './resolv-conf.js';
