/**
 * Test doubles for code that uses execenv: an in-memory driver whose commands
 * are functions and whose files live in a map, an in-memory agent session
 * for drivers built on the agent, and a process runner that records the host
 * commands a driver makes.
 * @packageDocumentation
 */

export * from './fake-agent-session.js';
export * from './fake-driver.js';
export * from './fake-filesystem.js';
export * from './fake-runner.js';
export * from './fake-utilities.js';
