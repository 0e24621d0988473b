import { describe, expect, it } from 'vitest';
import { resolveUser } from '../src/users.js';

const passwd =
  'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/sh\nbuilder:x:1000:1000::/home/b:/bin/sh\n';
const group = 'root:x:0:\nsudo:x:27:builder\nnogroup:x:65534:\nbuilder:x:1000:\ndocker:x:999:other,builder\n';

describe('resolveUser', () => {
  it('resolves a name with its supplementary groups', () => {
    expect(resolveUser('builder', passwd, group)).toEqual({ uid: 1000, gid: 1000, groups: [1000, 27, 999] });
  });
  it('resolves a bare uid through passwd', () => {
    expect(resolveUser('65534', passwd, group)).toEqual({ uid: 65534, gid: 65534, groups: [65534] });
  });
  it('takes uid:gid as given', () => {
    expect(resolveUser('1234:2345', passwd, group)).toEqual({ uid: 1234, gid: 2345, groups: [2345] });
  });
  it('uses the uid as gid for an unknown bare uid', () => {
    expect(resolveUser('4242', passwd, group)).toEqual({ uid: 4242, gid: 4242, groups: [4242] });
  });
  it('refuses an unknown name with INVALID_SPEC naming the field', () => {
    expect(() => resolveUser('ghost', passwd, group, 'execenv-x')).toThrow(
      expect.objectContaining({ code: 'INVALID_SPEC', field: 'user', envId: 'execenv-x' }),
    );
  });
});
