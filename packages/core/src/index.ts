/**
 * The execenv contract: a registry of drivers, environments that run commands
 * and move files, typed errors, cleanup leases and the helpers drivers share.
 * @packageDocumentation
 */
export * from './capabilities.js';
export type * from './contract.js';
export * from './environment-base.js';
export * from './errors.js';
export * from './events.js';
export * from './exec-result.js';
export * from './files/index.js';
export * from './lifecycle/gc.js';
export * from './lifecycle/host-undo.js';
export * from './lifecycle/lease.js';
export * from './lifecycle/lock.js';
export * from './lifecycle/mounts.js';
export * from './lifecycle/owner.js';
export * from './lifecycle/signals.js';
export * from './lifecycle/state-dir.js';
export * from './process-exec.js';
export * from './registry.js';
export * from './runner.js';
export * from './spec.js';
export * from './users.js';
