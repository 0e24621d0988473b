import type { Owner } from '@execenv/core';

/**
 * Label of every container and network: the environment id.
 *
 * @example
 * ```ts
 * import { ID_LABEL, PodmanCli } from '@execenv/podman';
 * const args = ['ps', '--all', '--filter', `label=${ID_LABEL}=execenv-abc123`, '--format', 'json'];
 * const [container] = await new PodmanCli().json<{ Names: string[]; State: string }[]>(args);
 * console.log(container?.State); // e.g. running
 * ```
 */
export const ID_LABEL = 'execenv.id';
/**
 * Label of every container and network: the owner process, `PID:STARTTIME@HOSTNAME`.
 *
 * @example
 * ```ts
 * import { OWNER_LABEL, parseOwnerLabel, PodmanCli } from '@execenv/podman';
 * const args = ['ps', '--all', '--filter', `label=${OWNER_LABEL}`, '--format', 'json'];
 * for (const c of await new PodmanCli().json<{ Names: string[]; Labels?: Record<string, string> }[]>(args))
 *   console.log(c.Names[0], parseOwnerLabel(c.Labels?.[OWNER_LABEL] ?? ''));
 * ```
 */
export const OWNER_LABEL = 'execenv.owner';
/**
 * Label of images this driver imported from a rootfs tarball: the tarball's sha256.
 *
 * @example
 * ```ts
 * import { PodmanCli, ROOTFS_LABEL } from '@execenv/podman';
 * const args = ['images', '--filter', `label=${ROOTFS_LABEL}`, '--format', 'json'];
 * const imported = await new PodmanCli().json<{ Id: string; Labels?: Record<string, string> }[]>(args);
 * const digests = imported.map((image) => image.Labels?.[ROOTFS_LABEL]);
 * ```
 */
export const ROOTFS_LABEL = 'execenv.rootfs';
/**
 * Label of images an environment was published as: the environment id.
 *
 * @example
 * ```ts
 * import { PodmanCli, PUBLISHED_LABEL } from '@execenv/podman';
 * const args = ['images', '--filter', `label=${PUBLISHED_LABEL}`, '--format', 'json'];
 * const published = await new PodmanCli().json<{ Names?: string[]; Labels?: Record<string, string> }[]>(args);
 * for (const image of published) console.log(image.Names, 'from', image.Labels?.[PUBLISHED_LABEL]);
 * ```
 */
export const PUBLISHED_LABEL = 'execenv.published-from';
/**
 * Repository of images imported from rootfs tarballs; the tag is the converted tarball's sha256.
 *
 * @example
 * ```ts
 * import { PodmanCli, ROOTFS_REPOSITORY } from '@execenv/podman';
 * const r = await new PodmanCli().run(['images', '--format', '{{.Repository}}:{{.Tag}}', ROOTFS_REPOSITORY]);
 * console.log(r.stdout); // localhost/execenv-rootfs:<sha256>, one line per imported tarball
 * ```
 */
export const ROOTFS_REPOSITORY = 'localhost/execenv-rootfs';

/**
 * The owner label's value.
 *
 * @example
 * ```ts
 * import { hostname } from 'node:os';
 * import { ownerOf } from '@execenv/core';
 * import { OWNER_LABEL, ownerLabel } from '@execenv/podman';
 * const label = `${OWNER_LABEL}=${ownerLabel(await ownerOf(), hostname())}`; // execenv.owner=4242:123456@build-host
 * ```
 */
export function ownerLabel(owner: Owner, hostname: string): string {
  return `${owner.pid}:${owner.startTime}@${hostname}`;
}

/**
 * Parses an owner label; undefined when it is not one.
 *
 * @example
 * ```ts
 * import { hostname } from 'node:os';
 * import { isAlive } from '@execenv/core';
 * import { parseOwnerLabel } from '@execenv/podman';
 * const parsed = parseOwnerLabel('4242:123456@build-host'); // { owner: { pid: 4242, startTime: '123456' }, hostname }
 * const orphaned = parsed !== undefined && parsed.hostname === hostname() && !(await isAlive(parsed.owner));
 * ```
 */
export function parseOwnerLabel(value: string): { owner: Owner; hostname: string } | undefined {
  const m = /^(\d+):(\d+)@(.+)$/.exec(value);
  if (!m) return undefined;
  return { owner: { pid: Number(m[1]), startTime: m[2]! }, hostname: m[3]! };
}

/**
 * The image name of a converted rootfs tarball with this sha256.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { convertToPodmanInput, ImageCache } from '@execenv/images';
 * import { PodmanCli, rootfsImageName } from '@execenv/podman';
 * const cache = new ImageCache();
 * const converted = await convertToPodmanInput('/srv/bookworm.tar.zst', { cache, runner: hostRunner() });
 * const imported = await new PodmanCli().succeeds(['image', 'exists', rootfsImageName(converted.digest)]);
 * ```
 */
export function rootfsImageName(digest: string): string {
  return `${ROOTFS_REPOSITORY}:${digest}`;
}
