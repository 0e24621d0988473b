/**
 * Test doubles for code that uses execenv: an in-memory driver whose commands
 * are functions and whose files live in a map, and an in-memory agent session
 * for drivers built on the agent.
 * @packageDocumentation
 */

export * from './fake-agent-session.js';
export * from './fake-driver.js';
export * from './fake-filesystem.js';
