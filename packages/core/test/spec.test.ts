import { describe, expect, it } from 'vitest';
import { parseSize, validateSpec } from '../src/spec.js';

describe('validateSpec', () => {
  it('returns a frozen copy of a good spec', () => {
    const spec = { image: 'x.tar', env: { A: '1' }, resources: { memory: '512M', cpu: 2 } };
    const checked = validateSpec(spec);
    expect(checked).toEqual(spec);
    expect(checked).not.toBe(spec);
    expect(Object.isFrozen(checked)).toBe(true);
  });

  it.each([
    [{ image: '' }, 'image'],
    [{ arch: 'vax' }, 'arch'],
    [{ env: { 'BAD-NAME': 'x' } }, 'env.BAD-NAME'],
    [{ env: { A: 1 } }, 'env'],
    [{ env: { A: 'x\0/bin/sh' } }, 'env.A'],
    [{ resources: { memory: 'lots' } }, 'resources.memory'],
    [{ resources: { cpu: 0 } }, 'resources.cpu'],
    [{ resources: { disk: -1 } }, 'resources.disk'],
    [{ network: '' }, 'network'],
    [{ mounts: [{ source: 'rel', target: '/x' }] }, 'mounts[0].source'],
    [{ mounts: [{ source: '/x', target: 'y' }] }, 'mounts[0].target'],
    [{ ephemeral: 'yes' }, 'ephemeral'],
    [{ labels: { a: 2 } }, 'labels'],
    [{ driverOptions: [] }, 'driverOptions'],
  ])('names the bad field of %j', (spec, field) => {
    expect(() => validateSpec(spec as never, 'test')).toThrow(
      expect.objectContaining({ code: 'INVALID_SPEC', field, message: expect.stringContaining(`invalid ${field}`) }),
    );
  });
});

describe('parseSize', () => {
  it.each([
    [1024, 1024],
    ['1K', 1024],
    ['512M', 512 * 1024 ** 2],
    ['2GiB', 2 * 1024 ** 3],
    ['10', 10],
  ])('%s is %d bytes', (input, want) => expect(parseSize(input)).toBe(want));

  it.each(['', 'M', '1.5G', '-1', 'lots', 0])('refuses %j', (input) =>
    expect(parseSize(input as never)).toBeUndefined(),
  );
});
