/**
 * Image sources, verification and the shared cache of execenv: references,
 * architecture names, verified downloads and lxc-download indexes.
 * @packageDocumentation
 */
export * from './arch.js';
export { RECENT_USE_MS, TREE_COMPLETE, type TreeEntry } from './cached-trees.js';
export * from './download.js';
export * from './image-cache.js';
export * from './image-settings.js';
export { DEFAULT_MAX_INDEX_AGE_MS, type IndexFreshness, type IndexRefresh } from './index-documents.js';
export * from './index-image.js';
export * from './lxc-download-meta.js';
export * from './lxc-index.js';
export * from './lxd-image-files.js';
export * from './lxd-unified.js';
export * from './podman-input.js';
export * from './prepare-publish.js';
export * from './qcow2.js';
export * from './qemu-img.js';
export * from './reference.js';
export * from './resolve-image.js';
export { DEFAULT_REQUEST_TIMEOUT_MS, type RetryPolicy } from './retry.js';
export * from './root-directory.js';
export * from './rootfs-directory.js';
export * from './signature.js';
export * from './simplestreams.js';
export * from './tarball-conversion.js';
export * from './tarball-format.js';
