/**
 * Test helpers for code that fetches images: a loopback HTTP server, an
 * image server in the lxc-download and simplestreams layouts with keys made
 * on the spot, and builders of small image files.
 * @packageDocumentation
 */
export * from './http-fixture.js';
export * from './image-files.js';
export * from './image-server.js';
