export * from './archive-guard.js';
export * from './extract.js';
export * from './id-map.js';
export * from './in-root.js';
export * from './metadata.js';
export * from './pack.js';
export * from './rooted-files.js';
export * from './tar-copy.js';
