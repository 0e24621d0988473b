import { InvalidSpecError } from '@execenv/core';
import { archNames } from './arch.js';

/**
 * A parsed image reference.
 *
 * @example
 * ```ts
 * import { InvalidSpecError } from '@execenv/core';
 * import { type ImageReference, parseReference } from '@execenv/images';
 * const ref: ImageReference = parseReference(spec.image); // INVALID_SPEC (field `image`) when malformed
 * if (ref.kind === 'lxd' || ref.kind === 'oci')
 *   throw new InvalidSpecError('image', `${spec.image} names an image of another driver`, { driver: 'chroot' });
 * ```
 */
export type ImageReference =
  | { kind: 'file'; path: string }
  | { kind: 'url'; url: string }
  | { kind: 'lxd-split'; meta: string; rootfs: string }
  | { kind: 'index'; distribution: string; release: string; architecture: string; variant: string }
  | { kind: 'lxd'; alias: string }
  | { kind: 'oci'; name: string };

const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

function bad(reference: string, problem: string): InvalidSpecError {
  return new InvalidSpecError('image', `"${reference}": ${problem}`);
}

/**
 * Parses an image reference:
 * - a path (`/srv/rootfs.tar.zst`, `./rootfs.tar`, `file:rootfs.tar`): a local tarball, disk or directory;
 * - `https://...` or `http://...`: a file to download;
 * - `lxd-split:META,ROOTFS`: a split LXD image given as two local files, its
 *   metadata tarball and its root filesystem (as `lxc image import META ROOTFS` takes them);
 * - `index:DISTRIBUTION/RELEASE/ARCH[/VARIANT]`: an entry of an lxc-download or simplestreams server;
 * - `lxd:ALIAS`: an image already known to LXD;
 * - `oci:NAME[:TAG]`: an OCI image (podman).
 * Throws InvalidSpecError (field `image`) saying what is wrong.
 *
 * @example
 * ```ts
 * import { parseReference } from '@execenv/images';
 * parseReference('index:debian/bookworm/x86_64');
 * // { kind: 'index', distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' }
 * parseReference('lxd-split:./meta.tar.xz,./rootfs.squashfs'); // { kind: 'lxd-split', meta, rootfs }
 * parseReference('oci:docker.io/library/debian:bookworm'); // kind 'oci': the podman driver's
 * ```
 */
export function parseReference(reference: string): ImageReference {
  if (typeof reference !== 'string' || reference.trim() === '')
    throw bad(String(reference), 'an image reference is a non-empty string');
  if (reference.includes('\0')) throw bad(reference, 'contains a NUL byte');
  if (reference.startsWith('/') || reference.startsWith('./') || reference.startsWith('../'))
    return { kind: 'file', path: reference };
  const colon = reference.indexOf(':');
  const scheme = colon > 0 ? reference.slice(0, colon) : '';
  const rest = reference.slice(colon + 1);
  switch (scheme) {
    case 'file':
      if (!rest) throw bad(reference, 'file: needs a path');
      return { kind: 'file', path: rest };
    case 'http':
    case 'https': {
      let url: URL;
      try {
        url = new URL(reference);
      } catch {
        throw bad(reference, 'is not a valid URL');
      }
      return { kind: 'url', url: url.href };
    }
    case 'lxd-split': {
      const paths = rest.split(',');
      if (paths.length !== 2 || paths.some((p) => p.trim() === ''))
        throw bad(
          reference,
          'lxd-split references are lxd-split:META,ROOTFS, two paths separated by one comma (link a path that has a comma)',
        );
      const [meta, rootfs] = paths as [string, string];
      return { kind: 'lxd-split', meta, rootfs };
    }
    case 'index': {
      const parts = rest.split('/');
      if (parts.length < 3 || parts.length > 4 || parts.some((p) => !NAME.test(p)))
        throw bad(
          reference,
          'index references are index:DISTRIBUTION/RELEASE/ARCH[/VARIANT], e.g. index:debian/bookworm/amd64',
        );
      const [distribution, release, arch, variant = 'default'] = parts as [string, string, string, string?];
      return { kind: 'index', distribution, release, architecture: archNames(arch, 'image').debian, variant };
    }
    case 'lxd':
      if (!NAME.test(rest)) throw bad(reference, 'lxd: needs an alias (letters, digits, ".", "_", "+", "-")');
      return { kind: 'lxd', alias: rest };
    case 'oci':
      if (!/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$/.test(rest))
        throw bad(reference, 'oci: needs an image name such as oci:docker.io/library/debian:bookworm');
      return { kind: 'oci', name: rest };
    default:
      if (scheme)
        throw bad(reference, `unknown scheme "${scheme}:"; use a path, https:, lxd-split:, index:, lxd: or oci:`);
      return { kind: 'file', path: reference };
  }
}
