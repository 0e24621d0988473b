import { randomBytes } from 'node:crypto';
import { InvalidSpecError } from '@execenv/core';

/**
 * NAME_PREFIX starts the name of every interface this package creates
 * (bridges, veths, taps); the isolation rules match other networks by it.
 *
 * @example
 * ```ts
 * import { execFileSync } from 'node:child_process';
 * import { NAME_PREFIX } from '@execenv/net';
 *
 * // The bridges, veths and taps execenv made on this host.
 * const links: { ifname: string }[] = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }));
 * console.log(links.map((l) => l.ifname).filter((name) => name.startsWith(NAME_PREFIX)));
 * ```
 */
export const NAME_PREFIX = 'exv';

/**
 * NFT_TABLE is the one nftables table (family inet) that holds every rule this package adds.
 *
 * @example
 * ```ts
 * import { execFileSync } from 'node:child_process';
 * import { NFT_TABLE } from '@execenv/net';
 *
 * // Every NAT and isolation rule execenv added, each commented with its bridge.
 * execFileSync('nft', ['list', 'table', 'inet', NFT_TABLE], { stdio: 'inherit' });
 * ```
 */
export const NFT_TABLE = 'execenv';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A random suffix of 8 lower-case letters and digits: with the prefix, an interface name of 12 characters. */
export function randomSuffix(): string {
  let s = '';
  for (const b of randomBytes(8)) s += ALPHABET[b % ALPHABET.length];
  return s;
}

/** The kinds of interface this package names: bridge, host end of a veth, its peer before renaming, tap. */
export type InterfaceKind = 'bridge' | 'veth' | 'peer' | 'tap';

const LETTER: Record<InterfaceKind, string> = { bridge: 'b', veth: 'h', peer: 'p', tap: 't' };

/** A fresh interface name of the given kind, e.g. `exvbk3j9x0aq2`. */
export function interfaceName(kind: InterfaceKind, suffix: string = randomSuffix()): string {
  return `${NAME_PREFIX}${LETTER[kind]}${suffix}`;
}

/** The names `EnvSpec.network` reserves: no network, the host's, the shared NAT network. */
export const RESERVED_NETWORKS = ['none', 'host'] as const;

const NETWORK_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/**
 * Checks a network name: 1 to 63 lower-case letters, digits, `.`, `_` or `-`,
 * starting with a letter or digit; `none` and `host` are not networks.
 *
 * @example
 * ```ts
 * import { checkNetworkName } from '@execenv/net';
 *
 * checkNetworkName('build-net'); // 'build-net'
 * checkNetworkName('host'); // throws InvalidSpecError: "host" is not a network the SDK creates
 * checkNetworkName('Build Net', 'options.network'); // throws InvalidSpecError naming options.network
 * ```
 */
export function checkNetworkName(name: unknown, field = 'network'): string {
  if (typeof name !== 'string' || !NETWORK_NAME.test(name))
    throw new InvalidSpecError(
      field,
      `a network name is 1 to 63 lower-case letters, digits, ".", "_" or "-", got ${JSON.stringify(name)}`,
    );
  if ((RESERVED_NETWORKS as readonly string[]).includes(name))
    throw new InvalidSpecError(field, `"${name}" is not a network the SDK creates`);
  return name;
}

const HOLDER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Checks the id of whoever holds an address (an environment id): 1 to 63 letters, digits, `.`, `_` or `-`. */
export function checkHolder(holder: unknown, field = 'holder'): string {
  if (typeof holder !== 'string' || !HOLDER.test(holder))
    throw new InvalidSpecError(
      field,
      `an address holder is 1 to 63 letters, digits, ".", "_" or "-", got ${JSON.stringify(holder)}`,
    );
  return holder;
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Checks an interface name for inside an environment (at most 15 characters, no `/` or spaces). */
export function checkInterfaceName(name: unknown, field = 'ifname'): string {
  if (typeof name !== 'string' || !IFNAME.test(name) || name === '.' || name === '..')
    throw new InvalidSpecError(field, `an interface name is 1 to 15 letters, digits, ".", "_" or "-"`);
  return name;
}

/**
 * What `EnvSpec.network` asks for: no network, the host's, or a private network by name.
 *
 * @example
 * ```ts
 * import { type NetworkMode, networkMode } from '@execenv/net';
 *
 * const mode: NetworkMode = networkMode(spec.network);
 * const unshare = mode.mode === 'host' ? [] : ['--net']; // 'none' and 'private' get a namespace of their own
 * // ...start the environment's init with unshare, then:
 * if (mode.mode === 'private') await networks.attachNamespace({ network: mode.network, holder: id, netns: { pid } });
 * ```
 */
export type NetworkMode = { mode: 'none' } | { mode: 'host' } | { mode: 'private'; network: string };

/**
 * Reads `EnvSpec.network` the way every driver should: absent or `none` is no
 * network, `host` the host's, anything else (`nat` included) the private
 * network of that name. Throws InvalidSpecError naming `network` for a bad name.
 *
 * @example
 * ```ts
 * import { networkMode } from '@execenv/net';
 *
 * networkMode(undefined); // { mode: 'none' }
 * networkMode('host'); // { mode: 'host' }
 * networkMode('nat'); // { mode: 'private', network: 'nat' }
 * networkMode('Not A Name'); // throws InvalidSpecError naming network
 * ```
 */
export function networkMode(network: string | undefined): NetworkMode {
  if (network === undefined || network === 'none') return { mode: 'none' };
  if (network === 'host') return { mode: 'host' };
  return { mode: 'private', network: checkNetworkName(network) };
}
