/**
 * Test helpers for drivers that put environments on @execenv/net networks.
 * @packageDocumentation
 */
export { HostNetRunner } from './host-net-runner.js';
