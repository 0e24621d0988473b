import type { Capability } from '../contract.js';

/**
 * The capabilities that say how far an environment is separated from the host.
 *
 * @example
 * ```ts
 * import { ISOLATION_CAPABILITIES } from '@execenv/core/driver';
 * // Listed weakest first: chroot, container, machine.
 * const isolation = ISOLATION_CAPABILITIES.find((c) => env.capabilities.has(c)); // 'isolation-machine' for qemu
 * ```
 */
export const ISOLATION_CAPABILITIES = ['isolation-chroot', 'isolation-container', 'isolation-machine'] as const;

/**
 * One of ISOLATION_CAPABILITIES.
 *
 * @example
 * ```ts
 * import { type IsolationCapability, isolationOf } from '@execenv/core/driver';
 * const isolation: IsolationCapability = isolationOf(env.driver, env.capabilities);
 * if (isolation === 'isolation-chroot') console.warn('commands share the host kernel and its processes');
 * ```
 */
export type IsolationCapability = (typeof ISOLATION_CAPABILITIES)[number];

/**
 * isolationOf returns the one isolation capability of an environment.
 * The rule, as autopkgtest has it: an environment declares exactly one of
 * `isolation-chroot`, `isolation-container` or `isolation-machine`, the
 * strongest that holds. It throws when there is none or more than one: a
 * driver's mistake, found at open rather than by a caller guessing. The
 * conformance suite checks the same rule (open-close).
 *
 * @example
 * ```ts
 * import { isolationOf } from '@execenv/core/driver';
 * isolationOf('foo', ['isolation-container', 'root', 'network']); // 'isolation-container'
 * isolationOf('foo', ['root']); // throws: the "foo" driver declares no isolation capability
 * ```
 */
export function isolationOf(driver: string, capabilities: Iterable<Capability>): IsolationCapability {
  const found = [...capabilities].filter((c): c is IsolationCapability =>
    (ISOLATION_CAPABILITIES as readonly string[]).includes(c),
  );
  if (found.length !== 1)
    throw new Error(
      `execenv: the "${driver}" driver declares ${found.length === 0 ? 'no isolation capability' : `${found.join(', ')}`}; declare exactly one of ${ISOLATION_CAPABILITIES.join(', ')}`,
    );
  return found[0]!;
}
