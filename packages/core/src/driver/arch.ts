import { InvalidSpecError } from '../errors.js';
import { ARCHES, type Arch } from '../spec.js';

/**
 * ArchNames is one architecture under every naming the drivers meet.
 *
 * @example
 * ```ts
 * import { type ArchNames, archNames } from '@execenv/core/driver';
 * const arm: ArchNames = archNames('aarch64');
 * console.log(arm.debian, arm.lxd, arm.oci, arm.ociVariant); // arm64 aarch64 arm64 v8
 * ```
 */
export interface ArchNames {
  /** Debian (dpkg) name, the one EnvSpec.arch uses. */
  debian: Arch;
  /** Kernel name (`uname -m`). */
  kernel: string;
  /** LXD / Incus name. */
  lxd: string;
  /** OCI image-spec `architecture`. */
  oci: string;
  /** OCI image-spec `variant`, where one is defined. */
  ociVariant?: string;
}

/**
 * ARCH_NAMES is the architecture table, one row per Debian architecture.
 *
 * @example
 * ```ts
 * import { ARCH_NAMES } from '@execenv/core/driver';
 * // Every OCI platform a driver can pull an image for.
 * const platforms = ARCH_NAMES.map((a) => `linux/${a.oci}${a.ociVariant ? `/${a.ociVariant}` : ''}`);
 * ```
 */
export const ARCH_NAMES: readonly ArchNames[] = [
  { debian: 'amd64', kernel: 'x86_64', lxd: 'x86_64', oci: 'amd64' },
  { debian: 'arm64', kernel: 'aarch64', lxd: 'aarch64', oci: 'arm64', ociVariant: 'v8' },
  { debian: 'armhf', kernel: 'armv7l', lxd: 'armv7l', oci: 'arm', ociVariant: 'v7' },
  { debian: 'i386', kernel: 'i686', lxd: 'i686', oci: '386' },
  { debian: 'ppc64el', kernel: 'ppc64le', lxd: 'ppc64le', oci: 'ppc64le' },
  { debian: 's390x', kernel: 's390x', lxd: 's390x', oci: 's390x' },
  { debian: 'riscv64', kernel: 'riscv64', lxd: 'riscv64', oci: 'riscv64' },
];

/**
 * archNames finds an architecture by any of its names (`amd64`, `x86_64`,
 * `aarch64`, `386`, ...). Throws InvalidSpecError naming `field` for an
 * unknown one.
 *
 * @example
 * ```ts
 * import { archNames } from '@execenv/core/driver';
 * archNames('x86_64').debian; // 'amd64'
 * // An image's metadata names its architecture the LXD way: a bad one is INVALID_SPEC on `image`.
 * const arch = archNames(meta.architecture, 'image').debian;
 * ```
 */
export function archNames(name: string, field = 'arch'): ArchNames {
  const found = ARCH_NAMES.find((a) => [a.debian, a.kernel, a.lxd, a.oci].includes(name));
  if (!found) throw new InvalidSpecError(field, `unknown architecture "${name}"; known: ${ARCHES.join(', ')}`);
  return found;
}

const BY_NODE: Readonly<Record<string, Arch>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'armhf',
  ia32: 'i386',
  ppc64: 'ppc64el',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/**
 * hostArch returns the Debian name of the host's architecture; throws InvalidSpecError on one outside the table.
 *
 * @example
 * ```ts
 * import { InvalidSpecError } from '@execenv/core';
 * import { hostArch } from '@execenv/core/driver';
 * // In a driver's open(), before anything is created:
 * if (spec.arch && spec.arch !== hostArch())
 *   throw new InvalidSpecError('arch', `runs the host's architecture (${hostArch()})`, { driver: 'foo' });
 * ```
 */
export function hostArch(nodeArch: string = process.arch): Arch {
  const arch = BY_NODE[nodeArch];
  if (!arch) throw new InvalidSpecError('arch', `unsupported host architecture ${nodeArch}`);
  return arch;
}
