import type { Owner } from '@execenv/core';

/** Label of every container and network: the environment id. */
export const ID_LABEL = 'execenv.id';
/** Label of every container and network: the owner process, `PID:STARTTIME@HOSTNAME`. */
export const OWNER_LABEL = 'execenv.owner';
/** Label of images this driver imported from a rootfs tarball: the tarball's sha256. */
export const ROOTFS_LABEL = 'execenv.rootfs';
/** Label of images an environment was published as: the environment id. */
export const PUBLISHED_LABEL = 'execenv.published-from';
/** Repository of images imported from rootfs tarballs; the tag is the converted tarball's sha256. */
export const ROOTFS_REPOSITORY = 'localhost/execenv-rootfs';

/** The owner label's value. */
export function ownerLabel(owner: Owner, hostname: string): string {
  return `${owner.pid}:${owner.startTime}@${hostname}`;
}

/** Parses an owner label; undefined when it is not one. */
export function parseOwnerLabel(value: string): { owner: Owner; hostname: string } | undefined {
  const m = /^(\d+):(\d+)@(.+)$/.exec(value);
  if (!m) return undefined;
  return { owner: { pid: Number(m[1]), startTime: m[2]! }, hostname: m[3]! };
}

/** The image name of a converted rootfs tarball with this sha256. */
export function rootfsImageName(digest: string): string {
  return `${ROOTFS_REPOSITORY}:${digest}`;
}
