import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeRunner } from '@execenv/core/testing';
import { describe, expect, it, vi } from 'vitest';
import { userNetwork } from '../src/guest-network.js';
import { initScript } from '../src/initramfs.js';
import { type QemuMachine, qemuArgv } from '../src/qemu-command.js';
import { QemuDriver } from '../src/qemu-driver.js';
import { checkEnvOptions } from '../src/qemu-options.js';

const machine: QemuMachine = {
  binary: 'qemu-system-x86_64',
  machine: 'microvm',
  accel: 'tcg',
  cpus: 1,
  memoryMiB: 512,
  kernel: { image: '/k/vmlinux', elf: true, modulesDir: '/k/modules/6.1', release: '6.1' },
  initramfs: '/c/initramfs.cpio.gz',
  disk: '/s/env/disk.qcow2',
  agentSocket: '/s/env/agent.sock',
  qmpSocket: '/s/env/qmp.sock',
  consoleLog: '/s/env/console.log',
};
const tap = { kind: 'tap', tap: 'exvt1a2b3c4d', mac: '0a:58:0a:d5:00:02' } as const;
const forwards = [
  { hostPort: 8080, guestPort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' },
  { hostPort: 5353, guestPort: 53, protocol: 'udp', hostAddress: '0.0.0.0' },
] as const;

describe('qemuArgv with a network device', () => {
  it('puts a microvm on a tap with a virtio-mmio NIC, QEMU running no scripts', () => {
    expect(qemuArgv({ ...machine, nic: tap }).slice(-4)).toEqual([
      '-netdev',
      'tap,id=net0,ifname=exvt1a2b3c4d,script=no,downscript=no',
      '-device',
      'virtio-net-device,netdev=net0,mac=0a:58:0a:d5:00:02',
    ]);
  });

  it('uses a virtio-pci NIC without an option ROM on q35 and pc', () => {
    for (const type of ['q35', 'pc'] as const)
      expect(qemuArgv({ ...machine, machine: type, nic: tap }).slice(-4)).toEqual([
        '-netdev',
        'tap,id=net0,ifname=exvt1a2b3c4d,script=no,downscript=no',
        '-device',
        'virtio-net-pci,netdev=net0,mac=0a:58:0a:d5:00:02,romfile=',
      ]);
  });

  it('gives user-mode networking its host forwards, on microvm and q35', () => {
    const { nic } = userNetwork(forwards);
    expect(qemuArgv({ ...machine, nic }).slice(-4)).toEqual([
      '-netdev',
      'user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53',
      '-device',
      'virtio-net-device,netdev=net0,mac=52:54:00:12:34:56',
    ]);
    expect(qemuArgv({ ...machine, machine: 'q35', nic: userNetwork([]).nic }).slice(-4)).toEqual([
      '-netdev',
      'user,id=net0',
      '-device',
      'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile=',
    ]);
  });

  it('has no network device without a NIC', () => {
    const argv = qemuArgv(machine);
    expect(argv).not.toContain('-netdev');
    expect(argv.some((a) => a.includes('virtio-net'))).toBe(false);
  });

  it('configures the guest with the slirp addresses', () => {
    expect(userNetwork([]).guest).toEqual({
      mac: '52:54:00:12:34:56',
      address: '10.0.2.15',
      prefixLength: 24,
      gateway: '10.0.2.2',
      resolvConf: 'nameserver 10.0.2.3\n',
    });
  });
});

describe('checkEnvOptions', () => {
  const field = (raw: unknown, network = 'nat') => {
    try {
      checkEnvOptions(raw, network);
    } catch (err) {
      expect(err).toMatchObject({ code: 'INVALID_SPEC', driver: 'qemu', op: 'open' });
      return (err as { field: string }).field;
    }
    return undefined;
  };

  it('fills in the defaults of a forward', () => {
    expect(checkEnvOptions(undefined, 'none')).toEqual({});
    expect(checkEnvOptions({ userNetwork: {} }, 'nat')).toEqual({ userNetwork: { forwards: [] } });
    expect(
      checkEnvOptions({ userNetwork: { forwards: [{ hostPort: 8080, guestPort: 80 }, { ...forwards[1] }] } }, 'nat'),
    ).toEqual({
      userNetwork: {
        forwards: [{ hostPort: 8080, guestPort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' }, forwards[1]],
      },
    });
  });

  it('takes image settings for the environment, checked', () => {
    const images = { servers: { lxc: 'https://images.example/' }, verify: false };
    expect(checkEnvOptions({ images }, 'none')).toEqual({ images });
    expect(checkEnvOptions({ images, userNetwork: {} }, 'nat')).toEqual({ images, userNetwork: { forwards: [] } });
    expect(field({ images: { servers: 'https://images.example/' } }, 'none')).toBe('driverOptions.images');
    expect(field({ images: { nonsense: true } }, 'none')).toBe('driverOptions.images');
  });

  it('names the field of a bad port, protocol or address', () => {
    const fwd = (f: object) => ({ userNetwork: { forwards: [{ hostPort: 8080, guestPort: 80 }, f] } });
    expect(field(fwd({ hostPort: 0, guestPort: 80 }))).toBe('driverOptions.userNetwork.forwards[1].hostPort');
    expect(field(fwd({ hostPort: 65536, guestPort: 80 }))).toBe('driverOptions.userNetwork.forwards[1].hostPort');
    expect(field(fwd({ hostPort: 8081, guestPort: 1.5 }))).toBe('driverOptions.userNetwork.forwards[1].guestPort');
    expect(field(fwd({ hostPort: 8081, guestPort: '80' }))).toBe('driverOptions.userNetwork.forwards[1].guestPort');
    expect(field(fwd({ hostPort: 8081, guestPort: 80, protocol: 'sctp' }))).toBe(
      'driverOptions.userNetwork.forwards[1].protocol',
    );
    expect(field(fwd({ hostPort: 8081, guestPort: 80, hostAddress: 'localhost' }))).toBe(
      'driverOptions.userNetwork.forwards[1].hostAddress',
    );
    expect(field(fwd({ hostPort: 8081, guestPort: 80, hostAddress: '127.0.0.1,restrict=on' }))).toBe(
      'driverOptions.userNetwork.forwards[1].hostAddress',
    );
    expect(field(fwd({ hostPort: 8081, guestPort: 80, extra: 1 }))).toBe('driverOptions.userNetwork.forwards[1].extra');
  });

  it('refuses a host port forwarded twice, also through 0.0.0.0, but not across protocols or addresses', () => {
    const twice = (a: object, b: object) => ({
      userNetwork: {
        forwards: [
          { hostPort: 8080, guestPort: 80, ...a },
          { hostPort: 8080, guestPort: 81, ...b },
        ],
      },
    });
    expect(field(twice({}, {}))).toBe('driverOptions.userNetwork.forwards[1].hostPort');
    expect(field(twice({}, { hostAddress: '0.0.0.0' }))).toBe('driverOptions.userNetwork.forwards[1].hostPort');
    expect(field(twice({}, { protocol: 'udp' }))).toBeUndefined();
    expect(field(twice({}, { hostAddress: '127.0.0.2' }))).toBeUndefined();
  });

  it('takes user-mode networking only with network "nat", and no unknown options', () => {
    expect(field({ userNetwork: {} }, 'none')).toBe('driverOptions.userNetwork');
    expect(field({ userNetwork: {} }, 'mynet')).toBe('driverOptions.userNetwork');
    expect(field({ userNetwork: [] })).toBe('driverOptions.userNetwork');
    expect(field({ userNetwork: { forwards: {} } })).toBe('driverOptions.userNetwork.forwards');
    expect(field({ userNetwork: { restrict: true } })).toBe('driverOptions.userNetwork.restrict');
    expect(field({ bridge: 'br0' })).toBe('driverOptions.bridge');
  });
});

describe('initScript with network modules', () => {
  const script = initScript(
    ['kernel/drivers/virtio/virtio_ring.ko', 'kernel/fs/ext4/ext4.ko'],
    ['kernel/net/core/failover.ko', 'kernel/drivers/net/net_failover.ko', 'kernel/drivers/net/virtio_net.ko'],
  );

  it('loads them, dependencies first, only when the configuration names an interface', () => {
    const lines = script.split('\n');
    const start = lines.indexOf('if [ -n "$net" ]; then');
    expect(lines.slice(start, start + 6)).toEqual([
      'if [ -n "$net" ]; then',
      '  /bin/busybox insmod /lib/modules/failover.ko || fail "insmod kernel/net/core/failover.ko"',
      '  /bin/busybox insmod /lib/modules/net_failover.ko || fail "insmod kernel/drivers/net/net_failover.ko"',
      '  /bin/busybox insmod /lib/modules/virtio_net.ko || fail "insmod kernel/drivers/net/virtio_net.ko"',
      '  netup $net',
      'fi',
    ]);
    expect(script).toContain('    net) net="$tag $target" && continue ;;');
  });

  it('finds the interface by its MAC, addresses and routes it, and replaces the root resolv.conf', () => {
    expect(script).toContain(`[ "$(/bin/busybox cat "$n/address" 2>/dev/null)" = "$1" ] && dev=\${n##*/}`);
    expect(script).toContain('/bin/busybox ip addr add "$2" dev "$dev" &&');
    expect(script).toContain('/bin/busybox ip route add default via "$3" dev "$dev" ||');
    expect(script).toContain('/bin/busybox ip link set dev lo up');
    expect(script).toContain('/bin/busybox cp /execenv-resolv.conf /newroot/etc/resolv.conf ||');
    expect(script.indexOf('netup $net')).toBeLessThan(script.indexOf('/execenv-agent --root'));
    expect(script.indexOf('resolv.conf ||')).toBeGreaterThan(script.indexOf('mount -t ext4 /dev/vda /newroot'));
  });
});

describe('QemuDriver.open without root', () => {
  it.each(['nat', 'builds'])(
    'refuses a tap on network %s, pointing at userNetwork, before anything is made',
    async (network) => {
      const stateDir = await mkdtemp(join(tmpdir(), 'qemu-noroot-'));
      const uid = vi.spyOn(process, 'getuid').mockReturnValue(1000);
      try {
        const runner = new FakeRunner();
        const driver = new QemuDriver({ runner, cacheDir: join(stateDir, 'cache') });
        const err = await driver.open({ image: '/nonexistent.tar', network }, { stateDir }).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'INVALID_SPEC', field: 'network' });
        expect((err as Error).message).toMatch(/needs root.*driverOptions\.userNetwork/);
        expect(runner.ran).toEqual([]);
        expect(await readdir(stateDir)).toEqual([]);
      } finally {
        uid.mockRestore();
        await rm(stateDir, { recursive: true, force: true });
      }
    },
  );
});
