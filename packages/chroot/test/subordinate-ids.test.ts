import { describe, expect, it } from 'vitest';
import { findSubordinateRange, rootlessIdMap, rootlessMapArgs } from '../src/subordinate-ids.js';

describe('subordinate ids', () => {
  const subuid = 'alice:100000:65536\n1001:165536:65536\nbroken:x:1\n';

  it('finds a range by name or by numeric id', () => {
    expect(findSubordinateRange(subuid, 'alice', 1000)).toEqual({ start: 100000, count: 65536 });
    expect(findSubordinateRange(subuid, 'bob', 1001)).toEqual({ start: 165536, count: 65536 });
    expect(findSubordinateRange(subuid, 'broken', 7)).toBeUndefined();
  });

  it('maps the user to root and the range to 1..', () => {
    const sub = { uids: { start: 100000, count: 65536 }, gids: { start: 200000, count: 1000 } };
    expect(rootlessIdMap(1000, 1000, sub)).toEqual({
      uids: [
        { inside: 0, outside: 1000, count: 1 },
        { inside: 1, outside: 100000, count: 65536 },
      ],
      gids: [
        { inside: 0, outside: 1000, count: 1 },
        { inside: 1, outside: 200000, count: 1000 },
      ],
    });
    expect(rootlessMapArgs(sub)).toEqual([
      '--map-root-user',
      '--map-users=100000,1,65536',
      '--map-groups=200000,1,1000',
    ]);
  });

  it('maps only root without subordinate ids', () => {
    expect(rootlessIdMap(1000, 1000)).toEqual({
      uids: [{ inside: 0, outside: 1000, count: 1 }],
      gids: [{ inside: 0, outside: 1000, count: 1 }],
    });
    expect(rootlessMapArgs()).toEqual(['--map-root-user']);
  });
});
