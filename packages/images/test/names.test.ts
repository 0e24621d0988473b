import { archNames as coreArchNames } from '@execenv/core/driver';
import { describe, expect, it } from 'vitest';
import { archNames } from '../src/arch.js';
import { parseReference } from '../src/reference.js';

describe('archNames', () => {
  // The table lives in @execenv/core/driver (tested there); images re-exports it unchanged.
  it('is the driver kit table', () => {
    expect(archNames).toBe(coreArchNames);
  });
});

describe('parseReference', () => {
  it.each([
    ['/srv/rootfs.tar.zst', { kind: 'file', path: '/srv/rootfs.tar.zst' }],
    ['./r.tar', { kind: 'file', path: './r.tar' }],
    ['file:r.tar', { kind: 'file', path: 'r.tar' }],
    ['https://images.example/r.tar.xz', { kind: 'url', url: 'https://images.example/r.tar.xz' }],
    [
      'index:debian/bookworm/x86_64',
      { kind: 'index', distribution: 'debian', release: 'bookworm', architecture: 'amd64', variant: 'default' },
    ],
    [
      'index:alpine/3.19/arm64/cloud',
      { kind: 'index', distribution: 'alpine', release: '3.19', architecture: 'arm64', variant: 'cloud' },
    ],
    ['lxd:builder-base', { kind: 'lxd', alias: 'builder-base' }],
    [
      'lxd-split:/srv/meta.tar.xz,/srv/rootfs.squashfs',
      { kind: 'lxd-split', meta: '/srv/meta.tar.xz', rootfs: '/srv/rootfs.squashfs' },
    ],
    ['oci:docker.io/library/debian:bookworm', { kind: 'oci', name: 'docker.io/library/debian:bookworm' }],
  ])('%s', (ref, want) => expect(parseReference(ref)).toEqual(want));

  it.each([
    '',
    'index:debian/bookworm',
    'index:debian/../x/amd64',
    'index:debian/bookworm/vax',
    'ftp://x/y',
    'lxd:',
    'lxd-split:/srv/meta.tar.xz',
    'lxd-split:/a,/b,/c',
    'lxd-split:/a,',
    'oci:UPPER',
    'https://',
  ])('refuses %j naming the image field', (ref) =>
    expect(() => parseReference(ref)).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'image' })),
  );
});
