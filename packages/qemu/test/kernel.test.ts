import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BOOT_MODULES, loadKernel, moduleLoadOrder, moduleName, NET_MODULES } from '../src/kernel.js';

const MODULES_DEP = `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/drivers/net/dummy.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
`;

const scratch = await mkdtemp(join(tmpdir(), 'execenv-kernel-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe('moduleLoadOrder', () => {
  it('loads dependencies first, each once, and skips what the kernel has built in', () => {
    expect(moduleLoadOrder(MODULES_DEP, ['virtio_mmio', 'virtio_blk', 'ext4', 'virtio_pci'])).toEqual([
      'kernel/drivers/virtio/virtio_ring.ko',
      'kernel/drivers/virtio/virtio.ko',
      'kernel/drivers/virtio/virtio_mmio.ko',
      'kernel/drivers/block/virtio_blk.ko',
      'kernel/lib/crc16.ko',
      'kernel/fs/mbcache.ko',
      'kernel/fs/jbd2/jbd2.ko',
      'kernel/fs/ext4/ext4.ko',
    ]);
  });

  it('brings virtio_net with its failover dependencies, apart from the boot modules', () => {
    const boot = moduleLoadOrder(MODULES_DEP, BOOT_MODULES);
    expect(boot.some((m) => m.includes('/net/'))).toBe(false);
    expect(moduleLoadOrder(MODULES_DEP, NET_MODULES).filter((m) => !boot.includes(m))).toEqual([
      'kernel/net/core/failover.ko',
      'kernel/drivers/net/net_failover.ko',
      'kernel/drivers/net/virtio_net.ko',
    ]);
  });

  it('refuses compressed modules, which busybox insmod cannot load', () => {
    expect(() => moduleLoadOrder('kernel/fs/ext4/ext4.ko.xz:\n', ['ext4'])).toThrow(/compressed/);
  });

  it('names modules as modprobe does', () => {
    expect(moduleName('kernel/crypto/crc32c-generic.ko')).toBe('crc32c_generic');
    expect(moduleName('kernel/fs/ext4/ext4.ko.zst')).toBe('ext4');
  });
});

describe('loadKernel', () => {
  it('reads a kernel directory and tells what is missing', async () => {
    const dir = join(scratch, 'k');
    await expect(loadKernel(dir)).rejects.toThrow(/has no vmlinux, Image or vmlinuz.*qemu-kernel\.sh/);
    await mkdir(join(dir, 'modules', '6.1.0-test'), { recursive: true });
    await writeFile(join(dir, 'vmlinux'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1]));
    await expect(loadKernel(dir)).rejects.toThrow(/modules\.dep/);
    await writeFile(join(dir, 'modules', '6.1.0-test', 'modules.dep'), MODULES_DEP);
    expect(await loadKernel(dir)).toEqual({
      image: join(dir, 'vmlinux'),
      elf: true,
      modulesDir: join(dir, 'modules', '6.1.0-test'),
      release: '6.1.0-test',
    });
  });
});
