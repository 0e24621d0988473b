import type { ProcessRunner } from '@execenv/core';
import { describe, expect, it } from 'vitest';
import { chrootUndo, mappedTree } from '../src/mapped-tree.js';

function recordingRunner(ran: string[][]): ProcessRunner {
  return {
    run: async (argv) => {
      ran.push([...argv]);
      return { argv, exitCode: 0, signal: null, stdout: '', stderr: '' };
    },
    spawn: () => {
      throw new Error('not used');
    },
  };
}

const MAP = ['--map-root-user', '--map-users=1000000,1,65536', '--map-groups=1000000,1,65536'];

describe('mapped trees', () => {
  it('are removed from inside a user namespace with the same mapping', async () => {
    const ran: string[][] = [];
    await chrootUndo(recordingRunner(ran))(mappedTree('/state/envs/e/upper', MAP));
    expect(ran).toEqual([
      ['unshare', '--user', ...MAP, '--', 'rm', '-rf', '--one-file-system', '--', '/state/envs/e/upper'],
    ]);
  });

  it.each([
    ['a mapping option that is not one', { ...mappedTree('/x', MAP), mapArgs: ['--map-root-user', '--', 'sh'] }],
    ['no mapping', { kind: 'mapped-tree', path: '/x' }],
    ['no path', { kind: 'mapped-tree', mapArgs: MAP }],
  ])('refuse a lease record with %s, running nothing', async (_what, record) => {
    const ran: string[][] = [];
    await expect(chrootUndo(recordingRunner(ran))(record)).rejects.toThrow(/malformed mapped-tree/);
    expect(ran).toEqual([]);
  });
});
