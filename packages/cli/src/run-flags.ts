import { isAbsolute, resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';

/**
 * One file or directory copied between the host and the environment.
 *
 * @example
 * ```ts
 * import { parsePush, type Transfer } from '@execenv/cli';
 *
 * const t: Transfer = parsePush('./src:/build/src', process.cwd()); // host made absolute
 * await env.push(t.host, t.guest);
 * ```
 */
export interface Transfer {
  /** Path on the host, absolute. */
  host: string;
  /** Absolute path inside the environment. */
  guest: string;
}

/**
 * Parses `--push HOST:GUEST`. The guest path is what follows the last `:`
 * and must be absolute, so host paths may hold colons.
 *
 * @example
 * ```ts
 * import { parsePush } from '@execenv/cli';
 *
 * parsePush('./src:/build/src', '/home/ada'); // { host: '/home/ada/src', guest: '/build/src' }
 * parsePush('/data/a:b:/in', '/'); // { host: '/data/a:b', guest: '/in' }: the last ':' splits
 * parsePush('./src:build', '/'); // throws commander's InvalidArgumentError: the guest path is relative
 * ```
 */
export function parsePush(value: string, cwd: string): Transfer {
  const at = value.lastIndexOf(':');
  const host = value.slice(0, at);
  const guest = value.slice(at + 1);
  if (at <= 0 || !isAbsolute(guest))
    throw new InvalidArgumentError('expected HOST:GUEST with an absolute GUEST path, e.g. ./src:/build/src');
  return { host: resolve(cwd, host), guest };
}

/**
 * Parses `--pull GUEST:HOST`. The guest path is what precedes the first `:`
 * and must be absolute, so host paths may hold colons.
 *
 * @example
 * ```ts
 * import { parsePull } from '@execenv/cli';
 *
 * parsePull('/build/out:./out', '/home/ada'); // { host: '/home/ada/out', guest: '/build/out' }
 * parsePull('/logs:/tmp/a:b', '/'); // { host: '/tmp/a:b', guest: '/logs' }: the first ':' splits
 * ```
 */
export function parsePull(value: string, cwd: string): Transfer {
  const at = value.indexOf(':');
  const guest = value.slice(0, at);
  const host = value.slice(at + 1);
  if (at <= 0 || !isAbsolute(guest) || host === '')
    throw new InvalidArgumentError('expected GUEST:HOST with an absolute GUEST path, e.g. /build/out:./out');
  return { host: resolve(cwd, host), guest };
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses `--env K=V` into a [name, value] pair; `--env K` alone is refused (the host's variables never leak in).
 *
 * @example
 * ```ts
 * import { parseEnvPair } from '@execenv/cli';
 *
 * parseEnvPair('OPTS=a=b'); // ['OPTS', 'a=b']
 * parseEnvPair('HOME'); // throws commander's InvalidArgumentError: no value is taken from the host
 * const env = Object.fromEntries(['LANG=C.UTF-8', 'TZ=UTC'].map(parseEnvPair)); // { LANG: 'C.UTF-8', TZ: 'UTC' }
 * ```
 */
export function parseEnvPair(value: string): [string, string] {
  const at = value.indexOf('=');
  const name = at < 0 ? value : value.slice(0, at);
  if (at < 0 || !NAME.test(name))
    throw new InvalidArgumentError('expected NAME=VALUE with NAME a valid variable name, e.g. LANG=C.UTF-8');
  return [name, value.slice(at + 1)];
}

/**
 * Parses `--timeout S`: seconds, a positive number, into milliseconds.
 *
 * @example
 * ```ts
 * import { parseTimeoutSeconds } from '@execenv/cli';
 *
 * parseTimeoutSeconds('30'); // 30000
 * parseTimeoutSeconds('2.5'); // 2500
 * parseTimeoutSeconds('0'); // throws commander's InvalidArgumentError
 * ```
 */
export function parseTimeoutSeconds(value: string): number {
  const s = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(s > 0))
    throw new InvalidArgumentError('expected a positive number of seconds, e.g. 30 or 2.5');
  return Math.round(s * 1000);
}

/** Commander's collector for repeatable options. */
export function collect<T>(parse: (value: string) => T): (value: string, previous: T[] | undefined) => T[] {
  return (value, previous) => [...(previous ?? []), parse(value)];
}
