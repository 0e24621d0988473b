/**
 * Test doubles for code that uses execenv: an in-memory driver whose commands
 * are functions and whose files live in a map.
 * @packageDocumentation
 */
export * from './fake-driver.js';
export * from './fake-filesystem.js';
