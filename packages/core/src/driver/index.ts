/**
 * The driver kit, like Go's database/sql/driver: what driver authors build
 * on. An environment built from one `startCommand`, a whole environment over
 * an agent session, the open helper with its lease and rollback, lease-based
 * list and gc, the host PATH and the architecture table; and small rules
 * drivers share: exit status to signal, real pipes for stdio, exactly one
 * isolation capability, UNSUPPORTED naming a spec field.
 * @packageDocumentation
 */
export * from './agent-environment.js';
export type * from './agent-session.js';
export * from './arch.js';
export * from './command-environment.js';
export * from './exit-status.js';
export * from './host.js';
export * from './host-transfer.js';
export * from './isolation.js';
export * from './open-environment.js';
export * from './pipe-stdio.js';
export * from './static-elf.js';
export * from './unsupported.js';
