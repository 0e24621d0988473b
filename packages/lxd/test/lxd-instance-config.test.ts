import { describe, expect, it } from 'vitest';
import { canMountAgent, checkLxdSpec, instanceRequest, profileRequest } from '../src/lxd-instance-config.js';

const owner = { id: 'execenv-abc', owner: '42:1000', host: 'h' };
const keys = { 'user.execenv.id': 'execenv-abc', 'user.execenv.owner': '42:1000', 'user.execenv.host': 'h' };

describe('profileRequest', () => {
  it("puts limits, security, cloud-init vendor-data, the network and host shares in the environment's profile", () => {
    const p = profileRequest(
      owner,
      {
        image: 'lxd:x',
        resources: { cpu: 1, memory: '1G', disk: '2G' },
        mounts: [
          { source: '/srv/in', target: '/in', readOnly: true },
          { source: '/srv/out', target: '/out' },
        ],
        driverOptions: {
          privileged: true,
          vendorData: '#cloud-config\n{}',
          storagePool: 'fast',
          config: { 'boot.autostart': 'false' },
        },
      },
      { network: 'execenvbr0' },
    );
    expect(p).toEqual({
      name: 'execenv-abc',
      description: 'execenv environment execenv-abc',
      config: {
        ...keys,
        'limits.cpu': '1',
        'limits.memory': `${1024 ** 3}B`,
        'security.privileged': 'true',
        'raw.lxc': 'lxc.autodev.tmpfs.size = 16777216',
        'cloud-init.vendor-data': '#cloud-config\n{}',
        'boot.autostart': 'false',
      },
      devices: {
        eth0: { type: 'nic', name: 'eth0', network: 'execenvbr0' },
        root: { type: 'disk', path: '/', pool: 'fast', size: `${2 * 1024 ** 3}B` },
        'execenv-mount0': { type: 'disk', source: '/srv/in', path: '/in', readonly: 'true' },
        'execenv-mount1': { type: 'disk', source: '/srv/out', path: '/out' },
      },
    });
  });

  it('mounts the host agent binary read-only in place of a larger /dev', () => {
    const p = profileRequest(
      owner,
      { image: '/x.tar' },
      { init: ['/bin/sleep', 'infinity'], agentBinary: '/opt/execenv/amd64/execenv-agent' },
    );
    expect(p.config['raw.lxc']).toBe('lxc.init.cmd = /bin/sleep infinity\nlxc.signal.halt = SIGKILL');
    expect(p.devices).toEqual({
      'execenv-agent': {
        type: 'disk',
        source: '/opt/execenv/amd64/execenv-agent',
        path: '/dev/.execenv-agent',
        readonly: 'true',
      },
    });
  });

  it('gives a virtual machine no container-only keys', () => {
    const p = profileRequest(
      owner,
      { image: 'lxd:x', driverOptions: { type: 'virtual-machine' } },
      { init: ['/bin/sleep', 'infinity'] },
    );
    expect(p.config).toEqual(keys);
    expect(p.devices).toEqual({});
  });
});

describe('canMountAgent', () => {
  it('mounts only into unprivileged containers of a daemon on this host', () => {
    expect(canMountAgent({ image: 'lxd:x' }, true)).toBe(true);
    expect(canMountAgent({ image: 'lxd:x', driverOptions: { privileged: false } }, true)).toBe(true);
    // Over HTTPS the daemon does not see this host's files.
    expect(canMountAgent({ image: 'lxd:x' }, false)).toBe(false);
    expect(canMountAgent({ image: 'lxd:x', driverOptions: { type: 'virtual-machine' } }, true)).toBe(false);
    // Root of a privileged container could remount the binary writable.
    expect(canMountAgent({ image: 'lxd:x', driverOptions: { privileged: true } }, true)).toBe(false);
    expect(canMountAgent({ image: 'lxd:x', driverOptions: { config: { 'security.privileged': 'yes' } } }, true)).toBe(
      false,
    );
    expect(
      canMountAgent(
        { image: 'lxd:x', driverOptions: { privileged: true, config: { 'security.privileged': '0' } } },
        true,
      ),
    ).toBe(true);
  });
});

describe('instanceRequest', () => {
  it("creates a stopped instance of the image with the default and the environment's profiles", () => {
    expect(
      instanceRequest(owner, { image: 'lxd:x', ephemeral: false }, { type: 'image', alias: 'x' }, [
        'default',
        'execenv-abc',
      ]),
    ).toEqual({
      name: 'execenv-abc',
      type: 'container',
      ephemeral: false,
      profiles: ['default', 'execenv-abc'],
      config: keys,
      devices: {},
      source: { type: 'image', alias: 'x' },
      start: false,
    });
  });
});

describe('checkLxdSpec', () => {
  it('names the driver option that is wrong', () => {
    const field = (driverOptions: unknown) => {
      try {
        checkLxdSpec({ image: 'lxd:x', driverOptions: driverOptions as Record<string, unknown> });
        return 'ok';
      } catch (err) {
        return (err as { field?: string }).field;
      }
    };
    expect(field({ type: 'virtual-machine' })).toBe('ok');
    expect(field({ type: 'pod' })).toBe('driverOptions.type');
    expect(field({ rawLxc: ['a\nb'] })).toBe('driverOptions.rawLxc');
    expect(field({ type: 'virtual-machine', rawLxc: ['lxc.x = y'] })).toBe('driverOptions.rawLxc');
    expect(field({ init: ['/bin/sh -c'] })).toBe('driverOptions.init');
    expect(field({ readyTimeoutMs: -1 })).toBe('driverOptions.readyTimeoutMs');
    expect(field({ config: { 'user.execenv.id': 'x' } })).toBe('driverOptions.config.user.execenv.id');
    expect(field({ storagePool: '../x' })).toBe('driverOptions.storagePool');
    expect(field({ images: { servers: { lxc: 'https://images.example/' } } })).toBe('ok');
    expect(field({ images: { servers: 'https://images.example/' } })).toBe('driverOptions.images');
    expect(field({ images: { nonsense: true } })).toBe('driverOptions.images');
  });
});
