import { describe, expect, it } from 'vitest';
import { ARCH_NAMES, archNames, findBinary, HOST_PATH, hostArch, hostEnv, pathExists } from '../../src/driver/index.js';

describe('host', () => {
  it('has one fixed PATH and a C locale', () => {
    expect(HOST_PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(hostEnv()).toEqual({ PATH: HOST_PATH, LC_ALL: 'C' });
    hostEnv().PATH = 'changed';
    expect(hostEnv().PATH).toBe(HOST_PATH);
  });

  it('finds binaries in the system directories only', async () => {
    expect(await findBinary('sh')).toMatch(/^\/(usr\/)?(local\/)?s?bin\/sh$/);
    expect(await findBinary('/bin/sh')).toBe('/bin/sh');
    expect(await findBinary('execenv-no-such-binary')).toBeUndefined();
    expect(await findBinary('/etc/hostname-no-such')).toBeUndefined();
    expect(await pathExists('/')).toBe(true);
    expect(await pathExists('/no/such/path')).toBe(false);
  });
});

describe('arch table', () => {
  it.each([
    ['amd64', 'x86_64', 'amd64'],
    ['aarch64', 'aarch64', 'arm64'],
    ['386', 'i686', '386'],
    ['ppc64el', 'ppc64le', 'ppc64le'],
    ['armv7l', 'armv7l', 'arm'],
  ])('maps %s', (name, kernel, oci) => {
    expect(archNames(name)).toMatchObject({ kernel, oci });
  });

  it('has one row per accepted arch and refuses unknown names', () => {
    expect(ARCH_NAMES.map((a) => a.debian)).toEqual(['amd64', 'arm64', 'armhf', 'i386', 'ppc64el', 's390x', 'riscv64']);
    expect(() => archNames('vax', 'image')).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'image' }));
  });

  it('names the host architecture', () => {
    expect(hostArch('x64')).toBe('amd64');
    expect(hostArch('arm64')).toBe('arm64');
    expect(hostArch('ia32')).toBe('i386');
    expect(ARCH_NAMES.map((a) => a.debian)).toContain(hostArch());
    expect(() => hostArch('mips')).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'arch' }));
  });
});
