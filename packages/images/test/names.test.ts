import { describe, expect, it } from 'vitest';
import { archNames } from '../src/arch.js';
import { parseReference } from '../src/reference.js';

describe('archNames', () => {
  it.each([
    ['amd64', 'x86_64', 'amd64'],
    ['x86_64', 'x86_64', 'amd64'],
    ['aarch64', 'aarch64', 'arm64'],
    ['armv7l', 'armv7l', 'arm'],
    ['386', 'i686', '386'],
    ['ppc64le', 'ppc64le', 'ppc64le'],
  ])('%s is kernel %s, OCI %s', (name, kernel, oci) => {
    expect(archNames(name)).toMatchObject({ kernel, oci });
  });
  it('refuses an unknown name with INVALID_SPEC', () => {
    expect(() => archNames('vax')).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'arch' }));
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
